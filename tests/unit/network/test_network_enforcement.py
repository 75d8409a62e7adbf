"""Podman arguments, host checks and probes, without running the services."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from aibox.cli.main import main
from aibox.config import Config
from aibox.errors import EnforcementError
from aibox.network import dnswire
from aibox.network.allowlist import allowlist_from_policy
from aibox.network.enforcement import check_host_enforcement, container_network_args
from aibox.network.probes import sandbox_probes
from aibox.network.settings import network_settings
from aibox.network.systemd import render_units
from aibox.policy.effective import EffectivePolicy

POLICY = {
    "network": {
        "allow": [
            {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
            {"id": "git", "hosts": ["git.internal"], "ports": [443]},
        ]
    }
}
# A network of its own, so no proxy or DNS server of a real setup answers.
UNIT_NETWORK = {
    "podman_network": "abxnet-unit",
    "subnet": "10.213.199.0/24",
    "bridge": "abxnetu0",
    "static_addresses": {"vault.internal": "198.51.100.10"},
}
CONFIG = Config.model_validate({"network": UNIT_NETWORK})


@pytest.fixture
def system_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SYSTEM", "RUN", "LOG"):
        monkeypatch.setenv(f"AIBOX_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


def _env(args: list[str]) -> dict[str, str]:
    pairs = [args[index + 1] for index, arg in enumerate(args) if arg == "--env"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_root_args_join_network() -> None:
    args = container_network_args(Config(), rootless=False)

    assert args[:4] == ["--network", "aibox", "--dns", "10.213.0.1"]
    env = _env(args)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        assert env[name] == "http://10.213.0.1:3128"
    assert env["no_proxy"] == "localhost,127.0.0.1"
    assert env["NO_PROXY"] == "localhost,127.0.0.1"


def test_rootless_args_have_no_interface(system_dirs: Path) -> None:
    args = container_network_args(Config(), rootless=True)

    assert args[:2] == ["--network", "none"]
    assert "--dns" not in args
    resolv = args[args.index("--volume") + 1]
    assert resolv == f"{system_dirs}/system/sandbox-resolv.conf:/etc/resolv.conf:ro"
    assert _env(args)["https_proxy"] == "http://127.0.0.1:3128"


def test_check_names_missing_proxy_config(system_dirs: Path) -> None:
    policy = EffectivePolicy(data=POLICY, hash="x")

    with pytest.raises(EnforcementError) as caught:
        check_host_enforcement(CONFIG, policy, rootless=True)

    assert "sandbox-resolv.conf is missing" in caught.value.message
    assert caught.value.hint == "Run 'sudo aibox setup --system'."


def test_check_names_first_failing_layer(system_dirs: Path) -> None:
    settings = network_settings(CONFIG)
    settings.system_dir.mkdir(parents=True)
    settings.sandbox_resolv_conf.write_text("nameserver 127.0.0.1\n")
    policy = EffectivePolicy(data=POLICY, hash="x")

    with pytest.raises(EnforcementError) as caught:
        check_host_enforcement(CONFIG, policy, rootless=True)

    message = caught.value.message
    assert message.startswith("network enforcement: proxy config: ")
    assert "abxnet_unit.squid.conf is missing" in message
    assert "(and 4 more)" in message


def test_probes_cover_each_name_and_bypass() -> None:
    allowlist = allowlist_from_policy(POLICY, CONFIG)

    probes = sandbox_probes(allowlist, network_settings(CONFIG), rootless=False)
    names = [probe.name for probe in probes]

    assert names[:2] == [
        "resolve vault.internal",
        "reach vault.internal:8200 through the proxy",
    ]
    assert "resolve git.internal" not in names  # no address configured
    assert "direct connection to 198.51.100.10:8200 without the proxy" in names
    assert "TXT query for git.internal" in names
    reach = probes[1]
    assert "-x http://10.213.199.1:3128" in reach.command
    assert reach.expect(0, "HTTP/1.1 200 OK\r\n")
    assert not reach.expect(
        0, "HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_AIBOX_DENIED 0"
    )


def test_probes_use_relay_when_rootless() -> None:
    allowlist = allowlist_from_policy(POLICY, CONFIG)

    probes = sandbox_probes(allowlist, network_settings(CONFIG), rootless=True)

    assert "-x http://127.0.0.1:3128" in probes[1].command


def test_dns_reply_parsed() -> None:
    query = dnswire.build_query("vault.internal", "A", 0x1234)
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([198, 51, 100, 10])
    reply = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + query[12:] + answer

    parsed = dnswire.parse_reply(reply, 0x1234)

    assert parsed.rcode == "NOERROR"
    assert parsed.addresses == ("198.51.100.10",)
    with pytest.raises(ValueError, match="does not match"):
        dnswire.parse_reply(reply, 0x4321)


def test_allowlist_command_json(
    system_dirs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"network": {"static_addresses": {"git.internal": "198.51.100.7"}}})
    )

    code = main(["--config", str(config), "network", "allowlist", "--json"])

    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [entry["id"] for entry in data["entries"]][:2] == ["harbor", "nexus"]
    assert data["resolutions"]["git.internal"] == {
        "kind": "static",
        "address": "198.51.100.7",
    }
    assert len(data["sha256"]) == 64


def test_check_command_reports_missing_files(
    system_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = system_dirs / "config.yaml"
    config.write_text(json.dumps({"network": UNIT_NETWORK}))

    code = main(["--config", str(config), "network", "check", "--json"])

    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["ok"] is False
    failed = {check["name"] for check in data["checks"] if not check["ok"]}
    assert {"proxy config", "DNS config", "firewall ruleset", "proxy", "DNS"} <= failed


def test_systemd_units_run_same_commands() -> None:
    settings = network_settings(CONFIG)

    units = render_units(settings, "/usr/sbin/squid", "/opt/aibox/bin/coredns")

    squid = units["aibox-abxnet_unit-squid.service"]
    coredns = units["aibox-abxnet_unit-coredns.service"]
    assert (
        f"ExecStart=/usr/sbin/squid -f {settings.squid_conf} -n aiboxabxnetunit"
        in squid
    )
    assert "ExecReload=/usr/sbin/squid -k reconfigure" in squid
    assert "Type=forking" in squid
    assert f"ExecStart=/opt/aibox/bin/coredns -conf {settings.corefile}" in coredns
    assert "User=nobody" in coredns
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in coredns
    assert f"StandardOutput=append:{settings.dns_query_log}" in coredns


def test_probes_without_static_address_avoid_open_ports() -> None:
    config = Config()
    allowlist = allowlist_from_policy(None, config)
    settings = network_settings(config)
    probes = {probe.name: probe for probe in sandbox_probes(allowlist, settings, False)}
    direct = f"direct connection to {settings.gateway}:443 without the proxy"
    assert direct in probes
    assert f"/dev/tcp/{settings.gateway}/{settings.dns_port}" not in str(
        [probe.command for probe in probes.values()]
    )
    assert "-p 5353" in probes["another resolver over UDP"].command
    assert "-p 5353" in probes["another resolver over TCP"].command
