"""The network allowlist: which names a sandbox may reach, on which ports, and how
each name resolves.

The allowlist is derived from the effective policy (``network.allow``) and the
config (``network.static_addresses`` and ``network.upstream_resolvers``). The Squid,
CoreDNS and nftables renderers all take this one model, so a service added to the
policy reaches the proxy, the DNS server and the firewall together.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aibox.config import Config
from aibox.errors import UsageError

DEFAULT_PORTS = (443,)
VAULT_HOST = "vault.internal"
VAULT_PORTS = (443, 8200)

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_RATE_LIMIT = re.compile(r"^\d+/(s|second|m|minute|h|hour)$")
_LIMIT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_POLICY_HINT = "Fix the entry under network.allow in the policy file, then retry."
_CONFIG_HINT = "Fix the value under network in config.yaml, then retry."


@dataclass(frozen=True)
class Resolution:
    """The way CoreDNS resolves one allowlisted name.

    ``static``: an A or AAAA record with ``address``. ``forward``: the query goes to
    ``upstream`` (``ip:port``), which is configured for ``zone``. ``none``: nothing is
    configured, so the name gets NXDOMAIN like any name outside the list.
    """

    kind: Literal["static", "forward", "none"]
    address: str | None = None
    upstream: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class AllowEntry:
    """One ``network.allow`` rule: names, the ports they may be reached on, a limit.

    A host with a leading dot (``.example.internal``) also allows every subdomain.
    """

    id: str
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    rate_limit: str | None = None


@dataclass(frozen=True)
class Allowlist:
    """The validated allowlist and how each of its names resolves."""

    entries: tuple[AllowEntry, ...]
    resolutions: Mapping[str, Resolution] = field(default_factory=dict)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host pattern in entry order, without duplicates."""
        seen: dict[str, None] = {}
        for entry in self.entries:
            for host in entry.hosts:
                seen.setdefault(host, None)
        return tuple(seen)

    @property
    def names(self) -> tuple[str, ...]:
        """Every DNS name (host patterns without the leading dot), sorted."""
        return tuple(sorted({host.lstrip(".") for host in self.hosts}))

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(sorted({port for entry in self.entries for port in entry.ports}))

    def includes_subdomains(self, name: str) -> bool:
        return f".{name}" in self.hosts

    def resolution(self, name: str) -> Resolution:
        return self.resolutions.get(name, Resolution(kind="none"))

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [
                {
                    "id": entry.id,
                    "hosts": list(entry.hosts),
                    "ports": list(entry.ports),
                    "rate_limit": entry.rate_limit,
                }
                for entry in self.entries
            ],
            "resolutions": {
                name: {
                    key: value
                    for key, value in vars(self.resolution(name)).items()
                    if value is not None
                }
                for name in self.names
            },
        }

    def digest(self) -> str:
        """Return a SHA-256 over the allowlist, which the rendered files carry."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def validate_host(value: object, where: str) -> str:
    """Return ``value`` as a lower-case host pattern or raise UsageError.

    Accepted: a DNS name such as ``git.internal``, or ``.git.internal`` for the name
    and all its subdomains. Rejected: wildcards, spaces, URLs, ports, IP addresses.
    """
    if not isinstance(value, str):
        raise UsageError(
            f"{where}: host {value!r} is not a string",
            hint=_POLICY_HINT,
        )
    host = value.strip().lower().rstrip(".")
    rule = (
        "a host must be a DNS name such as git.internal, or .git.internal for the "
        "name and its subdomains (no wildcards, URLs, ports or IP addresses)"
    )
    name = host[1:] if host.startswith(".") else host
    if not name or len(name) > 253 or value != value.strip():
        raise UsageError(f"{where}: invalid host {value!r}: {rule}", hint=_POLICY_HINT)
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise UsageError(f"{where}: invalid host {value!r}: {rule}", hint=_POLICY_HINT)
    if _is_ip_address(name) or labels[-1].isdigit():
        raise UsageError(
            f"{where}: invalid host {value!r}: an IP address is not allowed where a "
            "name is expected, because the proxy matches names only",
            hint=_POLICY_HINT,
        )
    return host


def validate_port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(
            f"{where}: invalid port {value!r}: a port is an integer from 1 to 65535",
            hint=_POLICY_HINT,
        )
    return value


def validate_address(value: object, where: str) -> str:
    """Return ``value`` as a normalised IP address or raise UsageError."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise UsageError(
            f"{where}: invalid static address {value!r}: it must be an IPv4 or IPv6 "
            "address such as 198.51.100.10",
            hint=_CONFIG_HINT,
        ) from None


