"""Render the nftables ruleset that confines sandbox traffic to the proxy and DNS.

The table (family ``inet``, named after the Podman network) is aibox's own, so
netavark's and the administrator's tables are untouched. Sandbox traffic is
recognised by the bridge name and, independently, by the subnet as source:

- ``input`` (traffic addressed to the host, such as the proxy on the gateway):
  only TCP to the proxy port and UDP or TCP to the DNS port on the gateway pass;
- ``forward`` (routed traffic): everything from the sandbox network is rejected,
  as is any new connection into it.

Rejects use ``icmpx admin-prohibited`` so a blocked call fails at once instead of
waiting for a timeout, and each reject counts its packets. The file starts by
declaring and deleting the table, so applying it twice leaves one copy, and
``nft -f`` applies the whole file as one transaction.
"""

from __future__ import annotations

from aibox.network.allowlist import Allowlist
from aibox.network.settings import NetworkSettings

REJECT = "counter reject with icmpx admin-prohibited"


def render_ruleset(allowlist: Allowlist, settings: NetworkSettings) -> str:
    """Return the ``nft -f`` input for ``allowlist``.

    The rules do not depend on the allowlist, because sandboxes only ever reach
    the proxy and the DNS server, which apply it. The header lists the allowlist
    and its digest so an operator can see which policy the file belongs to.
    """
    table = settings.table
    bridge = settings.bridge
    subnet = settings.subnet
    gateway = settings.gateway
    header = [
        "#!/usr/sbin/nft -f",
        "# aibox egress ruleset, rendered from the network allowlist by",
        "# 'aibox setup --system'. Local edits are overwritten.",
        f"# allowlist sha256 {allowlist.digest()}",
        "# Sandboxes reach only the proxy and the DNS server on the gateway; the proxy",
        "# then allows these rules:",
    ]
    for entry in allowlist.entries:
        ports = ",".join(str(port) for port in entry.ports)
        header.append(f"#   {entry.id}: {' '.join(entry.hosts)} ports {ports}")
    body = f"""
table inet {table} {{}}
delete table inet {table}

table inet {table} {{
    comment "aibox sandbox egress for network {settings.name}"

    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{bridge}" jump from_sandbox
        ip saddr {subnet} jump from_sandbox
    }}

    chain from_sandbox {{
        ip daddr {gateway} tcp dport {settings.proxy_port} accept
        ip daddr {gateway} udp dport {settings.dns_port} accept
        ip daddr {gateway} tcp dport {settings.dns_port} accept
        {REJECT}
    }}

    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{bridge}" {REJECT}
        ip saddr {subnet} {REJECT}
        oifname "{bridge}" ct state new {REJECT}
        ip daddr {subnet} ct state new {REJECT}
    }}
}}
"""
    return "\n".join(header) + "\n" + body
