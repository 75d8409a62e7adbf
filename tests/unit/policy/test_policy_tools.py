"""Tool rule matching: prefix patterns, wildcards, wrappers, most restrictive wins."""

from __future__ import annotations

import pytest

from aibox.policy.model import ToolRule
from aibox.policy.tools import decide, rule_covers, rule_matches

RULES = (
    ToolRule(match=("curl",), allow=True, risk="blocked-by-default"),
    ToolRule(match=("git", "push"), allow=True, risk="review-required"),
    ToolRule(match=("git", "status"), allow=True, risk="safe"),
    ToolRule(match=("git", "*", "--force"), allow=False, risk="review-required"),
    ToolRule(match=("ls",), allow=True, risk="safe"),
    ToolRule(match=("docker", "*"), allow=True, risk="review-required"),
)


@pytest.mark.parametrize(
    ("command", "decision", "rule"),
    [
        (["curl", "https://x.internal"], "deny", "tools.rules[curl]"),  # blocked tool
        (["/usr/bin/curl"], "deny", "tools.rules[curl]"),  # full path
        (["git", "status"], "allow", "tools.rules[git status]"),  # safe rule
        (
            ["git", "push", "origin", "main"],
            "review",
            "tools.rules[git push]",
        ),  # prefix
        (
            ["git", "push", "--force"],
            "deny",
            "tools.rules[git * --force]",
        ),  # strictest wins
        (["git", "commit"], "review", "tools.default"),  # no rule: default
        (["ls", "-la"], "allow", "tools.rules[ls]"),
        (["docker"], "review", "tools.default"),  # '*' needs one argument
        (["docker", "ps"], "review", "tools.rules[docker *]"),
        (["env", "A=1", "curl", "x"], "deny", "tools.rules[curl]"),  # wrapper
        (
            ["timeout", "5", "curl"],
            "deny",
            "tools.rules[curl]",
        ),  # wrapper with argument
        (["sudo", "-u", "dev", "git", "push"], "review", "tools.rules[git push]"),
        (["bash", "-c", "ls && curl x"], "deny", "tools.rules[curl]"),  # shell string
        (["sh", "-c", "echo hi;curl x"], "deny", "tools.rules[curl]"),  # no spaces
        (["bash", "-c", "ls -l"], "allow", "tools.rules[ls]"),
        (["bash", "-c", "'unterminated"], "review", "tools.default"),  # bad quoting
        (["echo", "curl"], "review", "tools.default"),  # argument, not a command
    ],
)
def test_decide(command: list[str], decision: str, rule: str) -> None:
    result = decide(RULES, "review-required", command)
    assert result.decision == decision
    assert result.rule == rule


def test_hard_block_reports_blocked_risk() -> None:
    result = decide(RULES, "safe", ["git", "push", "--force"])
    assert result.risk == "blocked-by-default"
    assert result.exit_code == 1


def test_default_applies_to_empty_command() -> None:
    result = decide(RULES, "blocked-by-default", [])
    assert result.decision == "deny"
    assert result.matched is None


def test_review_exits_zero() -> None:
    assert decide(RULES, "safe", ["git", "push"]).exit_code == 0


@pytest.mark.parametrize(
    ("pattern", "command", "expected"),
    [
        (("git",), ["git"], True),
        (("git", "*"), ["git"], False),
        (("git", "*"), ["git", "anything"], True),
        (("git", "*", "x"), ["git", "a", "x", "y"], True),
        (("git", "*", "x"), ["git", "a", "y"], False),
    ],
)
def test_rule_matches(
    pattern: tuple[str, ...], command: list[str], expected: bool
) -> None:
    assert rule_matches(pattern, command) is expected


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        (("curl",), ("curl", "--version"), True),
        (("git", "*"), ("git", "push"), True),
        (("git", "push"), ("git", "*"), False),
        (("git", "push"), ("git",), False),
        (("ssh",), ("scp",), False),
    ],
)
def test_rule_covers(
    parent: tuple[str, ...], child: tuple[str, ...], expected: bool
) -> None:
    assert rule_covers(ToolRule(match=parent), ToolRule(match=child)) is expected
