"""Run the org's Rego rules with the OPA binary (``opa eval``).

The rules ship inside the package under ``aibox/data/rego`` (links to the files in
``policies/org/``). OPA is pinned to ``OPA_VERSION``; a different version works
but logs a warning, and a missing binary fails closed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from aibox.errors import ExternalToolError

log = logging.getLogger(__name__)

OPA_VERSION = "1.22.4"
OPA_FALLBACK_PATH = Path("/opt/aibox/bin/opa")
DENY_QUERY = "data.aibox.org.deny"
INSTALL_HINT = (
    "Install OPA with 'sudo bash scripts/install-deps.sh' (it pins OPA v1.22.4)."
)
_TIMEOUT_SECONDS = 30


def find_opa() -> str:
    """Return the OPA executable from PATH or /opt/aibox/bin, or raise."""
    found = shutil.which("opa")
    if found:
        return found
    if os.access(OPA_FALLBACK_PATH, os.X_OK):
        return str(OPA_FALLBACK_PATH)
    raise ExternalToolError(
        "OPA is not installed: 'opa' is not on PATH or at /opt/aibox/bin/opa, so the "
        "policy cannot be checked",
        hint=INSTALL_HINT,
    )


def rego_files() -> list[Path]:
    """Return the packaged Rego rule files (tests excluded), sorted by name."""
    folder = Path(str(resources.files("aibox") / "data" / "rego"))
    files = sorted(
        path for path in folder.glob("*.rego") if not path.name.endswith("_test.rego")
    )
    if not files:
        raise ExternalToolError(
            f"no Rego rules found in {folder}",
            hint="Reinstall aibox; the package must include aibox/data/rego/*.rego.",
        )
    return files


@functools.lru_cache(maxsize=4)
def _check_version(opa: str) -> None:
    output = _run([opa, "version"], stdin=None)
    first = output.splitlines()[0] if output else ""
    if first.strip() != f"Version: {OPA_VERSION}":
        log.warning(
            "%s reports %r, not the pinned %s; run scripts/install-deps.sh",
            opa,
            first.strip(),
            OPA_VERSION,
        )


def evaluate_deny(policy_input: dict[str, Any], opa: str | None = None) -> list[str]:
    """Evaluate the org's ``deny`` rules on ``policy_input``; return the messages."""
    executable = opa or find_opa()
    _check_version(executable)
    command = [executable, "eval", "--format", "json", "--stdin-input"]
    for path in rego_files():
        command += ["--data", str(path)]
    command.append(DENY_QUERY)
    output = _run(command, stdin=json.dumps(policy_input))
    try:
        result = json.loads(output)
        value = result["result"][0]["expressions"][0]["value"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ExternalToolError(
            f"unexpected output from opa eval: {output[:200]!r}",
            hint=INSTALL_HINT,
        ) from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ExternalToolError(f"opa eval returned a non-list deny set: {value!r}")
    return sorted(value)


def _run(command: list[str], stdin: str | None) -> str:
    try:
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": "/nonexistent",
            },
        )
    except FileNotFoundError:
        raise ExternalToolError(
            f"OPA not found at {command[0]}", hint=INSTALL_HINT
        ) from None
    except subprocess.TimeoutExpired:
        raise ExternalToolError(
            f"{' '.join(command[:2])} timed out after {_TIMEOUT_SECONDS} s"
        ) from None
    if completed.returncode != 0:
        raise ExternalToolError(
            f"{' '.join(command[:2])} failed with exit code {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed.stdout
