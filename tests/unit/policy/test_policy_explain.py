"""Plain-word explanations of decision records."""

from __future__ import annotations

from typing import Any

from aibox.policy.explain import explain_record


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seq": 7,
        "ts": "2026-01-02T03:04:05+00:00",
        "kind": "container_start",
        "user": "dev",
        "workspace": "/home/dev/project",
        "sandbox_id": "aibox-dev-project",
        "image": "localhost/aibox-sandbox:latest",
        "policy_hash": "cd" * 32,
        "input": {
            "sources": [
                "/etc/aibox/org-policy.yaml",
                "/home/dev/project/aibox/policy.yaml",
            ],
            "runtime": {"engine": "gvisor", "rootless": True},
        },
        "decision": "allow",
        "rule": "policy.effective",
        "reason": "the effective policy passed",
    }
    base.update(overrides)
    return base


def test_start_names_checks_and_sources() -> None:
    text = explain_record(record())
    assert text.startswith("Record 7 (container_start)")
    assert "before starting sandbox aibox-dev-project" in text
    assert "/etc/aibox/org-policy.yaml" in text
    assert "Rego rules with OPA" in text
    assert "engine gvisor" in text
    assert "Decision: allowed." in text
    assert "Rule: policy.effective." in text
    assert "exception" not in text


def test_denied_tool_explains_exception() -> None:
    text = explain_record(
        record(
            kind="tool_check",
            input={"command": ["curl", "https://paste.example"]},
            decision="deny",
            rule="tools.rules[curl]",
        )
    )
    assert "the command 'curl https://paste.example' was matched" in text
    assert "Decision: denied." in text
    assert "How to ask for an exception: send your security team" in text
    assert "sequence id 7" in text
    assert "/etc/aibox/org-policy.yaml" in text


def test_review_explains_it_may_run() -> None:
    text = explain_record(record(kind="tool_check", decision="review", rule="r"))
    assert "needs review" in text
    assert "may run, but it is recorded for review" in text


def test_stop_and_unknown_kinds() -> None:
    assert "was removed and its credentials revoked" in explain_record(
        record(kind="container_stop")
    )
    assert "an event of kind custom" in explain_record(record(kind="custom"))
