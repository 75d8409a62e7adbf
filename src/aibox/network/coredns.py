"""Render CoreDNS's Corefile from the allowlist.

CoreDNS runs the plugins of a server block in its compiled order (``acl`` before
``template`` before ``hosts`` before ``forward``), whatever order the file lists
them in. So each allowlisted name gets a server block of its own, in which:

- ``acl`` refuses TXT, NULL and ANY queries (the record types DNS tunnels use);
- ``template`` answers NXDOMAIN for subdomains that the rule does not allow;
- ``hosts`` answers a static address, or ``forward`` sends the query to the
  upstream resolver configured for the name's zone, for that name only.

The root block answers NXDOMAIN for every other name. CoreDNS picks the most
specific zone, so an allowlisted name never reaches the root block.
"""

from __future__ import annotations

import re

from aibox.network.allowlist import Allowlist
from aibox.network.settings import METRICS_PORT, NetworkSettings

STATIC_TTL = 60


def _snippet(settings: NetworkSettings) -> list[str]:
    return [
        "(aibox_common) {",
        f"    bind {' '.join(dict.fromkeys([settings.gateway, settings.loopback]))}",
        "    acl {",
        "        block type TXT NULL ANY",
        "    }",
        "    log",
        "    errors",
        f"    prometheus {settings.loopback}:{METRICS_PORT}",
        "}",
    ]


def _subdomain_pattern(name: str) -> str:
    return "^.+[.]" + re.escape(name).replace(r"\.", "[.]") + "[.]$"


def _name_block(allowlist: Allowlist, name: str, port: int) -> list[str]:
    resolution = allowlist.resolution(name)
    subdomains = allowlist.includes_subdomains(name)
    lines = [f"{name}:{port} {{", "    import aibox_common"]
    if resolution.kind == "static" or not subdomains:
        # Static records exist for the name itself only; exact rules allow no
        # subdomains. ``fallthrough`` hands the name itself to the next plugin.
        lines += [
            f"    template ANY ANY {name} {{",
            f'        match "{_subdomain_pattern(name)}"',
            "        rcode NXDOMAIN",
            "        fallthrough",
            "    }",
        ]
    if resolution.kind == "static":
        lines += [
            "    hosts {",
            f"        {resolution.address} {name}",
            f"        ttl {STATIC_TTL}",
            "        no_reverse",
            "    }",
        ]
    elif resolution.kind == "forward":
        lines.append(f"    forward . {resolution.upstream}")
    lines.append("}")
    return lines


def render_corefile(allowlist: Allowlist, settings: NetworkSettings) -> str:
    """Return the complete Corefile for ``allowlist``."""
    port = settings.dns_port
    lines = [
        "# aibox DNS, rendered from the network allowlist by 'aibox setup --system'.",
        "# Local edits are overwritten.",
        f"# allowlist sha256 {allowlist.digest()}",
        *_snippet(settings),
        "",
    ]
    for name in allowlist.names:
        resolution = allowlist.resolution(name)
        if resolution.kind == "none":
            lines.append(
                f"# {name}: no static address or upstream resolver is configured, "
                "so it gets NXDOMAIN"
            )
            continue
        lines += [*_name_block(allowlist, name, port), ""]
    lines += [
        f".:{port} {{",
        "    import aibox_common",
        "    template ANY ANY {",
        "        rcode NXDOMAIN",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
