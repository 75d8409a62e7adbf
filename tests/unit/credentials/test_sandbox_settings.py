from typing import Any

import pytest

from aibox.credentials.sandbox import credential_settings
from aibox.errors import UsageError
from aibox.policy.effective import EffectivePolicy


def policy(data: dict[str, Any]) -> EffectivePolicy:
    return EffectivePolicy(data=data, hash="0" * 64)


def test_settings_default_without_section() -> None:
    assert credential_settings(policy({"version": 1})) == (8 * 3600, True)
    assert credential_settings(policy({"credentials": "junk"})) == (8 * 3600, True)
    assert credential_settings(policy({"credentials": {"ttl": None}})) == (28800, True)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"ttl": "2h", "revoke_on_stop": False}, (7200, False)),  # as written
        ({"ttl": 600}, (600, True)),  # seconds, as the model stores them
        ({"ttl": "1h30m"}, (5400, True)),  # compound duration
        ({"ttl": "8h", "max_ttl": "1h"}, (3600, True)),  # capped by max_ttl
        ({"max_ttl": "30m"}, (1800, True)),  # default capped
    ],
)
def test_settings_from_policy(
    section: dict[str, Any], expected: tuple[int, bool]
) -> None:
    assert credential_settings(policy({"credentials": section})) == expected


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"ttl": "soon"}, "credentials.ttl"),  # not a duration
        ({"ttl": -5}, "credentials.ttl"),  # negative
        ({"max_ttl": "0s"}, "credentials.ttl"),  # zero cap
        ({"revoke_on_stop": "yes"}, "revoke_on_stop"),  # not a boolean
    ],
)
def test_settings_invalid_values(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        credential_settings(policy({"credentials": section}))
