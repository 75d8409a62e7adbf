"""Find and parse the policy levels: org baseline, team and project."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aibox import paths
from aibox.config import Config
from aibox.errors import UsageError
from aibox.policy.model import Policy
from aibox.yamlio import load_yaml_file

log = logging.getLogger(__name__)

PACKAGED_ORG_POLICY = "packaged default org policy"
_TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class PolicyLevel:
    """One parsed level: ``org``, ``team`` or ``project``, and where it came from."""

    level: str
    source: str
    policy: Policy
    raw: dict[str, Any]


def org_policy_path() -> Path:
    return paths.system_dir() / "org-policy.yaml"


def team_policy_path(team: str) -> Path:
    if not _TEAM_NAME.match(team):
        raise UsageError(
            f"invalid team name {team!r} in config",
            hint="Use letters, digits, '.', '-' and '_' only, as in /etc/aibox/teams/.",
        )
    return paths.system_dir() / "teams" / team / "policy.yaml"


def project_policy_path(workspace: Path) -> Path:
    return workspace / "aibox" / "policy.yaml"


def packaged_org_text() -> str:
    return (resources.files("aibox") / "data" / "org-policy.yaml").read_text("utf-8")


def load_levels(config: Config, workspace: Path) -> list[PolicyLevel]:
    """Load org, team (when the config names one) and project (when present)."""
    levels = [_load_org()]
    if config.team:
        path = team_policy_path(config.team)
        if not path.exists():
            raise UsageError(
                f"team policy not found: {path} (config names team {config.team!r})",
                hint="Ask an administrator to install the team policy, or remove "
                "'team:' from your config.",
            )
        levels.append(_load_file(path, "team"))
    project = project_policy_path(workspace)
    if project.exists() or project.is_symlink():
        levels.append(_load_file(project, "project"))
    return levels


def _load_org() -> PolicyLevel:
    path = org_policy_path()
    if path.exists() or path.is_symlink():
        return _load_file(path, "org")
    log.warning(
        "org policy %s not found; using the packaged default baseline. "
        "Run 'aibox setup --system' to install it.",
        path,
    )
    try:
        data = yaml.safe_load(packaged_org_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the {PACKAGED_ORG_POLICY}: {exc}") from None
    return PolicyLevel(
        "org", PACKAGED_ORG_POLICY, parse_policy(data, "org", "packaged"), data
    )


def _load_file(path: Path, level: str) -> PolicyLevel:
    data = load_yaml_file(path, what=f"{level} policy")
    return PolicyLevel(
        level, str(path), parse_policy(data, level, str(path)), data or {}
    )


def parse_policy(data: Any, level: str, source: str) -> Policy:
    """Validate parsed YAML into a Policy; raise UsageError with a one-line message."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise UsageError(
            f"{level} policy {source}: expected a YAML mapping, found {kind}",
            hint="A policy file starts with 'version: 1' followed by its sections.",
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        message = describe_validation_error(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UsageError(
            f"{level} policy {source}: {message}{more}",
            hint="Fix that field; 'aibox policy show' prints every accepted field.",
        ) from None


def describe_validation_error(error: Any) -> str:
    location = _location(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown field {location!r}"
    if kind == "missing":
        return f"missing required field {location!r}"
    if kind == "literal_error" and location == "version":
        return f"unsupported version {error.get('input')!r}: only version 1 is known"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"invalid value {error.get('input')!r} for {location!r}: {message}"


def _location(parts: tuple[Any, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith(("function-", "constrained-")):
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def install_default_org_policy() -> bool:
    """Write the packaged baseline to /etc/aibox/org-policy.yaml unless one exists.

    Returns whether the file was written. An existing org policy is never replaced,
    because it is the organization's own.
    """
    path = org_policy_path()
    if path.exists() or path.is_symlink():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(packaged_org_text(), encoding="utf-8")
    temporary.chmod(0o644)
    temporary.replace(path)
    return True
