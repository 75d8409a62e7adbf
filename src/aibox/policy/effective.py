"""The effective policy: org baseline, team and project merged tighten-only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aibox.config import Config
from aibox.policy import opa
from aibox.policy.errors import PolicyViolationError
from aibox.policy.hierarchy import PolicyLevel, load_levels
from aibox.policy.merge import merge_level_report, resolve_root
from aibox.policy.model import AllowEntry, Policy
from aibox.policy.provenance import trace_origins


def _default_policy() -> Policy:
    return resolve_root(Policy(version=1), "product defaults")


def policy_data(policy: Policy) -> dict[str, Any]:
    """Return the JSON-able form of ``policy`` in base units (seconds, bytes)."""
    data: dict[str, Any] = json.loads(json.dumps(policy.model_dump(mode="python")))
    return data


def policy_hash(data: dict[str, Any]) -> str:
    """Return the sha256 hex digest of the canonical JSON of ``data``."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class EffectivePolicy:
    """The merged policy, its hash, and the files it came from.

    ``data`` is ``policy`` in JSON form with quantities in base units; ``hash`` is
    the sha256 of its canonical JSON and labels containers and decision records.
    """

    data: dict[str, Any]
    hash: str
    sources: tuple[str, ...] = field(default_factory=tuple)
    policy: Policy = field(default_factory=_default_policy)
    origins: dict[str, str] = field(default_factory=dict)
    levels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def allowlist(self) -> tuple[AllowEntry, ...]:
        """The allowed services; each entry has ``id``, ``hosts``, ``ports``."""
        return self.policy.network.allow or ()

    @property
    def require_apparmor(self) -> bool:
        return bool(self.policy.runtime.require_apparmor)

    @property
    def rootless(self) -> bool:
        return self.policy.runtime.rootless is not False

    @property
    def engine(self) -> str:
        return self.policy.runtime.engine or "gvisor"


@dataclass(frozen=True)
class PolicyReport:
    """The effective policy and every violation found on the way to it."""

    effective: EffectivePolicy
    levels: tuple[PolicyLevel, ...]
    loosenings: tuple[str, ...]
    denials: tuple[str, ...]

    @property
    def violations(self) -> tuple[str, ...]:
        return self.loosenings + self.denials


def build_effective(levels: list[PolicyLevel]) -> tuple[EffectivePolicy, list[str]]:
    """Merge ``levels`` (org first); return the result and every loosening found.

    A loosened field keeps its parent's value, so the result is never looser
    than the org baseline even when loosenings are reported.
    """
    merged = resolve_root(levels[0].policy, levels[0].source)
    loosenings: list[str] = []
    for level in levels[1:]:
        merged, found = merge_level_report(
            merged, level.policy, level.level, level.source
        )
        loosenings.extend(item.describe() for item in found)
    data = policy_data(merged)
    effective = EffectivePolicy(
        data=data,
        hash=policy_hash(data),
        sources=tuple(level.source for level in levels),
        policy=merged,
        origins=trace_origins(levels, data),
        levels=tuple(level.level for level in levels),
    )
    return effective, loosenings


def rego_input(effective: EffectivePolicy) -> dict[str, Any]:
    return {
        "policy": effective.data,
        "levels": [
            {"level": level, "source": source}
            for level, source in zip(effective.levels, effective.sources, strict=True)
        ],
    }


def check_policy(config: Config, workspace: Path) -> PolicyReport:
    """Load, merge and check the hierarchy with OPA; collect every violation."""
    levels = load_levels(config, workspace)
    effective, loosenings = build_effective(levels)
    denials = opa.evaluate_deny(rego_input(effective))
    return PolicyReport(effective, tuple(levels), tuple(loosenings), tuple(denials))


def compute_effective_policy(config: Config, workspace: Path) -> EffectivePolicy:
    """Load, merge and validate the policy hierarchy for ``workspace``.

    Raises UsageError for unreadable or invalid files, ExternalToolError when OPA
    is missing, and PolicyViolationError (exit 1) listing every loosening and
    every Rego ``deny`` message.
    """
    report = check_policy(config, workspace)
    if report.violations:
        raise PolicyViolationError(list(report.violations))
    return report.effective
