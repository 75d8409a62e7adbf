"""The tool permission model: match a command line against the policy's tool rules.

A rule's ``match`` is a prefix of the command line: each token is literal or ``*``
for exactly one argument, and further arguments are allowed. The command name is
compared by its base name, so ``/usr/bin/curl`` matches ``curl``. The most
restrictive matching rule wins; the policy's default risk applies when no rule
matches. Everything here is pure: no I/O, no global state.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aibox.policy.model import RISK_ORDER, Risk, ToolRule

Decision = Literal["allow", "review", "deny"]

# Strictness of a rule with ``allow: false``: above every risk class.
HARD_BLOCK = 3

# Commands that run another command given later on their line. Every argument of
# theirs that is not an option or a VAR=value assignment is tried as a command
# name, which can only make the result stricter.
_WRAPPERS = frozenset(
    {
        "env", "sudo", "doas", "nohup", "exec", "command", "nice", "time",
        "timeout", "stdbuf", "xargs", "setsid", "ionice", "busybox", "chronic",
    }
)  # fmt: skip
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&"})


@dataclass(frozen=True)
class ToolDecision:
    """The outcome of checking one command line."""

    decision: Decision
    risk: Risk
    rule: str
    matched: tuple[str, ...] | None

    @property
    def exit_code(self) -> int:
        return 1 if self.decision == "deny" else 0


def rule_strictness(rule: ToolRule) -> int:
    """Rank a resolved rule: a hard block above every risk class."""
    if rule.allow is False:
        return HARD_BLOCK
    return RISK_ORDER[rule.risk or "review-required"]


def rule_matches(pattern: Sequence[str], argv: Sequence[str]) -> bool:
    """Return whether ``argv`` starts with ``pattern`` (``*`` is one argument)."""
    if len(argv) < len(pattern):
        return False
    return all(
        part == "*" or part == arg for part, arg in zip(pattern, argv, strict=False)
    )


def rule_covers(parent: ToolRule, child: ToolRule) -> bool:
    """Return whether every command ``child`` matches is also matched by ``parent``."""
    if len(parent.match) > len(child.match):
        return False
    return all(
        mine == "*" or mine == theirs
        for mine, theirs in zip(parent.match, child.match, strict=False)
    )


def decide(
    rules: Sequence[ToolRule], default: Risk, argv: Sequence[str]
) -> ToolDecision:
    """Decide on ``argv`` with ``rules`` (already resolved) and the default risk."""
    best: ToolRule | None = None
    for candidate in _candidate_commands(argv):
        for rule in rules:
            if rule_matches(rule.match, candidate) and (
                best is None or rule_strictness(rule) > rule_strictness(best)
            ):
                best = rule
    if best is None:
        return ToolDecision(
            _verdict(RISK_ORDER[default]), default, "tools.default", None
        )
    strictness = rule_strictness(best)
    risk: Risk = best.risk or default
    if strictness == HARD_BLOCK:
        risk = "blocked-by-default"
    label = f"tools.rules[{' '.join(best.match)}]"
    return ToolDecision(_verdict(strictness), risk, label, best.match)


def _verdict(strictness: int) -> Decision:
    if strictness >= RISK_ORDER["blocked-by-default"]:
        return "deny"
    if strictness == RISK_ORDER["review-required"]:
        return "review"
    return "allow"


def _candidate_commands(argv: Sequence[str]) -> list[tuple[str, ...]]:
    """Return ``argv`` and every command it runs through a wrapper or ``sh -c``."""
    if not argv:
        return []
    command = (os.path.basename(argv[0]), *argv[1:])
    found = [command]
    name = command[0]
    if name in _SHELLS:
        found.extend(_shell_commands(command[1:]))
    elif name in _WRAPPERS:
        for position in range(1, len(command)):
            token = command[position]
            if token.startswith("-") or "=" in token:
                continue
            found.extend(_candidate_commands(command[position:]))
    return found


def _shell_commands(args: Sequence[str]) -> list[tuple[str, ...]]:
    if "-c" not in args:
        return []
    position = args.index("-c") + 1
    if position >= len(args):
        return []
    lexer = shlex.shlex(args[position], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        tokens = args[position].split()
    found: list[tuple[str, ...]] = []
    current: list[str] = []
    for token in [*tokens, ";"]:
        if token in _SEPARATORS:
            if current:
                found.extend(_candidate_commands(current))
            current = []
        else:
            current.append(token)
    return found
