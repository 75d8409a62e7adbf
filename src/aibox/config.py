"""The developer's config file: model, defaults and loading.

Config chooses values (image, resources, caches, addresses) but can never remove a
mandatory control: those are not fields here, and the sandbox module rejects any
attempt to ask for them through ``extra_run_args``-style keys.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from aibox import paths
from aibox.errors import ConfigError
from aibox.yamlio import load_yaml_file

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {
    None: 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def parse_bytes(value: str | int) -> int:
    """Parse a size such as ``8Gi``, ``512M`` or ``1024`` into bytes."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(
            f"invalid size {value!r}: use a number with an optional unit "
            "(K, M, G, T, Ki, Mi, Gi, Ti), for example 8Gi"
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GVisorConfig(_Strict):
    enabled: bool = True
    require_apparmor: bool = False


class ResourcesConfig(_Strict):
    cpus: float = Field(default=2.0, gt=0, le=512)
    memory: str = "8Gi"
    pids: int = Field(default=4096, ge=64, le=1_000_000)

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if parse_bytes(value) < 64 * 1024**2:
            raise ValueError(f"memory {value!r} is below the 64Mi minimum")
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_bytes(self.memory)


DEFAULT_SERVICES = (
    "harbor.internal",
    "nexus.internal",
    "foundry.internal",
    "git.internal",
    "vault.internal",
)


class NetworkConfig(_Strict):
    podman_network: str = "aibox"
    subnet: str = "10.213.0.0/24"
    bridge: str = "aibox0"
    proxy_port: int = Field(default=3128, ge=1, le=65535)
    dns_port: int = Field(default=53, ge=1, le=65535)
    allowed_services: tuple[str, ...] = DEFAULT_SERVICES
    static_addresses: dict[str, str] = Field(default_factory=dict)
    upstream_resolvers: dict[str, str] = Field(default_factory=dict)

    @field_validator("subnet")
    @classmethod
    def _check_subnet(cls, value: str) -> str:
        network = ipaddress.ip_network(value, strict=True)
        if network.version != 4 or network.prefixlen > 29:
            raise ValueError(f"subnet {value!r} must be an IPv4 network, /29 or larger")
        return value

    @field_validator("static_addresses")
    @classmethod
    def _check_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"static address {address!r} for {name!r} is not an IP address"
                ) from None
        return value

    @property
    def gateway(self) -> str:
        """The bridge address on the host, where Squid and CoreDNS listen."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))


class VaultConfig(_Strict):
    address: str | None = None
    mount: str = "secret"
    token_file: str | None = None
    auth_method: Literal["token", "approle", "jwt"] = "token"
    # The AppRole role_id, or the JWT role name.
    role: str | None = None
    secret_id_file: str | None = None
    jwt_file: str | None = None
    auth_mount: str | None = None
    # The address a sandbox uses to reach Vault through its proxy; default: address.
    sandbox_address: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=120)


class CredentialsConfig(_Strict):
    backend: Literal["auto", "vault", "keyring", "file", "env"] = "auto"
    vault: VaultConfig = VaultConfig()
    store_file: str | None = None


class LLMConfig(_Strict):
    listen: str = "127.0.0.1:8443"
    anthropic_upstream: str = "https://foundry.internal"
    openai_upstream: str = "https://foundry.internal"


class Config(_Strict):
    """The developer's aibox config (``config.yaml``)."""

    image: str = "localhost/aibox-sandbox:latest"
    runtime: Literal["auto", "podman", "docker"] = "auto"
    team: str | None = None
    gvisor: GVisorConfig = GVisorConfig()
    resources: ResourcesConfig = ResourcesConfig()
    log_dir: str = "/var/log/aibox"
    network: NetworkConfig = NetworkConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    llm: LLMConfig = LLMConfig()
    caches: tuple[str, ...] = ("maven", "gradle", "npm", "pip", "nuget", "bazel")


def _describe_error(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {location!r}: remove it or check its spelling"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"invalid value {value!r} for {location!r}: {message}"


def config_from_mapping(data: Any, source: str) -> Config:
    """Validate a parsed mapping into a Config, raising ConfigError on bad input."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the config must be a YAML mapping, not {type(data).__name__}",
            hint="Start the file with keys such as 'image:' or 'gvisor:'.",
        )
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = _describe_error(exc.errors()[0])
        raise ConfigError(
            f"{source}: {first}",
            hint="Compare with the defaults that 'aibox setup' writes to "
            "~/.config/aibox/config.yaml.",
        ) from None


def load_config(path: Path | None = None) -> Config:
    """Load the config from ``path``, ``AIBOX_CONFIG`` or the XDG location.

    A missing file at the default location means all defaults; a missing file that
    was named explicitly is an error.
    """
    explicit = path is not None
    target = path or paths.user_config_file()
    if not target.exists():
        if explicit or "AIBOX_CONFIG" in os.environ:
            raise ConfigError(
                f"config file not found: {target}",
                hint="Create it with 'aibox setup' or point --config at a file.",
            )
        return Config()
    data = load_yaml_file(target, what="config")
    return config_from_mapping(data, str(target))


def default_config_yaml() -> str:
    """Render the defaults as YAML, for ``aibox setup`` to write."""
    data = Config().model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
