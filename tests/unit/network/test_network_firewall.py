"""Bridge filtering settings written by setup, against files standing in for /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibox.network import firewall


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    ipv4 = tmp_path / "bridge-nf-call-iptables"
    ipv6 = tmp_path / "bridge-nf-call-ip6tables"
    monkeypatch.setattr(firewall, "BRIDGE_NF_CALL", ipv4)
    monkeypatch.setattr(firewall, "BRIDGE_NF_CALL_IP6", ipv6)
    return ipv4, ipv6


def test_bridge_filtering_enables_ipv6_too(settings: tuple[Path, Path]) -> None:
    ipv4, ipv6 = settings
    ipv4.write_text("1\n")
    ipv6.write_text("0\n")

    changes = firewall.ensure_bridge_filtering()

    assert ipv4.read_text() == "1\n"
    assert ipv6.read_text() == "1\n"
    assert changes == ["enabled bridge-nf-call-ip6tables for traffic between sandboxes"]


def test_bridge_filtering_enables_both(settings: tuple[Path, Path]) -> None:
    ipv4, ipv6 = settings
    ipv4.write_text("0\n")
    ipv6.write_text("0\n")

    changes = firewall.ensure_bridge_filtering()

    assert ipv4.read_text() == "1\n"
    assert ipv6.read_text() == "1\n"
    assert len(changes) == 2


def test_bridge_filtering_already_on(settings: tuple[Path, Path]) -> None:
    ipv4, ipv6 = settings
    ipv4.write_text("1\n")
    ipv6.write_text("1\n")

    assert firewall.ensure_bridge_filtering() == []


def test_bridge_filtering_without_module(settings: tuple[Path, Path]) -> None:
    changes = firewall.ensure_bridge_filtering()

    assert len(changes) == 1
    assert changes[0].startswith("warning: br_netfilter is not loaded")
    assert not settings[1].exists()
