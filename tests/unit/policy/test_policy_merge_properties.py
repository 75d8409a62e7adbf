"""Property tests: a merge never loosens, is deterministic, and rejects loosening."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aibox.policy.effective import policy_data, policy_hash
from aibox.policy.errors import PolicyViolationError
from aibox.policy.merge import merge_level, merge_level_report, resolve_root
from aibox.policy.model import (
    CLASSIFICATION_ORDER,
    ENGINE_ORDER,
    RISK_ORDER,
    Policy,
)
from aibox.policy.tools import decide

HOSTS = ["a.internal", "b.internal", "c.internal", "d.internal"]
PORTS = [22, 443, 8080, 8200]
SERVICE_IDS = ["s1", "s2", "s3"]
DENY_PATHS = ["~/.ssh", "~/.aws", "~/.kube", "/run/podman", "~/.netrc"]
PATTERNS = [
    ("curl",),
    ("git",),
    ("git", "push"),
    ("git", "*", "x"),
    ("make",),
    ("ls", "*"),
]
TOKENS = ["curl", "git", "push", "status", "x", "make", "ls", "-l"]
RISKS = list(RISK_ORDER)
DECISION_RANK = {"allow": 0, "review": 1, "deny": 2}
# Every command of up to three tokens from TOKENS, to compare tool decisions.
COMMANDS = [
    list(command)
    for length in (1, 2, 3)
    for command in itertools.product(TOKENS, repeat=length)
]

optional = st.none().__or__


def subset(items: list[Any], min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(items), min_size=min_size, unique=True).map(sorted)


@st.composite
def org_policies(draw: st.DrawFn) -> Policy:
    """A random org baseline, resolved with the product defaults."""
    services = draw(subset(SERVICE_IDS))
    allow = [
        {
            "id": service,
            "hosts": draw(subset(HOSTS, 1)),
            "ports": draw(subset(PORTS, 1)),
            "rate_limit": draw(
                optional(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "requests_per_min": st.integers(1, 1000),
                            "tokens_per_min": st.integers(1, 10**6),
                        },
                    )
                )
            ),
        }
        for service in services
    ]
    patterns = draw(subset(PATTERNS))
    rules = [
        {
            "match": list(pattern),
            "allow": draw(st.booleans()),
            "risk": draw(st.sampled_from(RISKS)),
        }
        for pattern in patterns
    ]
    data = {
        "version": 1,
        "classification": draw(st.sampled_from(list(CLASSIFICATION_ORDER))),
        "network": {"allow": allow},
        "filesystem": {
            "workspace_root": "/workspace",
            "deny": draw(subset(DENY_PATHS)),
        },
        "tools": {"default": draw(st.sampled_from(RISKS)), "rules": rules},
        "resources": {
            "cpu": draw(optional(st.integers(1, 64))),
            "memory": draw(optional(st.integers(2**20, 2**36))),
            "disk": draw(optional(st.integers(2**20, 2**40))),
        },
        "runtime": {
            "engine": draw(st.sampled_from(list(ENGINE_ORDER))),
            "rootless": draw(st.booleans()),
            "ephemeral": draw(st.booleans()),
            "require_apparmor": draw(st.booleans()),
        },
        "credentials": {
            "ttl": draw(st.integers(60, 86400)),
            "max_ttl": draw(st.integers(60, 172800)),
            "revoke_on_stop": draw(st.booleans()),
        },
        "llm": {"max_request_bytes": draw(optional(st.integers(1024, 2**30)))},
    }
    return resolve_root(Policy.model_validate(data), "org.yaml")


@st.composite
def child_policies(draw: st.DrawFn) -> Policy:
    """A random child level, loose or tight, with any field left out."""
    data: dict[str, Any] = {"version": 1}
    if draw(st.booleans()):
        data["classification"] = draw(st.sampled_from(list(CLASSIFICATION_ORDER)))
    if draw(st.booleans()):
        data["network"] = {
            "allow": [
                {
                    "id": service,
                    **({"hosts": draw(subset(HOSTS))} if draw(st.booleans()) else {}),
                    **({"ports": draw(subset(PORTS))} if draw(st.booleans()) else {}),
                    **(
                        {"rate_limit": {"requests_per_min": draw(st.integers(1, 2000))}}
                        if draw(st.booleans())
                        else {}
                    ),
                }
                for service in draw(subset([*SERVICE_IDS, "s4"]))
            ]
        }
    if draw(st.booleans()):
        data["filesystem"] = {"deny": draw(subset([*DENY_PATHS, "~/.x"]))}
    if draw(st.booleans()):
        data["tools"] = {
            "default": draw(st.sampled_from(RISKS)),
            "rules": [
                {"match": list(pattern), "risk": draw(st.sampled_from(RISKS))}
                for pattern in draw(subset(PATTERNS))
            ],
        }
    data["resources"] = {
        "cpu": draw(optional(st.integers(1, 128))),
        "memory": draw(optional(st.integers(2**20, 2**37))),
    }
    data["runtime"] = {
        "engine": draw(optional(st.sampled_from(list(ENGINE_ORDER)))),
        "rootless": draw(optional(st.booleans())),
        "require_apparmor": draw(optional(st.booleans())),
    }
    data["credentials"] = {
        "ttl": draw(optional(st.integers(60, 172800))),
        "revoke_on_stop": draw(optional(st.booleans())),
    }
    return Policy.model_validate(data)


def assert_not_looser(parent: Policy, merged: Policy) -> None:
    """Check every field of ``merged`` against ``parent``, written from the rules."""
    parent_allow = {entry.id: entry for entry in parent.network.allow or ()}
    for entry in merged.network.allow or ():
        base = parent_allow[entry.id]
        assert set(entry.hosts or ()) <= set(base.hosts or ())
        assert set(entry.ports or ()) <= set(base.ports or ())
        for field in ("requests_per_min", "tokens_per_min"):
            limit = getattr(base.rate_limit, field, None)
            if limit is not None:
                assert entry.rate_limit is not None
                assert getattr(entry.rate_limit, field) <= limit
    assert set(parent.filesystem.deny or ()) <= set(merged.filesystem.deny or ())
    for field in ("cpu", "memory", "disk"):
        limit = getattr(parent.resources, field)
        if limit is not None:
            assert getattr(merged.resources, field) <= limit
    assert (
        ENGINE_ORDER[merged.runtime.engine or ""]
        >= ENGINE_ORDER[parent.runtime.engine or ""]
    )
    for flag in ("rootless", "ephemeral", "require_apparmor"):
        if getattr(parent.runtime, flag):
            assert getattr(merged.runtime, flag) is True
    if parent.credentials.revoke_on_stop:
        assert merged.credentials.revoke_on_stop is True
    assert (merged.credentials.ttl or 0) <= (parent.credentials.ttl or 0)
    assert (
        CLASSIFICATION_ORDER[merged.classification or ""]
        >= CLASSIFICATION_ORDER[parent.classification or ""]
    )
    if parent.llm.max_request_bytes is not None:
        assert merged.llm.max_request_bytes is not None
        assert merged.llm.max_request_bytes <= parent.llm.max_request_bytes
    for command in COMMANDS:
        before = decide(
            parent.tools.rules or (), parent.tools.default or "safe", command
        )
        after = decide(
            merged.tools.rules or (), merged.tools.default or "safe", command
        )
        assert DECISION_RANK[after.decision] >= DECISION_RANK[before.decision], command


@settings(max_examples=150, deadline=None)
@given(org_policies(), child_policies())
def test_merge_never_looser_than_parent(parent: Policy, child: Policy) -> None:
    merged, _ = merge_level_report(parent, child, "project", "p.yaml")
    assert_not_looser(parent, merged)


@settings(max_examples=100, deadline=None)
@given(org_policies(), child_policies(), child_policies())
def test_three_levels_never_looser_than_org(
    parent: Policy, team: Policy, project: Policy
) -> None:
    middle, _ = merge_level_report(parent, team, "team", "t.yaml")
    merged, _ = merge_level_report(middle, project, "project", "p.yaml")
    assert_not_looser(parent, merged)
    assert_not_looser(middle, merged)


@settings(max_examples=100, deadline=None)
@given(org_policies(), child_policies())
def test_merge_is_deterministic(parent: Policy, child: Policy) -> None:
    first, first_found = merge_level_report(parent, child, "project", "p.yaml")
    copy_parent = Policy.model_validate(parent.model_dump())
    copy_child = Policy.model_validate(child.model_dump(exclude_none=True))
    second, second_found = merge_level_report(
        copy_parent, copy_child, "project", "p.yaml"
    )
    assert first == second
    assert first_found == second_found
    assert policy_hash(policy_data(first)) == policy_hash(policy_data(second))


def _loosen(parent: Policy, kind: str) -> tuple[dict[str, Any], str]:
    """Return a child that loosens ``parent`` in one way, and the path to report."""
    allow = parent.network.allow or ()
    if kind == "host" and allow:
        return (
            {"network": {"allow": [{"id": allow[0].id, "hosts": ["new.internal"]}]}},
            f"network.allow[{allow[0].id}].hosts",
        )
    if kind == "port" and allow:
        return (
            {"network": {"allow": [{"id": allow[0].id, "ports": [9999]}]}},
            f"network.allow[{allow[0].id}].ports",
        )
    limited = [
        entry
        for entry in allow
        if entry.rate_limit and entry.rate_limit.requests_per_min
    ]
    if kind == "rate" and limited:
        entry = limited[0]
        assert entry.rate_limit is not None and entry.rate_limit.requests_per_min
        raised = entry.rate_limit.requests_per_min + 1
        return (
            {
                "network": {
                    "allow": [
                        {"id": entry.id, "rate_limit": {"requests_per_min": raised}}
                    ]
                }
            },
            f"network.allow[{entry.id}].rate_limit.requests_per_min",
        )
    if kind == "resource" and parent.resources.memory is not None:
        return {
            "resources": {"memory": parent.resources.memory + 1}
        }, "resources.memory"
    if kind == "engine" and parent.runtime.engine == "gvisor":
        return {"runtime": {"engine": "runc"}}, "runtime.engine"
    if kind == "rootless" and parent.runtime.rootless:
        return {"runtime": {"rootless": False}}, "runtime.rootless"
    if kind == "apparmor" and parent.runtime.require_apparmor:
        return {"runtime": {"require_apparmor": False}}, "runtime.require_apparmor"
    if kind == "revoke" and parent.credentials.revoke_on_stop:
        return {"credentials": {"revoke_on_stop": False}}, "credentials.revoke_on_stop"
    if kind == "ttl" and parent.credentials.ttl is not None:
        return {"credentials": {"ttl": parent.credentials.ttl + 1}}, "credentials.ttl"
    rules = [rule for rule in parent.tools.rules or () if rule.risk != "safe"]
    if kind == "risk" and rules:
        pattern = list(rules[0].match)
        return (
            {"tools": {"rules": [{"match": pattern, "risk": "safe"}]}},
            f"tools.rules[{' '.join(pattern)}]",
        )
    if kind == "default" and parent.tools.default != "safe":
        return {"tools": {"default": "safe"}}, "tools.default"
    return {
        "network": {"allow": [{"id": "unknown-service"}]}
    }, "network.allow[unknown-service]"


@settings(max_examples=200, deadline=None)
@given(
    org_policies(),
    st.sampled_from(
        [
            "host",
            "port",
            "rate",
            "resource",
            "engine",
            "rootless",
            "apparmor",
            "revoke",
            "ttl",
            "risk",
            "default",
            "service",
        ]
    ),
)
def test_loosening_child_always_rejected(parent: Policy, kind: str) -> None:
    data, path = _loosen(parent, kind)
    child = Policy.model_validate({"version": 1, **data})
    try:
        merge_level(parent, child, "team", "team.yaml")
    except PolicyViolationError as error:
        assert any(
            f"team policy team.yaml: {path}" in line for line in error.violations
        )
    else:
        raise AssertionError(f"loosening {kind} at {path} was accepted")
