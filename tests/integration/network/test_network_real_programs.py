"""The rendered files checked by the real programs: squid -k parse, CoreDNS, nft."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibox.config import Config
from aibox.errors import ExternalToolError
from aibox.network import dnswire
from aibox.network.allowlist import Allowlist, allowlist_from_policy
from aibox.network.coredns import render_corefile
from aibox.network.nftables import render_ruleset
from aibox.network.settings import NetworkSettings
from aibox.network.squid import check_squid_conf, render_squid_conf, write_error_dir
from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
COREDNS = "/opt/aibox/bin/coredns"


def _settings(tmp_path: Path, **changes: Any) -> NetworkSettings:
    base = NetworkSettings(
        name="abxnet-real",
        subnet="10.213.251.0/24",
        gateway="10.213.251.1",
        bridge="abxnetr0",
        proxy_port=3128,
        dns_port=53,
        system_dir=tmp_path / "etc",
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "log",
    )
    return replace(base, **changes)


def _allowlist(
    entries: list[dict[str, Any]], network: dict[str, Any] | None = None
) -> Allowlist:
    config = Config.model_validate({"network": network or {}})
    return allowlist_from_policy({"network": {"allow": entries}}, config)


def _parse(allowlist: Allowlist, settings: NetworkSettings) -> None:
    settings.system_dir.mkdir(parents=True, exist_ok=True)
    write_error_dir(settings.squid_error_dir, allowlist)
    settings.squid_conf.write_text(render_squid_conf(allowlist, settings))
    check_squid_conf(settings.squid_conf)


def test_squid_parses_default_allowlist(tmp_path: Path) -> None:
    require_tool("squid")
    allowlist = allowlist_from_policy({"version": 1}, Config())

    _parse(allowlist, _settings(tmp_path))


def test_squid_parses_overlapping_names(tmp_path: Path) -> None:
    require_tool("squid")
    allowlist = _allowlist(
        [
            {"id": "a", "hosts": ["a.internal", ".a.internal", "b.a.internal"]},
            {"id": "b", "hosts": ["a.internal"], "ports": [8443]},
        ]
    )

    _parse(allowlist, _settings(tmp_path))


def test_squid_check_catches_unmerged_names(tmp_path: Path) -> None:
    require_tool("squid")
    conf = tmp_path / "squid.conf"
    conf.write_text("acl x dstdomain -n a.internal .a.internal\nhttp_access allow x\n")

    with pytest.raises(ExternalToolError, match="squid rejected"):
        check_squid_conf(conf)


_NAME = st.from_regex(
    r"\.?[a-z][a-z0-9]{0,4}(\.[a-z][a-z0-9]{0,4}){0,2}\.internal", fullmatch=True
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    entries=st.lists(
        st.fixed_dictionaries(
            {
                "hosts": st.lists(_NAME, min_size=1, max_size=4),
                "ports": st.lists(st.integers(1, 65535), min_size=1, max_size=3),
            }
        ),
        min_size=1,
        max_size=4,
    )
)
def test_squid_parses_random_allowlists(
    tmp_path: Path, entries: list[dict[str, Any]]
) -> None:
    require_tool("squid")
    policy = [{"id": f"r{index}", **entry} for index, entry in enumerate(entries)]

    _parse(_allowlist(policy), _settings(tmp_path))


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _wait_for_dns(address: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            dnswire.query(address, "ready.invalid", port=port, timeout=0.5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """A fake upstream resolver on loopback; every A reply is 198.51.100.99."""
    address = "127.213.252.53"
    port = _free_port(address)
    log = tmp_path / "upstream.log"
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "abxnet_dns.py"),
            "--bind",
            address,
            "--port",
            str(port),
            "--answer",
            "198.51.100.99",
            "--log",
            str(log),
        ],
    )
    try:
        _wait_for_dns(address, port)
        yield address, port, log
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def coredns(
    tmp_path: Path, upstream: tuple[str, int, Path]
) -> Iterator[tuple[str, int, Path]]:
    """Real CoreDNS serving a Corefile rendered for three rules."""
    if not os.access(COREDNS, os.X_OK):
        pytest.skip(f"{COREDNS} is missing; run scripts/install-deps.sh")
    up_address, up_port, _ = upstream
    address = "127.213.252.1"
    port = _free_port(address)
    settings = _settings(tmp_path, gateway=address, dns_port=port)
    allowlist = _allowlist(
        [
            {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
            {"id": "git", "hosts": ["git.internal"]},
            {"id": "docs", "hosts": [".docs.internal"]},
        ],
        {
            "static_addresses": {"vault.internal": "198.51.100.10"},
            "upstream_resolvers": {"internal": f"{up_address}:{up_port}"},
        },
    )
    corefile = tmp_path / "Corefile"
    corefile.write_text(render_corefile(allowlist, settings))
    log = tmp_path / "coredns.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [COREDNS, "-conf", str(corefile)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_dns(address, port)
        yield address, port, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_coredns_answers_static_name(coredns: tuple[str, int, Path]) -> None:
    address, port, _ = coredns

    reply = dnswire.query(address, "vault.internal", port=port)

    assert reply.rcode == "NOERROR"
    assert reply.addresses == ("198.51.100.10",)
    aaaa = dnswire.query(address, "vault.internal", "AAAA", port=port)
    assert aaaa.rcode == "NOERROR"
    assert aaaa.addresses == ()
    assert dnswire.query(address, "x.vault.internal", port=port).rcode == "NXDOMAIN"


def test_coredns_forwards_only_allowlisted_names(
    coredns: tuple[str, int, Path], upstream: tuple[str, int, Path]
) -> None:
    address, port, _ = coredns
    upstream_log = upstream[2]

    assert dnswire.query(address, "git.internal", port=port).addresses == (
        "198.51.100.99",
    )
    assert dnswire.query(address, "a.docs.internal", port=port).addresses == (
        "198.51.100.99",
    )
    assert dnswire.query(address, "x.git.internal", port=port).rcode == "NXDOMAIN"
    assert dnswire.query(address, "other.internal", port=port).rcode == "NXDOMAIN"
    assert (
        dnswire.query(address, "example.com", port=port, tcp=True).rcode == "NXDOMAIN"
    )

    seen = upstream_log.read_text()
    assert "git.internal" in seen
    assert "a.docs.internal" in seen
    assert "x.git.internal" not in seen
    assert "other.internal" not in seen
    assert "example.com" not in seen


@pytest.mark.parametrize("qtype", ["TXT", "NULL", "ANY"])
def test_coredns_refuses_tunnel_types(
    coredns: tuple[str, int, Path], qtype: str
) -> None:
    address, port, _ = coredns

    assert dnswire.query(address, "vault.internal", qtype, port=port).rcode == "REFUSED"
    assert dnswire.query(address, "git.internal", qtype, port=port).rcode == "REFUSED"


def test_coredns_logs_queries_and_metrics(coredns: tuple[str, int, Path]) -> None:
    address, port, log = coredns
    dnswire.query(address, "vault.internal", port=port)

    with urllib.request.urlopen(
        f"http://{address}:9153/metrics", timeout=5
    ) as response:
        metrics = response.read().decode()

    assert "coredns_dns_requests_total" in metrics
    assert '"A IN vault.internal.' in log.read_text()


def _nft(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nft", *args], input=input_text, capture_output=True, text=True, check=False
    )


def test_nft_accepts_ruleset(tmp_path: Path) -> None:
    require_root()
    require_tool("nft")
    text = render_ruleset(
        _allowlist([{"id": "a", "hosts": ["a.internal"]}]), _settings(tmp_path)
    )

    result = _nft("-c", "-f", "-", input_text=text)

    assert result.returncode == 0, result.stderr


def test_nft_apply_twice_leaves_one_table(tmp_path: Path) -> None:
    require_root()
    require_tool("nft")
    settings = _settings(tmp_path, name="abxnet-twice")
    text = render_ruleset(_allowlist([{"id": "a", "hosts": ["a.internal"]}]), settings)
    try:
        first = _nft("-f", "-", input_text=text)
        second = _nft("-f", "-", input_text=text)
        tables = _nft("list", "tables").stdout
        listing = _nft("list", "table", "inet", settings.table).stdout
    finally:
        _nft("delete", "table", "inet", settings.table)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert tables.count(f"table inet {settings.table}\n") == 1
    assert listing.count("chain input {") == 1
    assert listing.count("reject with icmpx admin-prohibited") == 5
