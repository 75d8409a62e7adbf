"""Policy host names are checked by the same rule Squid and CoreDNS rendering uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aibox.policy.model import AllowEntry


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("10.0.0.1", "IP address is not allowed"),  # an address where a name belongs
        ("a..b", "invalid host"),  # empty label
        ("git.internal:443", "invalid host name"),  # a port in the name
    ],
)
def test_allow_entry_rejects_bad_host(host: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AllowEntry.model_validate({"id": "git", "hosts": [host], "ports": [443]})


def test_allow_entry_keeps_wildcard_for_rego() -> None:
    entry = AllowEntry.model_validate({"id": "all", "hosts": ["*.internal"]})
    assert entry.hosts == ("*.internal",)
