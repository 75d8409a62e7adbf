"""The secret wrapper and the names of the secrets aibox manages."""

from __future__ import annotations

import hmac
from typing import Final

from aibox.errors import UsageError

GIT_TOKEN: Final = "git-token"  # noqa: S105 (a name, not a value)
LLM_API_KEY: Final = "llm-api-key"
MIRROR_TOKEN: Final = "mirror-token"  # noqa: S105 (a name, not a value)
SECRET_NAMES: Final = (GIT_TOKEN, LLM_API_KEY, MIRROR_TOKEN)

MASK: Final = "Secret('********')"


def check_secret_name(name: str) -> str:
    """Return ``name`` if aibox manages a secret of that name, else raise UsageError."""
    if name not in SECRET_NAMES:
        raise UsageError(
            f"unknown credential name {name!r}",
            hint=f"Use one of: {', '.join(SECRET_NAMES)}.",
        )
    return name


class Secret:
    """A secret string whose ``repr`` and ``str`` never show the value.

    Call ``reveal()`` at the one place the value must leave the process (a file
    written for a sandbox, an HTTP header, the git-credential response).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str | Secret) -> bool:
        """Compare in constant time with ``hmac.compare_digest``."""
        other = candidate.reveal() if isinstance(candidate, Secret) else candidate
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self.matches(other)
        return NotImplemented

    def __hash__(self) -> int:
        # Equal secrets hash alike without exposing the value through the hash of
        # the plain string, which is stable within a process.
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
