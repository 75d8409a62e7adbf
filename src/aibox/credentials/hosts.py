"""Which hosts the credential helper answers for, taken from the policy allowlist.

An entry ``git.internal`` matches that host on any port, ``git.internal:8443``
only that port, ``.internal`` the domain and every subdomain, and
``*.internal`` subdomains only. Names compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aibox.config import Config

ANSWERED_PROTOCOLS = frozenset({"https", "http"})


def split_host_port(host: str) -> tuple[str, int | None]:
    """Split ``name:port`` or ``[v6]:port``; an invalid port yields ``(host, -1)``."""
    host = host.strip()
    if host.startswith("["):
        closing = host.find("]")
        if closing == -1:
            return host.lower(), None
        name, rest = host[1:closing], host[closing + 1 :]
    elif host.count(":") == 1:
        name, _, port_text = host.partition(":")
        rest = ":" + port_text
    else:
        name, rest = host, ""
    name = name.lower().rstrip(".")
    if not rest:
        return name, None
    port_text = rest.removeprefix(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return name, -1
    return name, int(port_text)


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Return True when ``host`` (``name`` or ``name:port``) matches an entry."""
    name, port = split_host_port(host)
    if not name or port == -1:
        return False
    for entry in allowed:
        entry_name, entry_port = split_host_port(entry)
        if entry_port == -1 or (entry_port is not None and entry_port != port):
            continue
        if entry_name.startswith("*."):
            if name.endswith(entry_name[1:]) and name != entry_name[2:]:
                return True
        elif entry_name.startswith("."):
            if name == entry_name[1:] or name.endswith(entry_name):
                return True
        elif entry_name and name == entry_name:
            return True
    return False


def _entry_text(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry.strip() or None
    if isinstance(entry, dict):
        name = entry.get("host") or entry.get("domain") or entry.get("name")
        if not isinstance(name, str) or not name.strip():
            return None
        port = entry.get("port")
        return f"{name.strip()}:{port}" if isinstance(port, int) else name.strip()
    return None


def allowed_hosts_from_policy(policy_data: dict[str, Any], config: Config) -> list[str]:
    """Collect the allowlisted hosts from the effective policy data.

    The policy may list them under ``network.allowlist``, ``network.allow``,
    ``network.allowed_hosts`` or a top-level ``allowlist``, as names or as
    mappings with ``host``/``domain`` and an optional ``port``. Without any, the
    config's ``network.allowed_services`` apply.
    """
    # NOTE: the keys read here follow the policy model as far as it is known;
    # an unknown layout falls back to the config services, never to "any host".
    network = policy_data.get("network")
    candidates: list[Any] = []
    if isinstance(network, dict):
        for key in ("allowlist", "allow", "allowed_hosts", "hosts"):
            value = network.get(key)
            if isinstance(value, list):
                candidates.extend(value)
    top_level = policy_data.get("allowlist")
    if isinstance(top_level, list):
        candidates.extend(top_level)
    hosts = [text for text in map(_entry_text, candidates) if text]
    if not hosts:
        hosts = list(config.network.allowed_services)
    return sorted(set(hosts))
