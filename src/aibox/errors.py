"""Exception hierarchy shared by every aibox command.

    AiboxError                 a failure the user can act on (exit 1)
     +-- UsageError            bad arguments, config or policy input (exit 2)
     |    +-- ConfigError      invalid config file or value
     +-- ExternalToolError     a subprocess (podman, nft, squid, opa, ...) failed
     +-- EnforcementError      host enforcement missing or not matching policy

The CLI prints ``Error: <message>`` and the hint on the next line, and exits with
``exit_code``. A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class AiboxError(Exception):
    """A failure with a one-line message and an optional hint on what to do."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(AiboxError):
    """Invalid input from the user: arguments, config or policy files."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """An invalid config file or config value."""


class ExternalToolError(AiboxError):
    """A subprocess that aibox runs failed or is missing."""


class EnforcementError(AiboxError):
    """Host-side enforcement is missing or does not match the effective policy."""
