"""The effective policy: org baseline, team and project merged tighten-only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aibox.config import Config


@dataclass(frozen=True)
class EffectivePolicy:
    """The merged policy, its hash, and the files it came from."""

    data: dict[str, Any]
    hash: str
    sources: tuple[str, ...] = field(default_factory=tuple)


def compute_effective_policy(config: Config, workspace: Path) -> EffectivePolicy:
    """Load, merge and validate the policy hierarchy for ``workspace``.

    Raises UsageError for unreadable or invalid files and AiboxError for violations.
    """
    # TODO: placeholder until the hierarchy loader, merge and OPA checks land.
    data: dict[str, Any] = {"version": 1}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return EffectivePolicy(data=data, hash=digest)
