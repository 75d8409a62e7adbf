"""Read-only credentials from environment variables, the last resort."""

from __future__ import annotations

import os

from aibox.credentials.errors import CredentialError
from aibox.credentials.secret import SECRET_NAMES, Secret, check_secret_name


def variable_for(name: str) -> str:
    """Return the variable for ``name``: ``AIBOX_GIT_TOKEN`` for ``git-token``."""
    return "AIBOX_" + check_secret_name(name).upper().replace("-", "_")


class EnvironmentStore:
    """Secrets from ``AIBOX_GIT_TOKEN``, ``AIBOX_LLM_API_KEY`` and the like."""

    name = "env"

    def describe(self) -> str:
        return "environment variables"

    def get(self, name: str) -> Secret | None:
        value = os.environ.get(variable_for(name))
        return Secret(value) if value else None

    def set(self, name: str, value: Secret) -> None:
        raise CredentialError(
            "the environment backend is read-only",
            hint=f"Export {variable_for(name)} yourself or configure another backend.",
        )

    def delete(self, name: str) -> bool:
        raise CredentialError(
            "the environment backend is read-only",
            hint=f"Unset {variable_for(name)} yourself or configure another backend.",
        )

    def names(self) -> list[str]:
        return [name for name in SECRET_NAMES if self.get(name) is not None]

    def close(self) -> None:
        pass
