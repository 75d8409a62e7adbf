"""The Squid, CoreDNS and nftables renderers, and one allowlist reaching all three."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aibox.config import Config
from aibox.network.allowlist import Allowlist, allowlist_from_policy
from aibox.network.coredns import render_corefile
from aibox.network.nftables import render_ruleset
from aibox.network.settings import NetworkSettings
from aibox.network.squid import merge_domains, render_deny_pages, render_squid_conf

SETTINGS = NetworkSettings(
    name="aibox",
    subnet="10.213.0.0/24",
    gateway="10.213.0.1",
    bridge="aibox0",
    proxy_port=3128,
    dns_port=53,
    system_dir=Path("/etc/aibox"),
    run_dir=Path("/run/aibox"),
    log_dir=Path("/var/log/aibox"),
)
CONFIG = Config.model_validate(
    {
        "network": {
            "static_addresses": {"vault.internal": "198.51.100.10"},
            "upstream_resolvers": {"internal": "198.51.100.53"},
        }
    }
)


def _allowlist(*entries: dict[str, Any], config: Config = CONFIG) -> Allowlist:
    return allowlist_from_policy({"network": {"allow": list(entries)}}, config)


def test_squid_conf_directives() -> None:
    allowlist = _allowlist(
        {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
        {"id": "git", "hosts": ["git.internal"], "ports": [443]},
    )

    text = render_squid_conf(allowlist, SETTINGS)

    assert "acl rule0_hosts dstdomain -n vault.internal\n" in text
    assert "acl rule0_ports port 8200\n" in text
    assert "http_access allow rule0_hosts rule0_ports\n" in text
    assert "http_access allow rule1_hosts rule1_ports\n" in text
    assert text.rstrip().endswith("deny_info ERR_AIBOX_DENIED all")
    assert "http_access deny all\n" in text
    for directive in (
        "cache deny all",
        "forwarded_for delete",
        "via off",
        "pinger_enable off",
        "hosts_file none",
        "http_port 10.213.0.1:3128",
        "http_port 127.213.0.1:3128",
        "dns_nameservers 127.213.0.1",
        "access_log stdio:/var/log/aibox/proxy-access.log aibox",
    ):
        assert f"\n{directive}" in text, directive


def test_squid_denies_after_every_allow() -> None:
    text = render_squid_conf(_allowlist({"id": "a", "hosts": ["a.internal"]}), SETTINGS)
    access = [line for line in text.splitlines() if line.startswith("http_access")]

    assert access == [
        "http_access deny !aibox_clients",
        "http_access allow rule0_hosts rule0_ports",
        "http_access deny rule0_hosts",
        "http_access deny all",
    ]


def test_squid_merges_overlapping_names() -> None:
    allowlist = _allowlist(
        {
            "id": "a",
            "hosts": ["a.internal", ".a.internal", "x.a.internal", "ba.internal"],
        }
    )

    text = render_squid_conf(allowlist, SETTINGS)

    assert "acl rule0_hosts dstdomain -n .a.internal ba.internal\n" in text


def test_merge_domains_keeps_unrelated_names() -> None:
    assert merge_domains(("b.internal", ".a.internal", "a.internal")) == (
        ".a.internal",
        "b.internal",
    )
    assert merge_domains(("xa.internal", ".a.internal")) == (
        ".a.internal",
        "xa.internal",
    )


def test_deny_pages_say_rule_and_how_to_ask() -> None:
    pages = render_deny_pages(_allowlist({"id": "a", "hosts": ["a.internal"]}))

    assert "no network.allow rule" in pages["ERR_AIBOX_DENIED"]
    assert "%H" in pages["ERR_AIBOX_DENIED"]
    assert "aibox setup --system" in pages["ERR_AIBOX_DENIED"]
    assert "port %p" in pages["ERR_AIBOX_PORT"]


def test_corefile_blocks_per_name() -> None:
    allowlist = _allowlist(
        {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
        {"id": "git", "hosts": [".git.internal"]},
        {"id": "ext", "hosts": ["example.org"]},
    )

    text = render_corefile(allowlist, SETTINGS)

    assert "vault.internal:53 {" in text
    assert "        198.51.100.10 vault.internal\n" in text
    assert (
        "git.internal:53 {\n    import aibox_common\n    forward . 198.51.100.53:53\n}"
        in text
    )
    assert "# example.org: no static address or upstream resolver" in text
    assert "block type TXT NULL ANY" in text
    assert "bind 10.213.0.1 127.213.0.1" in text
    assert "prometheus 127.213.0.1:9153" in text
    assert (
        ".:53 {\n    import aibox_common\n    template ANY ANY {\n"
        "        rcode NXDOMAIN" in text
    )


def test_corefile_exact_forward_blocks_subdomains() -> None:
    text = render_corefile(
        _allowlist({"id": "git", "hosts": ["git.internal"]}), SETTINGS
    )

    block = text[text.index("git.internal:53 {") :]
    assert 'match "^.+[.]git[.]internal[.]$"' in block
    assert block.index("template") < block.index("forward")


def test_ruleset_rejects_all_but_proxy_and_dns() -> None:
    text = render_ruleset(_allowlist({"id": "a", "hosts": ["a.internal"]}), SETTINGS)

    assert text.count("table inet aibox {\n") == 1
    assert "table inet aibox {}\ndelete table inet aibox\n" in text
    assert "type filter hook input priority filter - 10; policy accept;" in text
    assert "type filter hook forward priority filter - 10; policy accept;" in text
    accepts = [
        line.strip() for line in text.splitlines() if line.strip().endswith("accept")
    ]
    assert accepts == [
        "ip daddr 10.213.0.1 tcp dport 3128 accept",
        "ip daddr 10.213.0.1 udp dport 53 accept",
        "ip daddr 10.213.0.1 tcp dport 53 accept",
    ]
    assert text.count("counter reject with icmpx admin-prohibited") == 5
    assert 'iifname "aibox0" jump from_sandbox' in text
    assert "ip saddr 10.213.0.0/24 jump from_sandbox" in text


def test_ruleset_table_named_after_network() -> None:
    other = NetworkSettings(**{**vars(SETTINGS), "name": "abxnet-e2e"})

    text = render_ruleset(_allowlist(), other)

    assert "table inet abxnet_e2e {" in text
    assert "inet aibox " not in text


_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_NAME = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["internal", "corp", "example"]),
)
_HOST = st.builds(
    lambda name, domain: f".{name}" if domain else name, _NAME, st.booleans()
)
_ENTRY = st.fixed_dictionaries(
    {
        "hosts": st.lists(_HOST, min_size=1, max_size=4),
        "ports": st.lists(st.integers(1, 65535), min_size=1, max_size=3),
    }
)


def _squid_domains(text: str) -> list[str]:
    domains = []
    for line in text.splitlines():
        if " dstdomain -n " in line:
            domains += line.split(" dstdomain -n ")[1].split()
    return domains


def _squid_matches(domains: list[str], name: str) -> bool:
    for domain in domains:
        if domain.startswith(".") and (name == domain[1:] or name.endswith(domain)):
            return True
        if name == domain:
            return True
    return False


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9.-]+", text))


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(_ENTRY, min_size=1, max_size=5),
    outsider=_NAME,
    resolvers=st.dictionaries(_NAME, st.sampled_from(["198.51.100.7", "192.0.2.9"])),
    use_zone=st.booleans(),
)
def test_property_every_host_in_each_rendering(
    entries: list[dict[str, Any]],
    outsider: str,
    resolvers: dict[str, str],
    use_zone: bool,
) -> None:
    network: dict[str, Any] = {"static_addresses": resolvers}
    if use_zone:
        network["upstream_resolvers"] = {"internal": "198.51.100.53"}
    config = Config.model_validate({"network": network})
    policy_entries = [
        {"id": f"r{index}", **entry} for index, entry in enumerate(entries)
    ]
    allowlist = _allowlist(*policy_entries, config=config)
    squid = render_squid_conf(allowlist, SETTINGS)
    corefile = render_corefile(allowlist, SETTINGS)
    ruleset = render_ruleset(allowlist, SETTINGS)
    domains = _squid_domains(squid)
    ruleset_tokens = _tokens(ruleset)

    for host in allowlist.hosts:
        name = host.lstrip(".")
        assert _squid_matches(domains, name), host
        if allowlist.resolution(name).kind == "none":
            assert f"# {name}: no static address" in corefile
        else:
            assert f"\n{name}:53 {{" in corefile, host
        assert host in ruleset_tokens, host

    allowed = any(
        outsider == host.lstrip(".")
        or (host.startswith(".") and outsider.endswith(host))
        for host in allowlist.hosts
    )
    if not allowed:
        assert not _squid_matches(domains, outsider)
        assert f"\n{outsider}:53 {{" not in corefile
        assert f"# {outsider}:" not in corefile
        assert outsider not in _tokens(squid)
        assert outsider not in ruleset_tokens
