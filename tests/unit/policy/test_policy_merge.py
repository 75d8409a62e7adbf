"""Tighten-only merge: each field may only get stricter below the org level."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aibox.policy.errors import PolicyViolationError
from aibox.policy.hierarchy import packaged_org_text, parse_policy
from aibox.policy.merge import merge_level, merge_levels, resolve_root
from aibox.policy.model import Policy


def org() -> Policy:
    policy = parse_policy(yaml.safe_load(packaged_org_text()), "org", "org.yaml")
    return resolve_root(policy, "org.yaml")


def child(data: dict[str, Any]) -> Policy:
    return parse_policy({"version": 1, **data}, "project", "p.yaml")


def merge(data: dict[str, Any]) -> Policy:
    return merge_level(org(), child(data), "project", "/ws/aibox/policy.yaml")


def loosening(data: dict[str, Any]) -> str:
    with pytest.raises(PolicyViolationError) as caught:
        merge(data)
    assert len(caught.value.violations) == 1
    return caught.value.violations[0]


def test_empty_child_inherits_everything() -> None:
    assert merge({}) == org()


def test_resolve_root_fills_defaults() -> None:
    resolved = resolve_root(Policy(version=1), "empty.yaml")
    assert resolved.network.allow == ()
    assert resolved.runtime.engine == "gvisor"
    assert resolved.runtime.rootless is True
    assert resolved.runtime.require_apparmor is False
    assert resolved.credentials.revoke_on_stop is True
    assert resolved.tools.default == "review-required"


def test_root_entry_without_ports_rejected() -> None:
    from aibox.errors import UsageError

    policy = child({"network": {"allow": [{"id": "a", "hosts": ["a.internal"]}]}})
    with pytest.raises(UsageError, match=r"network.allow\[a\] needs hosts and ports"):
        resolve_root(policy, "org.yaml")


def test_child_narrows_allowlist() -> None:
    merged = merge({"network": {"allow": [{"id": "foundry"}, {"id": "git"}]}})
    assert merged.network.allow is not None
    assert [entry.id for entry in merged.network.allow] == ["foundry", "git"]
    assert merged.network.allow[0].hosts == ("foundry.internal",)
    assert merged.network.allow[0].rate_limit is not None
    assert merged.network.allow[0].rate_limit.requests_per_min == 60


def test_child_lowers_rate_limit() -> None:
    merged = merge(
        {
            "network": {
                "allow": [{"id": "foundry", "rate_limit": {"requests_per_min": 10}}]
            }
        }
    )
    assert merged.network.allow is not None
    limit = merged.network.allow[0].rate_limit
    assert limit is not None
    assert limit.requests_per_min == 10
    assert limit.tokens_per_min == 200000


def test_tightening_every_field_accepted() -> None:
    merged = merge(
        {
            "classification": "restricted",
            "filesystem": {"workspace_root": "/workspace/src", "deny": ["~/.cache/x"]},
            "tools": {
                "default": "blocked-by-default",
                "rules": [{"match": ["make"], "risk": "review-required"}],
            },
            "resources": {"cpu": 1, "memory": "2Gi", "disk": "1Gi"},
            "runtime": {"require_apparmor": True},
            "credentials": {"ttl": "1h", "max_ttl": "2h"},
            "llm": {"max_request_bytes": "1Mi"},
        }
    )
    assert merged.classification == "restricted"
    assert merged.filesystem.workspace_root == "/workspace/src"
    assert merged.filesystem.deny is not None
    assert "~/.cache/x" in merged.filesystem.deny
    assert "~/.ssh" in merged.filesystem.deny
    assert merged.tools.default == "blocked-by-default"
    assert merged.resources.memory == 2 * 1024**3
    assert merged.runtime.require_apparmor is True
    assert merged.credentials.ttl == 3600
    assert merged.llm.max_request_bytes == 1024**2


@pytest.mark.parametrize(
    ("data", "path", "parent", "child_value"),
    [
        # a service the org does not allow
        (
            {"network": {"allow": [{"id": "pastebin", "hosts": ["paste.example"]}]}},
            "network.allow[pastebin]",
            "unset",
            "[paste.example]",
        ),
        # an extra host on an allowed service
        (
            {
                "network": {
                    "allow": [{"id": "git", "hosts": ["git.internal", "evil.internal"]}]
                }
            },
            "network.allow[git].hosts",
            "[git.internal]",
            "[evil.internal, git.internal]",
        ),
        # an extra port
        (
            {"network": {"allow": [{"id": "vault", "ports": [8200, 443]}]}},
            "network.allow[vault].ports",
            "[8200]",
            "[443, 8200]",
        ),
        # a higher rate limit
        (
            {
                "network": {
                    "allow": [
                        {"id": "foundry", "rate_limit": {"tokens_per_min": 300000}}
                    ]
                }
            },
            "network.allow[foundry].rate_limit.tokens_per_min",
            "200000",
            "300000",
        ),
        # more memory
        (
            {"resources": {"memory": "16Gi"}},
            "resources.memory",
            str(8 * 1024**3),
            str(16 * 1024**3),
        ),
        # more CPUs
        ({"resources": {"cpu": 8}}, "resources.cpu", "4.0", "8.0"),
        # leaving gVisor
        ({"runtime": {"engine": "runc"}}, "runtime.engine", "gvisor", "runc"),
        # leaving rootless
        ({"runtime": {"rootless": False}}, "runtime.rootless", "true", "false"),
        # ephemeral off
        ({"runtime": {"ephemeral": False}}, "runtime.ephemeral", "true", "false"),
        # a longer TTL
        ({"credentials": {"ttl": "9h"}}, "credentials.ttl", "28800", "32400"),
        # no revocation on stop
        (
            {"credentials": {"revoke_on_stop": False}},
            "credentials.revoke_on_stop",
            "true",
            "false",
        ),
        # a larger LLM request
        (
            {"llm": {"max_request_bytes": "8Mi"}},
            "llm.max_request_bytes",
            str(4 * 1024**2),
            str(8 * 1024**2),
        ),
        # a lower default risk
        ({"tools": {"default": "safe"}}, "tools.default", "review-required", "safe"),
        # a blocked tool made safe
        (
            {"tools": {"rules": [{"match": ["curl"], "risk": "safe"}]}},
            "tools.rules[curl].risk",
            "blocked-by-default",
            "safe",
        ),
        # a more specific rule that allows what the parent blocks
        (
            {
                "tools": {
                    "rules": [
                        {"match": ["curl", "--version"], "risk": "review-required"}
                    ]
                }
            },
            "tools.rules[curl --version]",
            "'curl' blocked-by-default",
            "'curl --version' review-required",
        ),
        # a wildcard rule under a blocked tool
        (
            {"tools": {"rules": [{"match": ["ssh", "*"], "risk": "safe"}]}},
            "tools.rules[ssh *]",
            "'ssh' blocked-by-default",
            "'ssh *' safe",
        ),
        # a new rule below the parent's default risk
        (
            {"tools": {"rules": [{"match": ["make"], "risk": "safe"}]}},
            "tools.rules[make]",
            "default review-required",
            "'make' safe",
        ),
        # a broad rule that would make every git command safe
        (
            {"tools": {"rules": [{"match": ["git"], "risk": "safe"}]}},
            "tools.rules[git]",
            "default review-required",
            "'git' safe",
        ),
        # a workspace root outside the parent's
        (
            {"filesystem": {"workspace_root": "/home"}},
            "filesystem.workspace_root",
            "/workspace",
            "/home",
        ),
        # a lower classification
        ({"classification": "public"}, "classification", "internal", "public"),
    ],
)
def test_loosening_rejected(
    data: dict[str, Any], path: str, parent: str, child_value: str
) -> None:
    message = loosening(data)
    assert message.startswith("project policy /ws/aibox/policy.yaml: ")
    assert f": {path} loosens the parent" in message
    assert f"parent: {parent}," in message
    assert f"child: {child_value})" in message


def test_rule_allow_false_cannot_return_to_true() -> None:
    team = merge_level(
        org(),
        child({"tools": {"rules": [{"match": ["make"], "allow": False}]}}),
        "team",
        "t",
    )
    project = child({"tools": {"rules": [{"match": ["make"], "allow": True}]}})
    with pytest.raises(
        PolicyViolationError, match=r"tools.rules\[make\].allow loosens"
    ):
        merge_level(team, project, "project", "p")


def test_all_loosenings_listed_together() -> None:
    levels = [
        (
            "org",
            "org.yaml",
            parse_policy(yaml.safe_load(packaged_org_text()), "org", "o"),
        ),
        ("team", "team.yaml", child({"runtime": {"rootless": False}})),
        (
            "project",
            "p.yaml",
            child({"credentials": {"ttl": "12h"}, "resources": {"cpu": 64}}),
        ),
    ]
    with pytest.raises(PolicyViolationError) as caught:
        merge_levels(levels)
    violations = caught.value.violations
    assert len(violations) == 3
    assert violations[0].startswith("team policy team.yaml: runtime.rootless")
    assert any("credentials.ttl" in line for line in violations)
    assert any("resources.cpu" in line for line in violations)


def test_deny_paths_only_grow() -> None:
    merged = merge({"filesystem": {"deny": ["~/.extra"]}})
    parent_deny = set(org().filesystem.deny or ())
    assert merged.filesystem.deny is not None
    assert parent_deny < set(merged.filesystem.deny)


def test_new_rule_takes_default_risk() -> None:
    merged = merge({"tools": {"rules": [{"match": ["make"]}]}})
    rules = {rule.match: rule for rule in merged.tools.rules or ()}
    assert rules[("make",)].risk == "review-required"
    assert rules[("make",)].allow is True
