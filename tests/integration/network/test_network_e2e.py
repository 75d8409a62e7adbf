"""Egress enforcement end to end: real Squid, CoreDNS and nftables on the host,
root-run and rootless gVisor containers of the sandbox image, and the simulated
network from ``abxnet_sim``.

Every probe runs twice from inside the sandbox: first with enforcement off (the
aibox table deleted), where each negative probe must succeed, then with it on,
where it must fail. So a negative test cannot pass because the network is broken.

ICMP and IPv6 get the same treatment. The Podman network has no IPv6 subnet, so
a root-run sandbox has only link-local IPv6; that is enough to reach the host's
bridge address and other sandboxes, which the tests aim at. ICMP needs a socket
that aibox's sandboxes cannot open, so those probes run in containers granted
one, and a separate test shows the sandbox configuration refuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from aibox.cli.main import main
from aibox.config import Config
from aibox.errors import AiboxError, EnforcementError
from aibox.network import firewall, host, services
from aibox.network.allowlist import allowlist_from_policy
from aibox.network.enforcement import check_host_enforcement, container_network_args
from aibox.network.probes import run_probes, sandbox_probes
from aibox.network.settings import NetworkSettings, network_settings
from aibox.policy.effective import EffectivePolicy
from aibox.policy.hierarchy import packaged_org_text
from aibox.sandbox.image import DEFAULT_IMAGE, ensure_image
from aibox.sandbox.podman import Podman
from tests.conftest import require_root, require_tool
from tests.integration.network.abxnet_sim import (
    API,
    BLOCKED,
    ROGUE_ANSWER,
    ROGUE_DNS,
    VAULT,
    World,
    build_world,
    destroy_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.root]

NETWORK = {
    "podman_network": "abxnet-e2e",
    "subnet": "10.213.64.0/24",
    "bridge": "abxnete0",
    "static_addresses": {"vault.internal": VAULT, "api.internal": API},
}
POLICY = {
    "version": 1,
    "network": {
        "allow": [
            {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
            {"id": "api", "hosts": ["api.internal"], "ports": [443]},
        ]
    },
}
NO_PROXY_ENV = "env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY"
CURL = "curl -s -m 6 -o /dev/null"
DIG = "dig +tries=1 +time=3"
TCP_853 = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{ROGUE_DNS}/853'"
HERE = Path(__file__).parent
ICMP_SCRIPT = "/opt/abxnet_icmp.py"
IPV6_HOST_PORT = 8086
ROOT_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@dataclass(frozen=True)
class Probe:
    """One request, run as ``baseline`` with enforcement off and ``enforced`` on."""

    baseline: str
    enforced: str


def probes(proxy: str) -> dict[str, Probe]:
    """Return the probes by name; ``proxy`` is the URL the sandbox's variables name."""
    direct_blocked = f"{NO_PROXY_ENV} {CURL} -w '%{{http_code}}' http://{BLOCKED}/"
    return {
        "vault_resolves": Probe("true", f"{DIG} +short vault.internal"),
        "vault_health": Probe(
            "true",
            f"{CURL} -w '%{{http_code}}' http://vault.internal:8200/v1/sys/health",
        ),
        "blocked_name": Probe(
            f"{CURL} --noproxy '*' --resolve blocked.example:80:{BLOCKED} "
            "-w '%{http_code}' http://blocked.example/",
            "curl -s -m 6 -D - http://blocked.example/",
        ),
        "ip_literal": Probe(
            f"{CURL} --noproxy '*' -w '%{{http_code}}' http://{VAULT}:8200/v1/sys/health",
            f"{CURL} -w '%{{http_code}}' http://{VAULT}:8200/v1/sys/health",
        ),
        "connect_port": Probe(
            f"{CURL} --noproxy '*' -w '%{{http_code}}' http://{API}:8443/",
            f"{CURL} -p -x {proxy} -w '%{{http_connect}}' https://api.internal:8443/",
        ),
        "direct_no_proxy": Probe(direct_blocked, direct_blocked),
        "rogue_udp": Probe(
            f"{DIG} +short @{ROGUE_DNS} anything.example",
            f"{DIG} +short @{ROGUE_DNS} anything.example",
        ),
        "rogue_tcp": Probe(
            f"{DIG} +tcp +short @{ROGUE_DNS} anything.example",
            f"{DIG} +tcp +short @{ROGUE_DNS} anything.example",
        ),
        "dot_853": Probe(TCP_853, TCP_853),
        "udp_443": Probe(
            f"{DIG} -p 443 +short @{ROGUE_DNS} anything.example",
            f"{DIG} -p 443 +short @{ROGUE_DNS} anything.example",
        ),
        "txt_allowlisted": Probe(
            f"{DIG} TXT vault.internal @{ROGUE_DNS}", f"{DIG} TXT vault.internal"
        ),
        "outside_name": Probe(
            f"{DIG} +short blocked.example @{ROGUE_DNS}", f"{DIG} blocked.example"
        ),
    }


