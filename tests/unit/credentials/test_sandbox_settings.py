from typing import Any

import pytest

from aibox.credentials.sandbox import credential_settings, parse_duration
from aibox.errors import UsageError
from aibox.policy.effective import EffectivePolicy


def policy(data: dict[str, Any]) -> EffectivePolicy:
    return EffectivePolicy(data=data, hash="0" * 64)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("8h", 28800), ("30m", 1800), ("90s", 90), ("1d", 86400), ("45", 45), (600, 600)],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "8x", "-1h", "0", 0, True, "1.5h"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_settings_default_without_section() -> None:
    assert credential_settings(policy({"version": 1})) == (8 * 3600, True)
    assert credential_settings(policy({"credentials": "junk"})) == (8 * 3600, True)


def test_settings_from_policy() -> None:
    data = {"credentials": {"token_ttl": "2h", "revoke_on_stop": False}}
    assert credential_settings(policy(data)) == (7200, False)


def test_settings_invalid_values() -> None:
    with pytest.raises(UsageError, match="token_ttl"):
        credential_settings(policy({"credentials": {"token_ttl": "soon"}}))
    with pytest.raises(UsageError, match="revoke_on_stop"):
        credential_settings(policy({"credentials": {"revoke_on_stop": "yes"}}))
