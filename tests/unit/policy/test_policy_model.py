"""Schema of policy.yaml: units, inheritance and rejection of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aibox.errors import UsageError
from aibox.policy.hierarchy import (
    install_default_org_policy,
    packaged_org_text,
    parse_policy,
)
from aibox.policy.model import Policy
from aibox.policy.units import format_duration, format_size, parse_duration


def parse(data: dict[str, object]) -> Policy:
    return parse_policy(data, "project", "policy.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("8h", 28800),
        ("1h30m", 5400),
        ("90s", 90),
        ("2d", 172800),
        ("600", 600),
        (45, 45),
    ],
)
def test_duration_parsing(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "8x", "h8", "1h 30m", "-5", "0", "1.5h"])
def test_duration_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_duration_format_round_trips() -> None:
    for seconds in (1, 59, 3600, 5400, 86400 + 61):
        assert parse_duration(format_duration(seconds)) == seconds


def test_sizes_use_binary_units() -> None:
    policy = parse({"version": 1, "resources": {"memory": "8Gi", "disk": "512M"}})
    assert policy.resources.memory == 8 * 1024**3
    assert policy.resources.disk == 512 * 1000**2
    assert format_size(8 * 1024**3) == "8Gi"


def test_cpu_accepts_millicores() -> None:
    assert parse({"version": 1, "resources": {"cpu": "500m"}}).resources.cpu == 0.5
    assert parse({"version": 1, "resources": {"cpu": 2}}).resources.cpu == 2.0


def test_left_out_fields_inherit() -> None:
    policy = parse({"version": 1})
    assert policy.runtime.rootless is None
    assert policy.credentials.revoke_on_stop is None
    assert policy.network.allow is None
    assert policy.resources.memory is None


def test_json_dump_uses_file_notation() -> None:
    policy = parse(
        {
            "version": 1,
            "credentials": {"ttl": "8h"},
            "llm": {"max_request_bytes": "4Mi"},
        }
    )
    dumped = policy.model_dump(mode="json")
    assert dumped["credentials"]["ttl"] == "8h"
    assert dumped["llm"]["max_request_bytes"] == "4Mi"
    assert policy.model_dump()["credentials"]["ttl"] == 28800


def test_hosts_are_normalized() -> None:
    policy = parse(
        {
            "version": 1,
            "network": {"allow": [{"id": "a", "hosts": ["B.Internal.", "a.internal"]}]},
        }
    )
    assert policy.network.allow is not None
    assert policy.network.allow[0].hosts == ("a.internal", "b.internal")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # version missing
        ({}, "missing required field 'version'"),
        # unsupported version
        ({"version": 2}, "unsupported version 2"),
        # unknown top-level field
        ({"version": 1, "netwrok": {}}, "unknown field 'netwrok'"),
        # unknown nested field
        (
            {"version": 1, "runtime": {"rootles": True}},
            "unknown field 'runtime.rootles'",
        ),
        # unknown risk class
        (
            {"version": 1, "tools": {"rules": [{"match": ["ls"], "risk": "low"}]}},
            "tools.rules[0].risk",
        ),
        # wrong type: string for a boolean
        ({"version": 1, "runtime": {"rootless": "yes"}}, "runtime.rootless"),
        # wrong type: list for a duration
        ({"version": 1, "credentials": {"ttl": [1]}}, "credentials.ttl"),
        # boolean where a port is expected
        (
            {"version": 1, "network": {"allow": [{"id": "a", "ports": [True]}]}},
            "network.allow[0].ports[0]",
        ),
        # port out of range
        (
            {"version": 1, "network": {"allow": [{"id": "a", "ports": [70000]}]}},
            "ports",
        ),
        # bad size unit
        ({"version": 1, "resources": {"memory": "8GB"}}, "resources.memory"),
        # duplicate service id
        (
            {"version": 1, "network": {"allow": [{"id": "a"}, {"id": "a"}]}},
            "duplicate network.allow id 'a'",
        ),
        # duplicate tool rule
        (
            {"version": 1, "tools": {"rules": [{"match": ["ls"]}, {"match": ["ls"]}]}},
            "duplicate tools rule 'ls'",
        ),
        # a rule starting with a wildcard
        ({"version": 1, "tools": {"rules": [{"match": ["*"]}]}}, "first match token"),
        # relative workspace root
        ({"version": 1, "filesystem": {"workspace_root": "src"}}, "absolute path"),
    ],
)
def test_bad_input_is_one_line_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(data)
    assert message in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith("project policy policy.yaml: ")


@pytest.mark.parametrize("data", [None, [], "version: 1"])
def test_non_mapping_rejected(data: object) -> None:
    with pytest.raises(UsageError, match="expected a YAML mapping"):
        parse_policy(data, "team", "team.yaml")


def test_packaged_org_policy_parses() -> None:
    policy = parse(yaml.safe_load(packaged_org_text()))
    assert policy.network.allow is not None
    ids = {entry.id: entry for entry in policy.network.allow}
    assert set(ids) == {"harbor", "nexus", "foundry", "git", "vault"}
    assert ids["vault"].ports == (8200,)
    assert all(
        ids[name].ports == (443,) for name in ("harbor", "nexus", "foundry", "git")
    )
    assert ids["foundry"].rate_limit is not None
    assert policy.runtime.engine == "gvisor"
    assert policy.runtime.rootless is True
    assert policy.runtime.require_apparmor is False
    assert policy.credentials.ttl == 8 * 3600
    assert policy.credentials.revoke_on_stop is True


def test_install_default_org_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(tmp_path / "etc"))
    assert install_default_org_policy() is True
    installed = tmp_path / "etc" / "org-policy.yaml"
    assert installed.read_text() == packaged_org_text()
    installed.write_text("version: 1\n")
    assert install_default_org_policy() is False
    assert installed.read_text() == "version: 1\n"