def validate_upstream(value: object, where: str) -> str:
    """Return ``value`` as ``ip:port`` (IPv6 as ``[ip]:port``) or raise UsageError."""
    text = str(value).strip()
    match = re.match(r"^\[(?P<v6>[0-9a-fA-F:.]+)\](:(?P<p6>\d+))?$", text) or re.match(
        r"^(?P<v4>[0-9.]+)(:(?P<p4>\d+))?$", text
    )
    rule = "an upstream resolver must be an IP address with an optional port"
    if match is None:
        raise UsageError(
            f"{where}: invalid upstream {value!r}: {rule}", hint=_CONFIG_HINT
        )
    address = match.group("v6") if "v6" in match.groupdict() else match.group("v4")
    port_text = match.group("p6") if "p6" in match.groupdict() else match.group("p4")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(
            f"{where}: invalid upstream {value!r}: {rule}", hint=_CONFIG_HINT
        ) from None
    port = int(port_text) if port_text else 53
    if not 1 <= port <= 65535:
        raise UsageError(
            f"{where}: invalid upstream port in {value!r}: use 1 to 65535",
            hint=_CONFIG_HINT,
        )
    host = f"[{parsed}]" if parsed.version == 6 else str(parsed)
    return f"{host}:{port}"


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _policy_mapping(policy: Any) -> Mapping[str, Any]:
    """Return the plain policy mapping from an EffectivePolicy, a model or a dict."""
    data = getattr(policy, "data", policy)
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UsageError(
            f"policy: expected a mapping, got {type(data).__name__}",
            hint=_POLICY_HINT,
        )
    return data


def _entry_from_policy(raw: Any, index: int) -> AllowEntry:
    where = f"network.allow[{index}]"
    if not isinstance(raw, Mapping):
        raise UsageError(
            f"{where}: expected a mapping with id, hosts and ports", _POLICY_HINT
        )
    entry_id = raw.get("id", f"rule-{index}")
    if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
        raise UsageError(
            f"{where}: invalid id {entry_id!r}: use letters, digits, '.', '_' or '-'",
            hint=_POLICY_HINT,
        )
    hosts = raw.get("hosts")
    if isinstance(hosts, str) or not isinstance(hosts, list | tuple) or not hosts:
        raise UsageError(
            f"{where}: 'hosts' must be a non-empty list", hint=_POLICY_HINT
        )
    ports = raw.get("ports")
    if ports is None:
        ports = list(DEFAULT_PORTS)
    if isinstance(ports, str) or not isinstance(ports, list | tuple) or not ports:
        raise UsageError(
            f"{where}: 'ports' must be a non-empty list", hint=_POLICY_HINT
        )
    return AllowEntry(
        id=entry_id,
        hosts=_unique(validate_host(host, f"{where}.hosts") for host in hosts),
        ports=tuple(sorted({validate_port(port, f"{where}.ports") for port in ports})),
        rate_limit=_rate_limit(raw.get("rate_limit"), where),
    )