@dataclass
class Outcome:
    code: int
    output: str


@dataclass
class Ipv6Facts:
    """IPv6 state of the root-run sandbox's network namespace and host side."""

    addresses: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    host_log: Path
    reject_packets_before: int
    reject_packets_after: int
    retry: Outcome


@dataclass
class Run:
    """Everything the tests assert on, gathered in one pass over the probes."""

    config: Config
    world: World
    baseline: dict[str, Outcome]
    enforced: dict[str, Outcome]
    blocked_packets_off: int
    blocked_packets_on: int
    rogue_packets_off: int
    rogue_packets_on: int
    blocked_log_off: str
    blocked_log_on: str
    setup_changes: list[str]
    rerun_changes: list[str]
    container: str
    podman: list[str]
    rootless: bool
    ipv6: Ipv6Facts | None = field(default=None)


def _exec(podman: list[str], container: str, command: str) -> Outcome:
    result = subprocess.run(
        [*podman, "exec", container, "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Outcome(result.returncode, (result.stdout + result.stderr).strip())


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="abxnet-e2e-", dir="/var/tmp"))
    base.chmod(0o755)
    saved = {name: os.environ.get(name) for name in _PATH_VARIABLES}
    os.environ["AIBOX_SYSTEM_DIR"] = str(base / "etc")
    os.environ["AIBOX_RUN_DIR"] = str(base / "run")
    os.environ["AIBOX_LOG_DIR"] = str(base / "log")
    try:
        yield base
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(base, ignore_errors=True)


_PATH_VARIABLES = ("AIBOX_SYSTEM_DIR", "AIBOX_RUN_DIR", "AIBOX_LOG_DIR")


@dataclass
class EnforcedHost:
    config: Config
    world: World
    image: str
    setup_changes: list[str]
    rerun_changes: list[str]


@pytest.fixture(scope="module")
def enforced_host(work_dir: Path) -> Iterator[EnforcedHost]:
    """Host enforcement for the test network, and the simulated network."""
    require_root()
    for tool in ("podman", "runsc", "squid", "nft"):
        require_tool(tool)
    if not os.access("/opt/aibox/bin/coredns", os.X_OK):
        pytest.skip("CoreDNS is not built; run scripts/install-deps.sh")
    image = ensure_image(Podman.locate(), DEFAULT_IMAGE, lambda message: None).image
    config = Config.model_validate({"network": NETWORK})
    world = build_world(work_dir / "world")
    try:
        setup_changes = host.setup_network(config, POLICY)
        rerun_changes = host.setup_network(config, POLICY)
        yield EnforcedHost(config, world, image, setup_changes, rerun_changes)
    finally:
        host.teardown_network(config)
        destroy_world(world)


def _measure(
    world: World,
    checks: dict[str, Probe],
    run_baseline: Callable[[str], Outcome],
    enforce: Callable[[], None],
    run_enforced: Callable[[str], Outcome],
) -> dict[str, Any]:
    baseline = {name: run_baseline(probe.baseline) for name, probe in checks.items()}
    measured: dict[str, Any] = {
        "baseline": baseline,
        "blocked_packets_off": world.packets_to(BLOCKED),
        "rogue_packets_off": world.packets_to(ROGUE_DNS),
        "blocked_log_off": world.blocked_log.read_text(),
    }
    enforce()
    measured["enforced"] = {
        name: run_enforced(probe.enforced) for name, probe in checks.items()
    }
    measured["blocked_packets_on"] = world.packets_to(BLOCKED)
    measured["rogue_packets_on"] = world.packets_to(ROGUE_DNS)
    measured["blocked_log_on"] = world.blocked_log.read_text()
    return measured


