"""Egress enforcement end to end: real Squid, CoreDNS and nftables on the host, a
root-run gVisor sandbox, and the simulated network from ``abxnet_sim``.

Every probe runs twice from inside the sandbox: first with enforcement off (the
aibox table deleted), where each negative probe must succeed, then with it on,
where it must fail. So a negative test cannot pass because the network is broken.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from abxnet_sim import (
    API,
    BLOCKED,
    ROGUE_ANSWER,
    ROGUE_DNS,
    VAULT,
    World,
    build_world,
    destroy_world,
    ensure_probe_image,
)
from tests.conftest import require_root, require_tool

from aibox.config import Config
from aibox.errors import AiboxError, EnforcementError
from aibox.network import firewall, host, services
from aibox.network.enforcement import check_host_enforcement, container_network_args
from aibox.network.settings import network_settings
from aibox.policy.effective import EffectivePolicy

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
        "dot_853": Probe(f"nc -z -w 3 {ROGUE_DNS} 853", f"nc -z -w 3 {ROGUE_DNS} 853"),
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


def _exec(container: str, command: str) -> Outcome:
    result = subprocess.run(
        ["podman", "exec", container, "sh", "-c", command],
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


@pytest.fixture(scope="module")
def root_run(work_dir: Path) -> Iterator[Run]:
    require_root()
    for tool in ("podman", "runsc", "squid", "nft", "mmdebstrap"):
        require_tool(tool)
    if not os.access("/opt/aibox/bin/coredns", os.X_OK):
        pytest.skip("CoreDNS is not built; run scripts/install-deps.sh")
    image = ensure_probe_image(work_dir)
    config = Config.model_validate({"network": NETWORK})
    settings = network_settings(config)
    world = build_world(work_dir / "world")
    container = f"abxnet-e2e-root-{secrets.token_hex(3)}"
    try:
        setup_changes = host.setup_network(config, POLICY)
        rerun_changes = host.setup_network(config, POLICY)
        args = [
            "podman", "run", "-d", "--name", container,
            "--runtime", shutil.which("runsc") or "runsc",
            "--runtime-flag", "network=host",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            *container_network_args(config, rootless=False),
            image, "sleep", "900",
        ]  # fmt: skip
        subprocess.run(args, check=True, capture_output=True, timeout=120)
        checks = probes(f"http://{settings.gateway}:{settings.proxy_port}")

        firewall.delete_table(settings)
        baseline = {name: _exec(container, p.baseline) for name, p in checks.items()}
        blocked_off = world.packets_to(BLOCKED)
        rogue_off = world.packets_to(ROGUE_DNS)
        blocked_log_off = world.blocked_log.read_text()

        host.setup_network(config, POLICY)
        enforced = {name: _exec(container, p.enforced) for name, p in checks.items()}
        yield Run(
            config=config,
            world=world,
            baseline=baseline,
            enforced=enforced,
            blocked_packets_off=blocked_off,
            blocked_packets_on=world.packets_to(BLOCKED),
            rogue_packets_off=rogue_off,
            rogue_packets_on=world.packets_to(ROGUE_DNS),
            blocked_log_off=blocked_log_off,
            blocked_log_on=world.blocked_log.read_text(),
            setup_changes=setup_changes,
            rerun_changes=rerun_changes,
        )
    finally:
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", container], capture_output=True
        )
        host.teardown_network(config)
        destroy_world(world)


def test_setup_rerun_changes_nothing(root_run: Run) -> None:
    assert any("loaded nftables table" in change for change in root_run.setup_changes)
    assert any("Squid" in change for change in root_run.setup_changes)
    assert any("CoreDNS" in change for change in root_run.setup_changes)
    assert root_run.rerun_changes == []


def test_vault_resolves_through_coredns(root_run: Run) -> None:
    assert root_run.enforced["vault_resolves"].output == VAULT


def test_vault_health_through_squid(root_run: Run) -> None:
    assert root_run.enforced["vault_health"].output == "200"


def test_blocked_name_gets_deny_page(root_run: Run) -> None:
    assert root_run.baseline["blocked_name"].output == "200"
    enforced = root_run.enforced["blocked_name"].output
    assert enforced.startswith("HTTP/1.1 403")
    assert "X-Squid-Error: ERR_AIBOX_DENIED" in enforced
    assert "no network.allow rule" in enforced


def test_ip_literal_denied_by_squid(root_run: Run) -> None:
    assert root_run.baseline["ip_literal"].output == "200"
    assert root_run.enforced["ip_literal"].output == "403"


def test_connect_to_other_port_denied(root_run: Run) -> None:
    assert root_run.baseline["connect_port"].output == "200"
    assert root_run.enforced["connect_port"].output == "403"


def test_direct_connection_fails(root_run: Run) -> None:
    assert root_run.baseline["direct_no_proxy"].output == "200"
    assert root_run.enforced["direct_no_proxy"].code != 0
    assert root_run.enforced["direct_no_proxy"].output == "000"


@pytest.mark.parametrize("name", ["rogue_udp", "rogue_tcp", "udp_443"])
def test_rogue_resolver_unreachable(root_run: Run, name: str) -> None:
    assert root_run.baseline[name].output == ROGUE_ANSWER
    assert ROGUE_ANSWER not in root_run.enforced[name].output
    assert root_run.enforced[name].code != 0


def test_dns_over_tls_port_fails(root_run: Run) -> None:
    assert root_run.baseline["dot_853"].code == 0
    assert root_run.enforced["dot_853"].code != 0


def test_txt_for_allowlisted_name_refused(root_run: Run) -> None:
    assert "status: NOERROR" in root_run.baseline["txt_allowlisted"].output
    assert "status: REFUSED" in root_run.enforced["txt_allowlisted"].output


def test_outside_name_gets_nxdomain(root_run: Run) -> None:
    assert root_run.baseline["outside_name"].output == ROGUE_ANSWER
    assert "status: NXDOMAIN" in root_run.enforced["outside_name"].output


def test_no_packet_reaches_blocked_hosts(root_run: Run) -> None:
    assert root_run.blocked_packets_off > 0
    assert root_run.blocked_packets_on == root_run.blocked_packets_off
    assert root_run.rogue_packets_off > 0
    assert root_run.rogue_packets_on == root_run.rogue_packets_off
    assert root_run.blocked_log_on == root_run.blocked_log_off


def test_proxy_access_log_records_denials(root_run: Run) -> None:
    log = network_settings(root_run.config).proxy_access_log.read_text()

    assert "TCP_DENIED/403 GET http://blocked.example/" in log
    assert "GET http://vault.internal:8200/v1/sys/health" in log


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
    assert "and 2 more" in caught.value.message


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
