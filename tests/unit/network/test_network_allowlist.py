"""The allowlist model: policy entries, config defaults, resolution, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from aibox.config import Config
from aibox.errors import UsageError
from aibox.network.allowlist import Resolution, allowlist_from_policy
from aibox.policy.effective import EffectivePolicy


def _config(**network: Any) -> Config:
    return Config.model_validate({"network": network})


def _policy(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "network": {"allow": list(entries)}}


def test_defaults_when_policy_has_no_rules() -> None:
    allowlist = allowlist_from_policy({"version": 1}, Config())

    assert allowlist.names == (
        "foundry.internal",
        "git.internal",
        "harbor.internal",
        "nexus.internal",
        "vault.internal",
    )
    vault = next(
        entry for entry in allowlist.entries if entry.hosts == ("vault.internal",)
    )
    assert vault.ports == (443, 8200)
    harbor = next(e for e in allowlist.entries if e.hosts == ("harbor.internal",))
    assert harbor.ports == (443,)


def test_effective_policy_object_accepted() -> None:
    policy = EffectivePolicy(
        data=_policy({"id": "git", "hosts": ["git.internal"]}), hash="x"
    )

    allowlist = allowlist_from_policy(policy, Config())

    assert allowlist.hosts == ("git.internal",)
    assert allowlist.entries[0].ports == (443,)


def test_empty_allow_list_allows_nothing() -> None:
    allowlist = allowlist_from_policy(_policy(), Config())

    assert allowlist.entries == ()
    assert allowlist.names == ()


def test_entries_normalised() -> None:
    allowlist = allowlist_from_policy(
        _policy(
            {
                "id": "git",
                "hosts": ["Git.Internal.", ".git.internal", "git.internal"],
                "ports": [8443, 443, 443],
                "rate_limit": {"requests_per_min": 60},
            }
        ),
        Config(),
    )

    entry = allowlist.entries[0]
    assert entry.hosts == ("git.internal", ".git.internal")
    assert entry.ports == (443, 8443)
    assert entry.rate_limit == "requests_per_min=60"
    assert allowlist.includes_subdomains("git.internal")
    assert allowlist.names == ("git.internal",)


def test_static_address_wins_over_zone() -> None:
    config = _config(
        static_addresses={"vault.internal": "198.51.100.10"},
        upstream_resolvers={
            "internal": "198.51.100.53",
            "corp.internal": "198.51.100.54:5353",
        },
    )
    allowlist = allowlist_from_policy(
        _policy(
            {"id": "vault", "hosts": ["vault.internal"], "ports": [8200]},
            {"id": "git", "hosts": ["git.internal"]},
            {"id": "wiki", "hosts": ["wiki.corp.internal"]},
            {"id": "ext", "hosts": ["example.org"]},
        ),
        config,
    )

    assert allowlist.resolution("vault.internal") == Resolution(
        kind="static", address="198.51.100.10"
    )
    assert allowlist.resolution("git.internal") == Resolution(
        kind="forward", upstream="198.51.100.53:53", zone="internal"
    )
    assert allowlist.resolution("wiki.corp.internal").upstream == "198.51.100.54:5353"
    assert allowlist.resolution("example.org").kind == "none"


def test_root_zone_forwards_every_name() -> None:
    config = _config(upstream_resolvers={".": "198.51.100.53"})

    allowlist = allowlist_from_policy(
        _policy({"id": "a", "hosts": ["a.example"]}), config
    )

    assert allowlist.resolution("a.example").zone == "."


def test_digest_changes_with_ports() -> None:
    first = allowlist_from_policy(
        _policy({"id": "a", "hosts": ["a.internal"]}), Config()
    )
    second = allowlist_from_policy(
        _policy({"id": "a", "hosts": ["a.internal"], "ports": [8443]}), Config()
    )

    assert first.digest() != second.digest()
    assert (
        first.digest()
        == allowlist_from_policy(
            _policy({"id": "a", "hosts": ["a.internal"]}), Config()
        ).digest()
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("*.git.internal", "invalid host"),  # wildcard
        ("git .internal", "invalid host"),  # space
        ("https://git.internal", "invalid host"),  # URL
        ("git.internal:443", "invalid host"),  # port in the name
        ("10.0.0.14", "IP address"),  # IP where a name is expected
        ("::1", "invalid host"),  # IPv6 literal
        ("-git.internal", "invalid host"),  # label starts with a hyphen
        ("git..internal", "invalid host"),  # empty label
        ("a" * 64 + ".internal", "invalid host"),  # label longer than 63
        ("", "invalid host"),  # empty
        (7, "not a string"),  # not text
    ],
)
def test_bad_host_rejected(host: object, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        allowlist_from_policy(_policy({"id": "x", "hosts": [host]}), Config())

    assert reason in caught.value.message
    assert repr(host) in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize("port", [0, 65536, -1, "443", True, 44.3])
def test_bad_port_rejected(port: object) -> None:
    with pytest.raises(UsageError) as caught:
        allowlist_from_policy(
            _policy({"id": "x", "hosts": ["x.internal"], "ports": [port]}), Config()
        )

    assert "invalid port" in caught.value.message
    assert "1 to 65535" in caught.value.message


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"id": "x", "hosts": "x.internal"}, "'hosts' must be a non-empty list"),
        ({"id": "x", "hosts": []}, "'hosts' must be a non-empty list"),
        ({"id": "x", "hosts": ["x.internal"], "ports": []}, "'ports' must be"),
        ({"id": "bad id", "hosts": ["x.internal"]}, "invalid id"),
        (
            {"id": "x", "hosts": ["x.internal"], "rate_limit": "fast"},
            "invalid rate_limit",
        ),
        ({"id": "x", "hosts": ["x.internal"], "rate_limit": {"rpm": -1}}, "rate_limit"),
    ],
)
def test_bad_entry_rejected(entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        allowlist_from_policy(_policy(entry), Config())

    assert fragment in caught.value.message
    assert "network.allow[0]" in caught.value.message


def test_duplicate_ids_rejected() -> None:
    policy = _policy(
        {"id": "a", "hosts": ["a.internal"]}, {"id": "a", "hosts": ["b.internal"]}
    )

    with pytest.raises(UsageError, match=r"duplicate network\.allow id 'a'"):
        allowlist_from_policy(policy, Config())


@pytest.mark.parametrize(
    ("network", "fragment"),
    [
        ({"upstream_resolvers": {"internal": "resolver.internal"}}, "invalid upstream"),
        (
            {"upstream_resolvers": {"internal": "198.51.100.53:70000"}},
            "invalid upstream port",
        ),
        ({"upstream_resolvers": {"*.internal": "198.51.100.53"}}, "invalid host"),
        ({"static_addresses": {"https://x": "198.51.100.1"}}, "invalid host"),
    ],
)
def test_bad_resolution_config_rejected(network: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        allowlist_from_policy(
            _policy({"id": "a", "hosts": ["a.internal"]}), _config(**network)
        )

    assert fragment in caught.value.message


def test_bad_static_address_rejected() -> None:
    # The config model checks addresses too; the allowlist check covers mappings that
    # bypass it, such as a policy-driven config built in code.
    config = Config.model_construct(
        network=Config().network.model_copy(
            update={"static_addresses": {"vault.internal": "10.0.0.300"}}
        )
    )

    with pytest.raises(UsageError) as caught:
        allowlist_from_policy({"version": 1}, config)

    assert "invalid static address '10.0.0.300'" in caught.value.message