@pytest.fixture(scope="module")
def root_run(enforced_host: EnforcedHost, work_dir: Path) -> Iterator[Run]:
    """Probe a root-run gVisor sandbox with the aibox table deleted, then loaded."""
    config = enforced_host.config
    settings = network_settings(config)
    container = f"abxnet-e2e-root-{secrets.token_hex(3)}"
    peer = f"abxnet-e2e-peer-{secrets.token_hex(3)}"
    listener: subprocess.Popen[bytes] | None = None
    try:
        args = [
            "podman", "run", "-d", "--name", container,
            "--runtime", shutil.which("runsc") or "runsc",
            "--runtime-flag", "network=host",
            *ROOT_ULIMITS,
            *container_network_args(config, rootless=False),
            enforced_host.image, "sleep", "900",
        ]  # fmt: skip
        subprocess.run(args, check=True, capture_output=True, timeout=120)
        # Dual-stack, so the peer answers on IPv4 and on its link-local IPv6.
        peer_command = ["python3", "-m", "http.server", "--bind", "::", "8080"]
        peer_args = [*args[:4], peer, *args[5:-2], *peer_command]
        subprocess.run(peer_args, check=True, capture_output=True, timeout=120)
        peer_address = subprocess.run(
            ["podman", "inspect", "--format",
             "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", peer],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        checks = probes(f"http://{settings.gateway}:{settings.proxy_port}")
        to_peer = (
            f"{NO_PROXY_ENV} {CURL} -w '%{{http_code}}' http://{peer_address}:8080/"
        )
        checks["peer_sandbox"] = Probe(to_peer, to_peer)

        in_sandbox = _namespace_of(container)
        _link_local(in_sandbox, "eth0")
        peer_ipv6 = _link_local(_namespace_of(peer), "eth0")
        bridge_ipv6 = _link_local([], settings.bridge)
        host_log = work_dir / "ipv6-host.log"
        listener = _start_listener(f"{bridge_ipv6}%{settings.bridge}", host_log)
        to_peer_ipv6 = f"{NO_PROXY_ENV} {CURL} -w '%{{http_code}}' " + (
            f"'http://[{peer_ipv6}%25eth0]:8080/'"
        )
        checks["peer_ipv6"] = Probe(to_peer_ipv6, to_peer_ipv6)
        to_host_ipv6 = f"{NO_PROXY_ENV} {CURL} -w '%{{http_code}}' " + (
            f"'http://[{bridge_ipv6}%25eth0]:{IPV6_HOST_PORT}/"
        )
        checks["host_ipv6"] = Probe(to_host_ipv6 + "off'", to_host_ipv6 + "on'")

        firewall.delete_table(settings)
        measured = _measure(
            enforced_host.world,
            checks,
            lambda command: _exec(["podman"], container, command),
            lambda: host.setup_network(config, POLICY),
            lambda command: _exec(["podman"], container, command),
        )
        before = _reject_packets(settings, "from_sandbox")
        retry = _exec(["podman"], container, to_host_ipv6 + "retry'")
        ipv6 = Ipv6Facts(
            addresses=_ip_json(in_sandbox, "addr"),
            routes=_ip_json(in_sandbox, "route"),
            host_log=host_log,
            reject_packets_before=before,
            reject_packets_after=_reject_packets(settings, "from_sandbox"),
            retry=retry,
        )
        yield Run(
            config=config,
            world=enforced_host.world,
            setup_changes=enforced_host.setup_changes,
            rerun_changes=enforced_host.rerun_changes,
            container=container,
            podman=["podman"],
            rootless=False,
            ipv6=ipv6,
            **measured,
        )
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=10)
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", container, peer], capture_output=True
        )


def _namespace_of(container: str) -> list[str]:
    """Return the command prefix that runs a host tool in ``container``'s netns.

    Under gVisor with ``network=host`` that namespace is the one the sandbox's
    sockets use, so it shows what the sandbox can reach.
    """
    pid = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Pid}}", container],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return ["nsenter", "-t", pid, "-n"]


