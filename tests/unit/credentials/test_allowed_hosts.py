import pytest

from aibox.config import Config
from aibox.credentials.sandbox import allowed_hosts_from_policy
from aibox.errors import UsageError
from aibox.policy.effective import EffectivePolicy


def test_hosts_and_ports_from_network_allow() -> None:
    policy = EffectivePolicy(
        data={
            "network": {
                "allow": [
                    {"id": "git", "hosts": ["git.internal"], "ports": [443, 8443]},
                    {"id": "corp", "hosts": [".corp.internal"]},
                ]
            }
        },
        hash="0",
    )
    assert allowed_hosts_from_policy(policy, Config()) == [
        ".corp.internal:443",
        "git.internal:443",
        "git.internal:8443",
    ]


def test_config_services_without_policy_entries() -> None:
    hosts = allowed_hosts_from_policy(EffectivePolicy(data={}, hash="0"), Config())
    assert "git.internal:443" in hosts
    assert "vault.internal:8200" in hosts


def test_invalid_policy_entry_is_usage_error() -> None:
    policy = EffectivePolicy(
        data={"network": {"allow": [{"id": "x", "hosts": ["10.0.0.1"]}]}}, hash="0"
    )
    with pytest.raises(UsageError, match="IP address"):
        allowed_hosts_from_policy(policy, Config())
