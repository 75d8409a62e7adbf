"""Describe a decision record in plain words for ``aibox policy explain``."""

from __future__ import annotations

from typing import Any

_DECISION_WORDS = {
    "allow": "allowed",
    "review": "allowed, but the command needs review",
    "deny": "denied",
}


def explain_record(record: dict[str, Any]) -> str:
    """Return a paragraph per topic: what was checked, the decision, what to do."""
    kind = str(record.get("kind", "unknown"))
    decision = str(record.get("decision", "unknown"))
    lines = [
        f"Record {record.get('seq')} ({kind}) at {record.get('ts')} "
        f"by user {record.get('user')}.",
        "",
        "What was checked: " + _what_was_checked(kind, record),
        "",
        f"Decision: {_DECISION_WORDS.get(decision, decision)}.",
        f"Rule: {record.get('rule')}.",
        f"Reason: {record.get('reason')}",
        f"Effective policy hash: {record.get('policy_hash') or 'none'}.",
    ]
    if decision in ("deny", "review"):
        lines += ["", "How to ask for an exception: " + _exception_advice(record)]
    return "\n".join(lines)


def _what_was_checked(kind: str, record: dict[str, Any]) -> str:
    data = record.get("input") or {}
    workspace = record.get("workspace")
    sandbox = record.get("sandbox_id")
    image = record.get("image")
    levels = ", ".join(data.get("sources") or []) or "the policy files"
    if kind == "container_start":
        return (
            f"before starting sandbox {sandbox} from image {image} for workspace "
            f"{workspace}, aibox merged the policy levels ({levels}) tighten-only, "
            "evaluated the org's Rego rules with OPA, and applied the resulting "
            f"runtime ({_runtime_words(data)}) and resource limits to the container."
        )
    if kind == "container_stop":
        return (
            f"stopping sandbox {sandbox} for workspace {workspace}: the container "
            "was removed and its credentials revoked."
        )
    if kind == "tool_check":
        command = " ".join(data.get("command") or [])
        return (
            f"the command '{command}' was matched against the effective tool rules; "
            "the most restrictive matching rule decides, and the default risk "
            "applies when no rule matches."
        )
    if kind == "policy_validate":
        return (
            f"the policy levels ({levels}) for workspace {workspace} were merged "
            "tighten-only and checked with the org's Rego rules in OPA."
        )
    return f"an event of kind {kind} with input {data}."


def _runtime_words(data: dict[str, Any]) -> str:
    runtime = data.get("runtime") or {}
    if not runtime:
        return "as the policy sets it"
    return ", ".join(f"{key} {value}" for key, value in sorted(runtime.items()))


def _exception_advice(record: dict[str, Any]) -> str:
    rule = record.get("rule")
    if record.get("kind") == "tool_check" and record.get("decision") == "review":
        return (
            "the command may run, but it is recorded for review. To have it "
            f"treated as safe, ask the owner of the org policy to relax {rule}; a "
            "team or project policy can only make rules stricter."
        )
    return (
        f"send your security team this record (sequence id {record.get('seq')}, "
        f"rule {rule}, policy hash {record.get('policy_hash')}) and why you need "
        "the exception. Only the org policy (/etc/aibox/org-policy.yaml) can allow "
        "more, because team and project policies may only tighten it."
    )