def _rate_limit(value: object, where: str) -> str | None:
    """Return a rate limit as ``key=count,...`` text, or None when there is none.

    Accepted: a mapping of limit names to counts (``requests_per_min: 60``), or a
    ``COUNT/UNIT`` string such as ``10/s``.
    """
    if value is None:
        return None
    if isinstance(value, str) and _RATE_LIMIT.match(value):
        return value
    if isinstance(value, Mapping):
        limits = {key: count for key, count in value.items() if count is not None}
        if not limits:
            return None
        parts = []
        for key, count in sorted(limits.items()):
            valid_count = isinstance(count, int) and not isinstance(count, bool)
            if not _LIMIT_KEY.match(str(key)) or not valid_count or count < 0:
                break
            parts.append(f"{key}={count}")
        else:
            return ",".join(parts)
    raise UsageError(
        f"{where}: invalid rate_limit {value!r}: use a mapping of limit names to "
        "counts, such as requests_per_min: 60, or COUNT/UNIT such as 10/s",
        hint=_POLICY_HINT,
    )


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def default_entries(config: Config) -> tuple[AllowEntry, ...]:
    """Return one entry per ``network.allowed_services`` name from the config.

    Each service may be reached on port 443; ``vault.internal`` also on 8200.
    """
    entries = []
    for host in config.network.allowed_services:
        name = validate_host(host, "network.allowed_services")
        ports = VAULT_PORTS if name.lstrip(".") == VAULT_HOST else DEFAULT_PORTS
        entry_id = name.lstrip(".").split(".")[0]
        entries.append(AllowEntry(id=entry_id, hosts=(name,), ports=ports))
    return tuple(entries)


def resolve_names(names: Iterable[str], config: Config) -> dict[str, Resolution]:
    """Decide how each name resolves: static address first, then zone forwarding.

    ``upstream_resolvers`` keys are zones: ``internal`` covers every name ending in
    ``.internal``, and the longest matching zone wins. ``.`` matches every name.
    """
    statics = {
        validate_host(name, "network.static_addresses").lstrip("."): validate_address(
            address, f"network.static_addresses[{name!r}]"
        )
        for name, address in config.network.static_addresses.items()
    }
    upstreams = {
        _zone_key(zone): validate_upstream(
            upstream, f"network.upstream_resolvers[{zone!r}]"
        )
        for zone, upstream in config.network.upstream_resolvers.items()
    }
    result = {}
    for name in names:
        if name in statics:
            result[name] = Resolution(kind="static", address=statics[name])
            continue
        zone = _matching_zone(name, upstreams)
        if zone is not None:
            result[name] = Resolution(
                kind="forward", upstream=upstreams[zone], zone=zone
            )
        else:
            result[name] = Resolution(kind="none")
    return result


def _zone_key(zone: str) -> str:
    if zone.strip() == ".":
        return "."
    return validate_host(zone, "network.upstream_resolvers").lstrip(".")


def _matching_zone(name: str, zones: Mapping[str, str]) -> str | None:
    matches = [
        zone
        for zone in zones
        if zone == "." or name == zone or name.endswith(f".{zone}")
    ]
    if not matches:
        return None
    return max(matches, key=lambda zone: 0 if zone == "." else len(zone))


def allowlist_from_policy(policy: Any, config: Config) -> Allowlist:
    """Build the allowlist from ``network.allow`` in ``policy``.

    ``policy`` may be an EffectivePolicy, a pydantic model or a plain mapping. When
    the policy names no ``network.allow`` entries, the config defaults apply.
    Raises UsageError naming the value and the rule for any invalid host, port,
    static address or upstream resolver, before anything is rendered.
    """
    data = _policy_mapping(policy)
    network = data.get("network") or {}
    if not isinstance(network, Mapping):
        raise UsageError("policy: 'network' must be a mapping", hint=_POLICY_HINT)
    raw_entries = network.get("allow")
    if raw_entries is None:
        entries = default_entries(config)
    elif not isinstance(raw_entries, list | tuple):
        raise UsageError("policy: 'network.allow' must be a list", hint=_POLICY_HINT)
    else:
        entries = tuple(
            _entry_from_policy(raw, index) for index, raw in enumerate(raw_entries)
        )
    ids = [entry.id for entry in entries]
    duplicates = sorted({entry_id for entry_id in ids if ids.count(entry_id) > 1})
    if duplicates:
        raise UsageError(
            f"policy: duplicate network.allow id {duplicates[0]!r}: ids must be unique",
            hint=_POLICY_HINT,
        )
    names = sorted({host.lstrip(".") for entry in entries for host in entry.hosts})
    return Allowlist(entries=entries, resolutions=resolve_names(names, config))
