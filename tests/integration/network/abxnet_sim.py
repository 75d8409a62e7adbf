"""A simulated network for egress tests, built from a network namespace.

One namespace (no default route) contains the test hosts on 198.51.100.0/24 behind
a veth pair whose host end is 198.51.100.1:

- 198.51.100.10 ``vault.internal``: a real OpenBao dev server on port 8200;
- 198.51.100.20 a blocked HTTP host (ports 80, 443, 8443);
- 198.51.100.30 ``api.internal``: HTTP on 443 and 8443, allowlisted for 443 only;
- 198.51.100.53 a rogue DNS server (UDP and TCP 53, TCP 853, UDP 443).

An nftables counter per address inside the namespace shows whether any packet
reached a host at all.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
BAO = "/opt/aibox/venv/bin/bao"
HOST_ADDRESS = "198.51.100.1"
VAULT = "198.51.100.10"
BLOCKED = "198.51.100.20"
API = "198.51.100.30"
ROGUE_DNS = "198.51.100.53"
ROGUE_ANSWER = "198.51.100.99"


@dataclass
class World:
    namespace: str
    veth: str
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def blocked_log(self) -> Path:
        return self.directory / "blocked-http.log"

    @property
    def rogue_log(self) -> Path:
        return self.directory / "rogue-dns.log"

    def packets_to(self, address: str) -> int:
        """Return how many packets for ``address`` entered the namespace."""
        listing = _run(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                "nft",
                "list",
                "table",
                "inet",
                "abxlog",
            ]
        ).stdout
        match = re.search(
            rf"ip daddr {re.escape(address)} counter packets (\d+)", listing
        )
        assert match, listing
        return int(match.group(1))


def _run(
    args: list[str], check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, check=check, timeout=timeout
    )


def _in_namespace(world: World, args: list[str], log: Path) -> None:
    with log.open("ab") as output:
        process = subprocess.Popen(
            ["ip", "netns", "exec", world.namespace, *args],
            stdout=output,
            stderr=output,
            stdin=subprocess.DEVNULL,
        )
    world.processes.append(process)


def _wait_for_line(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path} never showed {text!r}")


def build_world(directory: Path) -> World:
    """Create the namespace, its hosts and servers; undo everything on failure."""
    suffix = secrets.token_hex(3)
    world = World(
        namespace=f"abxnet-ns-{suffix}",
        veth=f"abxnetv{suffix}",
        directory=directory,
    )
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _build(world)
    except BaseException:
        destroy_world(world)
        raise
    return world


def _build(world: World) -> None:
    ns = world.namespace
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", world.veth, "type", "veth", "peer", "name", "abxpeer0"])
    _run(["ip", "link", "set", "abxpeer0", "netns", ns])
    _run(["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", world.veth])
    _run(["ip", "link", "set", world.veth, "up"])
    inside = ["ip", "netns", "exec", ns]
    _run([*inside, "ip", "link", "set", "lo", "up"])
    _run([*inside, "ip", "link", "set", "abxpeer0", "name", "eth0"])
    for address in (VAULT, BLOCKED, API, ROGUE_DNS):
        _run([*inside, "ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    _run([*inside, "ip", "link", "set", "eth0", "up"])
    # Replies to sandbox subnets go back through the host; there is no default route.
    _run([*inside, "ip", "route", "add", "10.213.0.0/16", "via", HOST_ADDRESS])
    counters = "\n".join(
        f"        ip daddr {address} counter"
        for address in (VAULT, BLOCKED, API, ROGUE_DNS)
    )
    ruleset = (
        "table inet abxlog {\n    chain input {\n"
        "        type filter hook input priority 0; policy accept;\n"
        f"{counters}\n    }}\n}}\n"
    )
    subprocess.run(
        [*inside, "nft", "-f", "-"], input=ruleset, text=True, check=True, timeout=30
    )
    python = sys.executable
    vault_log = world.directory / "vault.log"
    _in_namespace(
        world,
        [
            BAO,
            "server",
            "-dev",
            "-dev-root-token-id=abxnet-root",
            f"-dev-listen-address={VAULT}:8200",
        ],
        vault_log,
    )
    _in_namespace(
        world,
        [
            python,
            str(HERE / "abxnet_http.py"),
            "--bind",
            BLOCKED,
            "--port",
            "80",
            "--port",
            "443",
            "--port",
            "8443",
            "--log",
            str(world.blocked_log),
        ],
        world.directory / "blocked-stdout.log",
    )
    api_log = world.directory / "api-http.log"
    _in_namespace(
        world,
        [
            python,
            str(HERE / "abxnet_http.py"),
            "--bind",
            API,
            "--port",
            "443",
            "--port",
            "8443",
            "--log",
            str(api_log),
        ],
        world.directory / "api-stdout.log",
    )
    _in_namespace(
        world,
        [
            python,
            str(HERE / "abxnet_dns.py"),
            "--bind",
            ROGUE_DNS,
            "--port",
            "53",
            "--port",
            "853",
            "--port",
            "443",
            "--answer",
            ROGUE_ANSWER,
            "--log",
            str(world.rogue_log),
        ],
        world.directory / "rogue-stdout.log",
    )
    _wait_for_line(world.blocked_log, "ready")
    _wait_for_line(api_log, "ready")
    _wait_for_line(world.rogue_log, "ready")
    _wait_for_line(vault_log, "Development mode")


def destroy_world(world: World) -> None:
    for process in world.processes:
        if process.poll() is None:
            process.terminate()
    for process in world.processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    _run(["ip", "link", "del", world.veth], check=False)
    _run(["ip", "netns", "del", world.namespace], check=False)
