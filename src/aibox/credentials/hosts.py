"""Hosts the credential helper returns credentials for, from the policy allowlist.

An entry ``git.internal`` matches that host on any port, ``git.internal:8443``
only that port, ``.internal`` the domain and every subdomain, and
``*.internal`` subdomains only. Names compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable

# git omits the port from ``host`` when it is the protocol's default.
DEFAULT_PORTS = {"https": 443, "http": 80}
ANSWERED_PROTOCOLS = frozenset(DEFAULT_PORTS)


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


def host_allowed(
    host: str, allowed: Iterable[str], default_port: int | None = None
) -> bool:
    """Return True when ``host`` (``name`` or ``name:port``) matches an entry.

    A host without a port is on ``default_port`` when one is given.
    """
    name, port = split_host_port(host)
    if not name or port == -1:
        return False
    if port is None:
        port = default_port
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
