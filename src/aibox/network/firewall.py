"""Kernel-side pieces of enforcement: the nftables table, the sandbox bridge and
Podman network, and the blackhole route for the sandbox subnet."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from pathlib import Path

from aibox.errors import EnforcementError, ExternalToolError, UsageError
from aibox.network.settings import NetworkSettings
from aibox.network.tools import run_tool

log = logging.getLogger(__name__)

PODMAN_NETWORKS_DIR = Path("/etc/containers/networks")
BLACKHOLE_METRIC = 4242
BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
BRIDGE_NF_CALL_IP6 = Path("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
_SETUP_HINT = "Run 'sudo aibox setup --system'."
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def apply_ruleset(text: str) -> None:
    """Check ``text`` with ``nft -c`` and then load it in one transaction.

    A ruleset that fails the check is never loaded, so the previous table stays.
    """
    run_tool(
        ["nft", "-c", "-f", "-"],
        input_text=text,
        hint="The previous ruleset stays loaded; the rendered ruleset is invalid.",
    )
    run_tool(["nft", "-f", "-"], input_text=text)


def loaded_ruleset(settings: NetworkSettings) -> str | None:
    """Return the loaded table as ``nft list`` prints it, counters zeroed.

    Returns None when the table does not exist. Raises EnforcementError when the
    ruleset cannot be read (listing it needs CAP_NET_ADMIN).
    """
    result = run_tool(
        ["nft", "list", "table", "inet", settings.table], check=False, timeout=10
    )
    if result.returncode == 0:
        return _COUNTER.sub("counter packets 0 bytes 0", result.stdout)
    if "No such file or directory" in result.stderr:
        return None
    raise EnforcementError(
        f"cannot read the nftables ruleset: {result.stderr.strip() or 'no output'}",
        hint="Run the check as root, or run 'sudo aibox doctor'.",
    )


def reject_counters(settings: NetworkSettings) -> int:
    """Return the number of packets the table's reject rules have counted."""
    result = run_tool(["nft", "list", "table", "inet", settings.table], check=False)
    return sum(
        int(match.group(1))
        for match in re.finditer(
            r"counter packets (\d+) bytes \d+ reject", result.stdout
        )
    )


def delete_table(settings: NetworkSettings) -> None:
    run_tool(["nft", "delete", "table", "inet", settings.table], check=False)


def link_exists(name: str) -> bool:
    return run_tool(["ip", "link", "show", "dev", name], check=False).returncode == 0


def ensure_bridge(settings: NetworkSettings) -> list[str]:
    """Create the sandbox bridge with the gateway address when it is missing.

    netavark reuses an existing bridge, and deletes it again with the last
    container. The proxy and DNS listeners bound to the gateway survive that, but
    they can only bind it while the address exists, so setup creates it first.
    """
    if link_exists(settings.bridge):
        return []
    prefix = ipaddress.ip_network(settings.subnet).prefixlen
    run_tool(["ip", "link", "add", settings.bridge, "type", "bridge"])
    run_tool(
        ["ip", "addr", "add", f"{settings.gateway}/{prefix}", "dev", settings.bridge]
    )
    run_tool(["ip", "link", "set", settings.bridge, "up"])
    return [f"created bridge {settings.bridge} with {settings.gateway}/{prefix}"]


def ensure_bridge_filtering() -> list[str]:
    """Make bridged IPv4 and IPv6 traffic pass the inet hooks, so the ruleset also
    rejects traffic between sandboxes on the same bridge.

    Without ``br_netfilter`` frames between two containers never reach
    nftables' inet ``forward`` hook. IPv6 needs its own setting: a network with
    no IPv6 subnet still gives every sandbox a link-local address, through which
    it reaches the others. The settings are host-wide; Docker and Kubernetes hosts
    have them on already.
    """
    if not BRIDGE_NF_CALL.exists():
        return [
            "warning: br_netfilter is not loaded, so sandboxes on the same bridge "
            "can reach each other; load it with 'modprobe br_netfilter' and run "
            "setup again"
        ]
    changes = []
    for setting in (BRIDGE_NF_CALL, BRIDGE_NF_CALL_IP6):
        if setting.read_text().strip() != "1":
            setting.write_text("1\n")
            changes.append(f"enabled {setting.name} for traffic between sandboxes")
    return changes


def ensure_blackhole_route(settings: NetworkSettings) -> list[str]:
    """Add a high-metric blackhole route so the subnet never leaves the host.

    While the bridge exists, its connected route (metric 0) wins. When the bridge
    is gone, traffic for the subnet is dropped here instead of following the
    default route off the machine.
    """
    result = run_tool(["ip", "-j", "route", "show", "type", "blackhole"])
    for route in json.loads(result.stdout or "[]"):
        if route.get("dst") == settings.subnet:
            return []
    run_tool(
        [
            "ip",
            "route",
            "add",
            "blackhole",
            settings.subnet,
            "metric",
            str(BLACKHOLE_METRIC),
        ]
    )
    return [f"added blackhole route for {settings.subnet}"]


def remove_blackhole_route(settings: NetworkSettings) -> None:
    run_tool(
        ["ip", "route", "del", "blackhole", settings.subnet],
        check=False,
    )


def ensure_podman_network(settings: NetworkSettings) -> list[str]:
    """Create the Podman network (no aardvark DNS) and pin its bridge name.

    Podman 4.3 has no ``--interface-name``, so the bridge name is written into
    the network's JSON file, which Podman reads on every run.
    """
    changes = []
    exists = run_tool(["podman", "network", "exists", settings.name], check=False)
    if exists.returncode != 0:
        run_tool(
            [
                "podman",
                "network",
                "create",
                "--disable-dns",
                "--subnet",
                settings.subnet,
                "--gateway",
                settings.gateway,
                settings.name,
            ],
            timeout=60,
        )
        changes.append(f"created Podman network {settings.name} ({settings.subnet})")
    path = PODMAN_NETWORKS_DIR / f"{settings.name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExternalToolError(
            f"cannot read the Podman network file {path}: {exc}",
            hint=f"Remove the network with 'podman network rm {settings.name}' "
            "and run 'sudo aibox setup --system' again.",
        ) from None
    subnets = [entry.get("subnet") for entry in data.get("subnets", [])]
    if subnets != [settings.subnet]:
        raise UsageError(
            f"Podman network {settings.name} has subnets {subnets}, "
            f"expected [{settings.subnet!r}]",
            hint=f"Remove it with 'podman network rm {settings.name}' or change "
            "network.subnet in config.yaml, then run 'sudo aibox setup --system'.",
        )
    if data.get("network_interface") != settings.bridge or data.get("dns_enabled"):
        data["network_interface"] = settings.bridge
        data["dns_enabled"] = False
        path.write_text(json.dumps(data, indent=5) + "\n")
        changes.append(
            f"pinned Podman network {settings.name} to bridge {settings.bridge}"
        )
    return changes


def remove_podman_network(settings: NetworkSettings) -> None:
    run_tool(["podman", "network", "rm", "-f", settings.name], check=False, timeout=60)
