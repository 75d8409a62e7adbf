"""The state of one sandbox, for ``aibox status``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aibox.config import Config
from aibox.credentials import sandbox as credentials
from aibox.sandbox import apparmor, security
from aibox.sandbox.lifecycle import Sandbox
from aibox.sandbox.podman import Podman


def parse_timestamp(text: str) -> datetime | None:
    """Parse Podman's RFC 3339 time with nanoseconds, such as ``...:53.158713236Z``."""
    match = re.match(
        r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text
    )
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    parsed = datetime.fromisoformat(f"{base}.{micro}{zone}")
    return None if parsed.year < 1970 else parsed


def describe(
    config: Config, workspace: Path, podman: Podman | None = None
) -> dict[str, Any]:
    """Return state, runtime, image, workspace, AppArmor state and uptime."""
    sandbox = Sandbox.for_workspace(workspace)
    engine = podman or Podman.locate(config.runtime)
    data = engine.inspect_container(sandbox.name)
    report: dict[str, Any] = {
        "name": sandbox.name,
        "workspace": str(sandbox.workspace),
        "state": "absent",
        "runtime": None,
        "image": config.image,
        "uptime_seconds": None,
        "rootless": engine.rootless,
        "apparmor": apparmor.detect().as_dict(),
        "pending_revocations": [
            {
                "sandbox_id": entry.sandbox_id,
                "queued_utc": entry.queued_utc,
                "attempts": entry.attempts,
                "last_error": entry.last_error,
            }
            for entry in credentials.pending_revocations(config)
        ],
    }
    if data is None:
        return report
    labels = (data.get("Config") or {}).get("Labels") or {}
    state = data.get("State") or {}
    report["state"] = state.get("Status", "unknown")
    report["runtime"] = labels.get(
        f"{security.LABEL_PREFIX}.runtime", data.get("OCIRuntime")
    )
    report["image"] = data.get("ImageName") or labels.get(
        f"{security.LABEL_PREFIX}.image"
    )
    report["policy_hash"] = labels.get(f"{security.LABEL_PREFIX}.policy-hash")
    report["version"] = labels.get(f"{security.LABEL_PREFIX}.version")
    started = parse_timestamp(str(state.get("StartedAt", "")))
    if state.get("Running") and started is not None:
        report["uptime_seconds"] = int((datetime.now(UTC) - started).total_seconds())
    return report


def format_uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    )
