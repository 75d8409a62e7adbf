"""The error raised when a policy level loosens its parent or breaks an org rule."""

from __future__ import annotations

from aibox.errors import AiboxError


class PolicyViolationError(AiboxError):
    """One or more policy violations, with one message each in ``violations``."""

    def __init__(self, violations: list[str], hint: str | None = None) -> None:
        count = len(violations)
        lines = [f"the effective policy has {count} violation(s):"]
        lines.extend(f"  - {violation}" for violation in violations)
        super().__init__(
            "\n".join(lines),
            hint=hint
            or "A team or project policy may only tighten the org baseline; "
            "ask the policy owner for an exception in the org policy.",
        )
        self.violations = list(violations)