def _ip_json(namespace: list[str], kind: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*namespace, "ip", "-j", "-6", kind, "show"],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _link_local(namespace: list[str], device: str) -> str:
    """Return ``device``'s IPv6 link-local address once duplicate detection ends."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = subprocess.run(
            [*namespace, "ip", "-j", "-6", "addr", "show", "dev", device,
             "scope", "link"],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        for interface in json.loads(result.stdout):
            for address in interface.get("addr_info", []):
                if not address.get("tentative"):
                    return str(address["local"])
        time.sleep(0.2)
    raise TimeoutError(f"{device} has no usable IPv6 link-local address")


def _start_listener(bind: str, log: Path) -> subprocess.Popen[bytes]:
    """Start the test HTTP server on the host, logging each request to ``log``."""
    listener = subprocess.Popen(
        [sys.executable, str(HERE / "abxnet_http.py"), "--bind", bind,
         "--port", str(IPV6_HOST_PORT), "--log", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (log.exists() and "ready" in log.read_text()):
        if time.monotonic() > deadline or listener.poll() is not None:
            listener.kill()
            raise RuntimeError(f"the listener on {bind} did not start")
        time.sleep(0.1)
    return listener


def _reject_packets(settings: NetworkSettings, chain: str) -> int:
    """Return the packet count of the catch-all reject rule in ``chain``."""
    result = subprocess.run(
        ["nft", "-j", "list", "chain", "inet", settings.table, chain],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    counts = []
    for item in json.loads(result.stdout)["nftables"]:
        expressions = item.get("rule", {}).get("expr", [])
        kinds = [next(iter(expression)) for expression in expressions]
        if kinds == ["counter", "reject"]:
            counts.append(expressions[0]["counter"]["packets"])
    assert len(counts) == 1, result.stdout
    return int(counts[0])


# Root-run containers that can send ICMP echo requests, by name: the socket type
# and their extra podman arguments. gVisor with network=host hands ICMP only to
# raw sockets, only with its net-raw flag, and only to the container's first
# process (``runsc exec`` drops CAP_NET_RAW), so every probe is its own run.
ICMP_SANDBOXES = {
    "gvisor": ("raw", ["--user", "0", "--cap-add", "NET_RAW",
                       "--runtime-flag", "network=host", "--runtime-flag", "net-raw"]),
    "runc": ("dgram", ["--sysctl", "net.ipv4.ping_group_range=0 2147483647"]),
}  # fmt: skip
ICMP_TARGETS = ("simulated_host", "gateway")


@dataclass
class IcmpRun:
    """ICMP echo outcomes by (sandbox, target), and packets seen by the host."""

    baseline: dict[tuple[str, str], Outcome]
    enforced: dict[tuple[str, str], Outcome]
    packets_before: int
    packets_off: int
    packets_on: int
    sandbox_sockets: dict[tuple[str, str], Outcome]


def _icmp_probe(
    enforced_host: EnforcedHost, runtime: str, extra: list[str], command: list[str]
) -> Outcome:
    args = [
        "podman", "run", "--rm", "--name", f"abxicmp-e2e-{secrets.token_hex(3)}",
        "--runtime", shutil.which(runtime) or runtime, *ROOT_ULIMITS, *extra,
        *container_network_args(enforced_host.config, rootless=False),
        "--volume", f"{HERE / 'abxnet_icmp.py'}:{ICMP_SCRIPT}:ro",
        enforced_host.image, "python3", ICMP_SCRIPT, *command,
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return Outcome(result.returncode, result.stdout.strip())


@pytest.fixture(scope="module")
def icmp_run(enforced_host: EnforcedHost) -> IcmpRun:
    """Send ICMP echo requests with the aibox table deleted, then loaded."""
    settings = network_settings(enforced_host.config)
    targets = {"simulated_host": BLOCKED, "gateway": settings.gateway}
    world = enforced_host.world

    def echo_all() -> dict[tuple[str, str], Outcome]:
        outcomes = {}
        for name, (kind, extra) in ICMP_SANDBOXES.items():
            runtime = "runsc" if name == "gvisor" else "runc"
            for target, address in targets.items():
                outcomes[name, target] = _icmp_probe(
                    enforced_host, runtime, extra, [kind, address]
                )
        return outcomes

    # The flags aibox gives every sandbox: no capabilities, the sandbox user.
    # Podman's default net.ipv4.ping_group_range ("0 0") excludes that user too.
    sandbox_flags = ["--cap-drop=ALL", "--user", "1000:1000"]
    sandbox_sockets = {}
    for runtime, extra in (("runsc", ["--runtime-flag", "network=host"]), ("runc", [])):
        for kind in ("raw", "dgram"):
            sandbox_sockets[runtime, kind] = _icmp_probe(
                enforced_host, runtime, [*extra, *sandbox_flags], [kind, BLOCKED]
            )

    firewall.delete_table(settings)
    packets_before = world.packets_to(BLOCKED)
    try:
        baseline = echo_all()
        packets_off = world.packets_to(BLOCKED)
    finally:
        host.setup_network(enforced_host.config, POLICY)
    enforced = echo_all()
    return IcmpRun(
        baseline=baseline,
        enforced=enforced,
        packets_before=packets_before,
        packets_off=packets_off,
        packets_on=world.packets_to(BLOCKED),
        sandbox_sockets=sandbox_sockets,
    )


@dataclass
class RootlessUser:
    name: str
    uid: int
    home: Path

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    def command(self, *args: str) -> list[str]:
        """Return ``args`` wrapped to run as this user with a rootless Podman setup."""
        return [
            "runuser", "-u", self.name, "--", "env", "-i",
            f"HOME={self.home}", f"USER={self.name}",
            f"XDG_RUNTIME_DIR={self.runtime_dir}",
            f"PATH={SYSTEM_PATH}",
            *[f"{name}={os.environ[name]}" for name in _PATH_VARIABLES],
            *args,
        ]  # fmt: skip


SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def rootless_user(work_dir: Path) -> Iterator[RootlessUser]:
    """A throwaway user with subordinate ids, removed with its files afterwards."""
    require_root()
    require_tool("runuser")
    suffix = secrets.token_hex(3)
    name = f"abxnetr{suffix}"
    first_subid = 2_100_000_000 + (int(suffix, 16) % 1000) * 65536
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    try:
        # usermod locks the subordinate id files, which other tests edit too.
        ids = f"{first_subid}-{first_subid + 65535}"
        subprocess.run(
            ["usermod", "--add-subuids", ids, "--add-subgids", ids, name], check=True
        )
        uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
        user = RootlessUser(name, uid, Path(f"/home/{name}"))
        user.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(user.runtime_dir, uid, uid)
        yield user
    finally:
        _remove_user(name, first_subid)


def _remove_user(name: str, first_subid: int) -> None:
    """Remove the test user, its subordinate ids and every process it still runs.

    The user exists only for this test, so all its processes (Podman's pause
    process, a D-Bus session) were started here.
    """
    ids = f"{first_subid}-{first_subid + 65535}"
    subprocess.run(
        ["usermod", "--del-subuids", ids, "--del-subgids", ids, name],
        capture_output=True,
    )
    uid = _uid_of(name)
    if uid < 0:
        return
    listing = subprocess.run(
        ["ps", "-o", "pid=", "-u", str(uid)], capture_output=True, text=True
    )
    for pid in listing.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
    shutil.rmtree(f"/home/{name}", ignore_errors=True)
    shutil.rmtree(f"/run/user/{uid}", ignore_errors=True)


def _uid_of(name: str) -> int:
    result = subprocess.run(["id", "-u", name], capture_output=True, text=True)
    return int(result.stdout) if result.returncode == 0 else -1


@pytest.fixture(scope="module")
def rootless_run(
    enforced_host: EnforcedHost, rootless_user: RootlessUser, work_dir: Path
) -> Iterator[Run]:
    """Probe a rootless gVisor sandbox: a baseline one on slirp4netns, then one
    with no network interface behind the relay."""
    config = enforced_host.config
    user = rootless_user
    podman = user.command("podman")
    archive = work_dir / "probe-image.tar"
    if not archive.exists():
        subprocess.run(["podman", "save", "-o", str(archive), enforced_host.image],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        archive.chmod(0o644)
    subprocess.run([*podman, "load", "-i", str(archive)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    runtime = [
        "--runtime", shutil.which("runsc") or "runsc",
        "--runtime-flag", "network=host", "--runtime-flag", "ignore-cgroups",
        "--pull=never",
    ]  # fmt: skip
    open_box = f"abxnet-e2e-open-{secrets.token_hex(3)}"
    sandbox = f"abxnet-e2e-rootless-{secrets.token_hex(3)}"
    try:
        subprocess.run(
            [*podman, "run", "-d", "--name", open_box, *runtime,
             "--network", "slirp4netns", "--dns", ROGUE_DNS,
             enforced_host.image, "sleep", "900"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        checks = probes("http://127.0.0.1:3128")

        def start_enforced() -> None:
            subprocess.run(
                [*podman, "run", "-d", "--name", sandbox, *runtime,
                 *container_network_args(config, rootless=True),
                 enforced_host.image, "sleep", "900"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            attach = (
                "import json, sys\n"
                "from aibox.config import Config\n"
                "from aibox.network.enforcement import attach_sandbox_network\n"
                "config = Config.model_validate(json.loads(sys.argv[1]))\n"
                "attach_sandbox_network(config, sys.argv[2], rootless=True)\n"
            )
            subprocess.run(
                user.command(sys.executable, "-c", attach,
                             json.dumps({"network": NETWORK}), sandbox),
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip

        measured = _measure(
            enforced_host.world,
            checks,
            lambda command: _exec(podman, open_box, command),
            start_enforced,
            lambda command: _exec(podman, sandbox, command),
        )
        yield Run(
            config=config,
            world=enforced_host.world,
            setup_changes=enforced_host.setup_changes,
            rerun_changes=enforced_host.rerun_changes,
            container=sandbox,
            podman=podman,
            rootless=True,
            **measured,
        )
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "0", open_box, sandbox],
                       capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module", params=["root", "rootless"])
def run(request: pytest.FixtureRequest) -> Run:
    """Each probe test runs against a root-run and a rootless sandbox."""
    return request.getfixturevalue(f"{request.param}_run")  # type: ignore[no-any-return]


def test_setup_rerun_changes_nothing(run: Run) -> None:
    assert any("loaded nftables table" in change for change in run.setup_changes)
    assert any("Squid" in change for change in run.setup_changes)
    assert any("CoreDNS" in change for change in run.setup_changes)
    assert run.rerun_changes == []


def test_blackhole_route_for_subnet(root_run: Run) -> None:
    result = subprocess.run(
        ["ip", "-j", "route", "show", "type", "blackhole"],
        capture_output=True,
        text=True,
        check=True,
    )

    routes = {route["dst"]: route for route in json.loads(result.stdout)}
    assert NETWORK["subnet"] in routes
    assert routes[NETWORK["subnet"]]["metric"] == firewall.BLACKHOLE_METRIC


def test_vault_resolves_through_coredns(run: Run) -> None:
    assert run.enforced["vault_resolves"].output == VAULT


def test_vault_health_through_squid(run: Run) -> None:
    assert run.enforced["vault_health"].output == "200"


def test_blocked_name_gets_deny_page(run: Run) -> None:
    assert run.baseline["blocked_name"].output == "200"
    enforced = run.enforced["blocked_name"].output
    assert enforced.startswith("HTTP/1.1 403")
    assert "X-Squid-Error: ERR_AIBOX_DENIED" in enforced
    assert "no network.allow rule" in enforced


def test_ip_literal_denied_by_squid(run: Run) -> None:
    assert run.baseline["ip_literal"].output == "200"
    assert run.enforced["ip_literal"].output == "403"


def test_connect_to_other_port_denied(run: Run) -> None:
    assert run.baseline["connect_port"].output == "200"
    assert run.enforced["connect_port"].output == "403"


def test_direct_connection_fails(run: Run) -> None:
    assert run.baseline["direct_no_proxy"].output == "200"
    assert run.enforced["direct_no_proxy"].code != 0
    assert run.enforced["direct_no_proxy"].output == "000"


@pytest.mark.parametrize("name", ["rogue_udp", "rogue_tcp", "udp_443"])
def test_rogue_resolver_unreachable(run: Run, name: str) -> None:
    assert run.baseline[name].output == ROGUE_ANSWER
    assert ROGUE_ANSWER not in run.enforced[name].output
    assert run.enforced[name].code != 0


def test_other_sandbox_unreachable(root_run: Run) -> None:
    assert root_run.baseline["peer_sandbox"].output == "200"
    assert root_run.enforced["peer_sandbox"].code != 0
    assert root_run.enforced["peer_sandbox"].output == "000"


# What a rejected echo request looks like: ICMP type 3 code 13 ("communication
# administratively prohibited") on a raw socket, EHOSTUNREACH on a ping socket.
ICMP_REJECTED = {
    "gvisor": "unreachable type 3 code 13 from ",
    "runc": "receive failed: [Errno 113] No route to host",
}


@pytest.mark.parametrize("sandbox", sorted(ICMP_SANDBOXES))
@pytest.mark.parametrize("target", ICMP_TARGETS)
def test_icmp_echo_rejected(icmp_run: IcmpRun, sandbox: str, target: str) -> None:
    assert icmp_run.baseline[sandbox, target].output == "reply"
    enforced = icmp_run.enforced[sandbox, target]
    assert enforced.code != 0
    assert enforced.output.startswith(ICMP_REJECTED[sandbox])


def test_icmp_reaches_no_simulated_host(icmp_run: IcmpRun) -> None:
    assert icmp_run.packets_off > icmp_run.packets_before
    assert icmp_run.packets_on == icmp_run.packets_off


@pytest.mark.parametrize("runtime", ["runsc", "runc"])
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("raw", "[Errno 1] Operation not permitted"),  # no CAP_NET_RAW
        ("dgram", "[Errno 13] Permission denied"),  # group outside ping range
    ],
)
def test_sandbox_cannot_open_icmp_socket(
    icmp_run: IcmpRun, runtime: str, kind: str, error: str
) -> None:
    outcome = icmp_run.sandbox_sockets[runtime, kind]

    assert outcome.output == f"socket failed: {error}"


def test_sandbox_has_only_link_local_ipv6(root_run: Run) -> None:
    assert root_run.ipv6 is not None
    scopes = {
        address["scope"]
        for interface in root_run.ipv6.addresses
        for address in interface["addr_info"]
    }

    assert scopes == {"host", "link"}
    assert [route["dst"] for route in root_run.ipv6.routes] == ["fe80::/64"]


def test_ipv6_to_host_rejected(root_run: Run) -> None:
    ipv6 = root_run.ipv6
    assert ipv6 is not None
    log = ipv6.host_log.read_text()

    assert root_run.baseline["host_ipv6"].output == "200"
    assert root_run.enforced["host_ipv6"].code != 0
    assert root_run.enforced["host_ipv6"].output == "000"
    assert ipv6.retry.output == "000"
    assert f"{IPV6_HOST_PORT} GET /off" in log
    assert "GET /on" not in log
    assert "GET /retry" not in log
    assert ipv6.reject_packets_after > ipv6.reject_packets_before


def test_ipv6_to_other_sandbox_rejected(root_run: Run) -> None:
    assert root_run.baseline["peer_ipv6"].output == "200"
    assert root_run.enforced["peer_ipv6"].code != 0
    assert root_run.enforced["peer_ipv6"].output == "000"


def test_setup_enables_ipv6_bridge_filtering(root_run: Run) -> None:
    setting = firewall.BRIDGE_NF_CALL_IP6
    previous = setting.read_text()
    setting.write_text("0\n")
    try:
        changes = host.setup_network(root_run.config, POLICY)
        value = setting.read_text().strip()
    finally:
        setting.write_text(previous)

    assert value == "1"
    assert f"enabled {setting.name} for traffic between sandboxes" in changes


def test_dns_over_tls_port_fails(run: Run) -> None:
    assert run.baseline["dot_853"].code == 0
    assert run.enforced["dot_853"].code != 0


def test_txt_for_allowlisted_name_refused(run: Run) -> None:
    assert "status: NOERROR" in run.baseline["txt_allowlisted"].output
    assert "status: REFUSED" in run.enforced["txt_allowlisted"].output


def test_outside_name_gets_nxdomain(run: Run) -> None:
    assert run.baseline["outside_name"].output == ROGUE_ANSWER
    assert "status: NXDOMAIN" in run.enforced["outside_name"].output


def test_no_packet_reaches_blocked_hosts(run: Run) -> None:
    assert run.blocked_packets_off > 0
    assert run.blocked_packets_on == run.blocked_packets_off
    assert run.rogue_packets_off > 0
    assert run.rogue_packets_on == run.rogue_packets_off
    assert run.blocked_log_on == run.blocked_log_off


def test_proxy_access_log_records_denials(run: Run) -> None:
    log = network_settings(run.config).proxy_access_log.read_text()

    assert "TCP_DENIED/403 GET http://blocked.example/" in log
    assert "GET http://vault.internal:8200/v1/sys/health" in log


def test_network_test_probes_pass(run: Run) -> None:
    allowlist = allowlist_from_policy(POLICY, run.config)
    probes = sandbox_probes(allowlist, network_settings(run.config), run.rootless)

    results = run_probes(probes, run.container, podman=run.podman)

    assert len(results) == 10
    assert [result.to_json() for result in results if not result.ok] == []


def test_network_test_command_json(
    root_run: Run, work_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system_dir = Path(os.environ["AIBOX_SYSTEM_DIR"])
    org = yaml.safe_load(packaged_org_text())
    org["network"]["allow"] = POLICY["network"]["allow"]
    (system_dir / "org-policy.yaml").write_text(yaml.safe_dump(org))
    config_file = work_dir / "config.yaml"
    config_file.write_text(json.dumps({"network": NETWORK}))
    workspace = work_dir / "workspace"
    workspace.mkdir(exist_ok=True)
    args = ["--config", str(config_file), "network", "test", "--json"]
    args += ["--container", root_run.container, "--workspace", str(workspace)]

    code = main(args)

    captured = capsys.readouterr()
    assert captured.out, (code, captured.err)
    report = json.loads(captured.out)
    assert code == 0, report
    assert report["ok"] is True
    assert report["container"] == root_run.container
    names = [probe["name"] for probe in report["probes"]]
    assert "resolve vault.internal" in names
    assert "name outside the allowlist" in names


def _policy() -> EffectivePolicy:
    return EffectivePolicy(data=POLICY, hash="e2e")


def test_start_check_passes_when_enforced(root_run: Run) -> None:
    check_host_enforcement(root_run.config, _policy(), rootless=False)


def test_start_check_names_missing_ruleset(root_run: Run) -> None:
    settings = network_settings(root_run.config)
    firewall.delete_table(settings)
    try:
        with pytest.raises(EnforcementError) as caught:
            check_host_enforcement(root_run.config, _policy(), rootless=False)
    finally:
        host.setup_network(root_run.config, POLICY)

    assert "firewall loaded" in caught.value.message
    assert "is not loaded" in caught.value.message
    assert caught.value.hint == "Run 'sudo aibox setup --system'."


def test_start_check_names_policy_mismatch(root_run: Run) -> None:
    wider: dict[str, Any] = {
        "network": {
            "allow": [*POLICY["network"]["allow"], {"id": "x", "hosts": ["x.internal"]}]
        }
    }

    with pytest.raises(EnforcementError) as caught:
        check_host_enforcement(
            root_run.config, EffectivePolicy(data=wider, hash="w"), rootless=False
        )

    assert "proxy config" in caught.value.message
    assert "does not match the effective policy" in caught.value.message
    assert (
        "the policy allows x.internal, which this host does not" in caught.value.message
    )
    assert "and 2 more" in caught.value.message
    assert caught.value.hint == "Run 'sudo aibox setup --system'."


def test_start_check_explains_narrower_policy(root_run: Run) -> None:
    narrower = {"network": {"allow": [POLICY["network"]["allow"][0]]}}

    with pytest.raises(EnforcementError) as caught:
        check_host_enforcement(
            root_run.config, EffectivePolicy(data=narrower, hash="n"), rootless=False
        )

    assert "this host allows api.internal, which the effective policy does not" in (
        caught.value.message
    )
    assert caught.value.hint is not None
    assert "cannot narrow network.allow" in caught.value.hint


def test_start_check_names_stopped_dns(root_run: Run) -> None:
    settings = network_settings(root_run.config)
    services.stop_coredns(settings)
    try:
        with pytest.raises(EnforcementError) as caught:
            check_host_enforcement(root_run.config, _policy(), rootless=False)
    finally:
        host.setup_network(root_run.config, POLICY)

    assert "DNS: CoreDNS is not answering" in caught.value.message


def test_failed_squid_reload_keeps_previous(
    root_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = network_settings(root_run.config)
    before = settings.squid_conf.read_text()
    monkeypatch.setattr(
        host, "render_squid_conf", lambda *args: before + "no_such_directive on\n"
    )

    with pytest.raises(AiboxError, match="squid rejected"):
        host.setup_network(root_run.config, POLICY)

    assert settings.squid_conf.read_text() == before
    assert services.proxy_answers(settings.loopback, settings.proxy_port)


def test_failed_coredns_restart_restores_previous(
    root_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = network_settings(root_run.config)
    before = settings.corefile.read_text()
    broken = before + "broken.internal:53 {\n    no_such_plugin\n}\n"
    monkeypatch.setattr(host, "render_corefile", lambda *args: broken)

    with pytest.raises(AiboxError, match="previous configuration"):
        host.setup_network(root_run.config, POLICY)

    assert settings.corefile.read_text() == before
    assert services.dns_answers(settings.loopback, settings.dns_port)


def test_rootless_start_check_passes(
    rootless_run: Run, rootless_user: RootlessUser
) -> None:
    check = (
        "import json, sys\n"
        "from aibox.config import Config\n"
        "from aibox.network.enforcement import check_host_enforcement\n"
        "from aibox.policy.effective import EffectivePolicy\n"
        "config = Config.model_validate(json.loads(sys.argv[1]))\n"
        "policy = EffectivePolicy(data=json.loads(sys.argv[2]), hash='e2e')\n"
        "check_host_enforcement(config, policy, rootless=True)\n"
    )
    command = rootless_user.command(
        sys.executable,
        "-c",
        check,
        json.dumps({"network": NETWORK}),
        json.dumps(POLICY),
    )

    result = subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr


def test_setup_restarts_killed_services(enforced_host: EnforcedHost) -> None:
    # Killed daemons leave their pid files behind, and a killed Squid lingers as
    # a zombie when its parent never reaps it.
    settings = network_settings(enforced_host.config)
    for pidfile in (
        services.squid_pidfile(settings),
        services.coredns_pidfile(settings),
    ):
        pid = services.read_pid(pidfile)
        assert pid is not None
        daemon = psutil.Process(pid)
        for process in [*daemon.children(recursive=True), daemon]:
            process.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and services.proxy_answers(
        settings.loopback, settings.proxy_port, timeout=0.5
    ):
        time.sleep(0.1)
    assert not services.proxy_answers(settings.loopback, settings.proxy_port, 0.5)

    changes = host.setup_network(enforced_host.config, POLICY)

    assert "started Squid" in changes
    assert "started CoreDNS" in changes
    assert services.proxy_answers(settings.loopback, settings.proxy_port)
    assert services.dns_answers(settings.loopback, settings.dns_port)
