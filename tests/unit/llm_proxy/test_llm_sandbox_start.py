"""The in-sandbox command line and limits derived from config and policy."""

from __future__ import annotations

from pathlib import Path

import yaml

from aibox.config import Config
from aibox.llm_proxy.sandbox import (
    KEY_FILE,
    llm_environment,
    policy_limits,
    proxy_command,
)
from aibox.llm_proxy.settings import build_parser, settings_from_arguments
from aibox.policy.effective import policy_data
from aibox.policy.model import Policy

ORG_POLICY = Path(__file__).parents[3] / "src" / "aibox" / "data" / "org-policy.yaml"


def packaged_policy_data() -> dict[str, object]:
    policy = Policy.model_validate(yaml.safe_load(ORG_POLICY.read_text()))
    return policy_data(policy)


def test_limits_from_packaged_org_policy() -> None:
    limits = policy_limits(packaged_policy_data(), {"foundry.internal"})

    assert limits == {
        "requests_per_min": 60,
        "tokens_per_min": 200000,
        "max_request_bytes": 4 * 1024 * 1024,
    }


def test_limits_take_lowest_of_matching_rules() -> None:
    data = {
        "network": {
            "allow": [
                {"hosts": ["a.internal"], "rate_limit": {"requests_per_min": 50}},
                {"hosts": ["B.internal"], "rate_limit": {"requests_per_min": 20}},
                {"hosts": ["other.internal"], "rate_limit": {"requests_per_min": 1}},
                {"hosts": ["a.internal"], "rate_limit": {"tokens_per_min": 900}},
            ]
        }
    }

    limits = policy_limits(data, {"a.internal", "b.internal"})

    assert limits == {"requests_per_min": 20, "tokens_per_min": 900}


def test_limits_empty_without_rules() -> None:
    assert policy_limits({"version": 1}, {"foundry.internal"}) == {}


def test_proxy_command_parses_and_has_no_secret() -> None:
    config = Config()
    command = proxy_command(config, packaged_policy_data(), "sbx-1", "alice")

    settings = settings_from_arguments(build_parser().parse_args(command[1:]))

    assert settings.host == "127.0.0.1"
    assert settings.port == 8443
    assert settings.upstream_proxy == "http://10.213.0.1:3128"
    assert settings.anthropic_upstream == "https://foundry.internal"
    assert settings.sandbox_id == "sbx-1"
    assert settings.user == "alice"
    assert settings.requests_per_min == 60
    assert settings.tokens_per_min == 200000
    assert settings.max_request_bytes == 4 * 1024 * 1024
    assert command[command.index("--key-file") + 1] == KEY_FILE
    assert not any("key" in part.lower() and "=" in part for part in command)


def test_environment_points_sdks_at_proxy() -> None:
    environment = llm_environment(Config())

    assert environment == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8443",
        "OPENAI_BASE_URL": "http://127.0.0.1:8443/v1",
    }
    assert not any("KEY" in name for name in environment)
