"""The ``policy.yaml`` schema shared by the org, team and project levels.

Every field is optional except ``version``: a field left out inherits the parent's
value, it never means ``false`` or zero. Quantities are stored in base units
(seconds, bytes, CPUs) and written back in the file's notation (``8h``, ``8Gi``)
when dumped with ``mode="json"``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    field_validator,
)

from aibox.errors import UsageError
from aibox.network.allowlist import validate_host
from aibox.policy.units import (
    format_duration,
    format_size,
    parse_cpu,
    parse_duration,
    parse_size,
)

Risk = Literal["safe", "review-required", "blocked-by-default"]
RISK_ORDER: dict[str, int] = {"safe": 0, "review-required": 1, "blocked-by-default": 2}
Engine = Literal["gvisor", "runc"]
ENGINE_ORDER: dict[str, int] = {"runc": 0, "gvisor": 1}
Classification = Literal["public", "internal", "confidential", "restricted"]
CLASSIFICATION_ORDER: dict[str, int] = {
    "public": 0,
    "internal": 1,
    "confidential": 2,
    "restricted": 3,
}
SUPPORTED_VERSION = 1

_HOST = re.compile(r"^[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9])?$")
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _only(types: tuple[type, ...], parse: Any) -> Any:
    """Wrap ``parse`` so that a value of another type fails validation cleanly."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"expected {' or '.join(t.__name__ for t in types)}")
        return parse(value)

    return check


Duration = Annotated[
    int,
    BeforeValidator(_only((str, int), parse_duration)),
    PlainSerializer(format_duration, when_used="json"),
]
Size = Annotated[
    int,
    BeforeValidator(_only((str, int), parse_size)),
    PlainSerializer(format_size, when_used="json"),
]
Cpu = Annotated[float, BeforeValidator(_only((str, int, float), parse_cpu))]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
PositiveCount = Annotated[StrictInt, Field(ge=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Section):
    requests_per_min: PositiveCount | None = None
    tokens_per_min: PositiveCount | None = None


class AllowEntry(_Section):
    """One allowlisted service: its hosts, ports and optional rate limit."""

    id: str
    hosts: tuple[str, ...] | None = None
    ports: tuple[Port, ...] | None = None
    rate_limit: RateLimit | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ENTRY_ID.match(value):
            raise ValueError(
                f"invalid id {value!r}: use lower-case letters, digits, '.', '-', '_'"
            )
        return value

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        hosts = []
        for host in value:
            name = host.strip().lower().rstrip(".")
            if not _HOST.match(name):
                raise ValueError(f"invalid host name {host!r}")
            if "*" not in name:
                # Wildcards pass here so the org's Rego rule can name them; every
                # other name must also be one that Squid and CoreDNS accept.
                try:
                    validate_host(name, "network.allow")
                except UsageError as exc:
                    raise ValueError(
                        exc.message.removeprefix("network.allow: ")
                    ) from None
            hosts.append(name)
        return tuple(sorted(set(hosts)))

    @field_validator("ports")
    @classmethod
    def _sort_ports(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if value is None else tuple(sorted(set(value)))


class NetworkPolicy(_Section):
    mode: Literal["deny-by-default"] | None = None
    allow: tuple[AllowEntry, ...] | None = None

    @field_validator("allow")
    @classmethod
    def _unique_ids(
        cls, value: tuple[AllowEntry, ...] | None
    ) -> tuple[AllowEntry, ...] | None:
        if value is not None:
            _reject_duplicates([entry.id for entry in value], "network.allow id")
        return value


class FilesystemPolicy(_Section):
    workspace_root: str | None = None
    deny: tuple[str, ...] | None = None

    @field_validator("workspace_root")
    @classmethod
    def _absolute_root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"workspace_root {value!r} must be an absolute path")
        return value

    @field_validator("deny")
    @classmethod
    def _non_empty_paths(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if any(not path.strip() for path in value):
            raise ValueError("deny paths must not be empty")
        return tuple(sorted(set(value)))


class ToolRule(_Section):
    """A command pattern: literal tokens, ``*`` for exactly one argument."""

    match: tuple[str, ...] = Field(min_length=1)
    allow: StrictBool | None = None
    risk: Risk | None = None

    @field_validator("match")
    @classmethod
    def _check_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not token for token in value):
            raise ValueError("match tokens must not be empty")
        if value[0] == "*":
            raise ValueError("the first match token must name a command, not '*'")
        return value


class ToolsPolicy(_Section):
    default: Risk | None = None
    rules: tuple[ToolRule, ...] | None = None

    @field_validator("rules")
    @classmethod
    def _unique_matches(
        cls, value: tuple[ToolRule, ...] | None
    ) -> tuple[ToolRule, ...] | None:
        if value is not None:
            _reject_duplicates([" ".join(rule.match) for rule in value], "tools rule")
        return value


class ResourcesPolicy(_Section):
    cpu: Cpu | None = None
    memory: Size | None = None
    disk: Size | None = None


class RuntimePolicy(_Section):
    engine: Engine | None = None
    rootless: StrictBool | None = None
    ephemeral: StrictBool | None = None
    require_apparmor: StrictBool | None = None


class CredentialsPolicy(_Section):
    ttl: Duration | None = None
    max_ttl: Duration | None = None
    revoke_on_stop: StrictBool | None = None


class LLMPolicy(_Section):
    max_request_bytes: Size | None = None


class Policy(_Section):
    """One policy level as written in ``policy.yaml``, or the merged result."""

    version: Literal[1]
    classification: Classification | None = None
    network: NetworkPolicy = NetworkPolicy()
    filesystem: FilesystemPolicy = FilesystemPolicy()
    tools: ToolsPolicy = ToolsPolicy()
    resources: ResourcesPolicy = ResourcesPolicy()
    runtime: RuntimePolicy = RuntimePolicy()
    credentials: CredentialsPolicy = CredentialsPolicy()
    llm: LLMPolicy = LLMPolicy()


def _reject_duplicates(keys: list[str], what: str) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"duplicate {what} {key!r}")
        seen.add(key)
