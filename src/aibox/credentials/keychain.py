"""Credentials in the OS keychain through ``keyring`` (Secret Service on Linux)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aibox.credentials.errors import CredentialError
from aibox.credentials.secret import SECRET_NAMES, Secret, check_secret_name

SERVICE = "aibox"
# keyring cannot enumerate items, so the names stored are kept in one more entry.
_INDEX_ENTRY = "aibox-index"


def keychain_available() -> bool:
    """Return True when keyring has a usable backend (not the fail or null one)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # backend detection may raise anything
        logging.getLogger("aibox.credentials").info("no usable keyring: %s", exc)
        return False
    if isinstance(backend, fail.Keyring):
        return False
    priority = getattr(backend, "priority", 0)
    return isinstance(priority, int | float) and priority > 0


class KeychainStore:
    """Secrets under service ``aibox`` in the user's keychain."""

    name = "keyring"

    def __init__(self, backend: Any | None = None) -> None:
        import keyring

        self._keyring = backend if backend is not None else keyring.get_keyring()

    def describe(self) -> str:
        return f"keyring ({type(self._keyring).__module__})"

    def _call(self, action: str, function: Any, *args: str) -> Any:
        from keyring.errors import KeyringError

        try:
            return function(SERVICE, *args)
        except KeyringError as exc:
            raise CredentialError(
                f"keyring {action} failed: {type(exc).__name__}",
                hint="Unlock the keyring or set credentials.backend to 'file'.",
            ) from None

    def _index(self) -> set[str]:
        raw = self._call("read", self._keyring.get_password, _INDEX_ENTRY)
        if not raw:
            return set()
        try:
            names = json.loads(raw)
        except ValueError:
            return set()
        return {name for name in names if name in SECRET_NAMES}

    def get(self, name: str) -> Secret | None:
        check_secret_name(name)
        value = self._call("read", self._keyring.get_password, name)
        return None if value is None else Secret(value)

    def set(self, name: str, value: Secret) -> None:
        check_secret_name(name)
        self._call("write", self._keyring.set_password, name, value.reveal())
        index = self._index() | {name}
        self._call(
            "write", self._keyring.set_password, _INDEX_ENTRY, json.dumps(sorted(index))
        )

    def delete(self, name: str) -> bool:
        from keyring.errors import PasswordDeleteError

        check_secret_name(name)
        try:
            self._keyring.delete_password(SERVICE, name)
            removed = True
        except PasswordDeleteError:
            removed = False
        index = self._index() - {name}
        self._call(
            "write", self._keyring.set_password, _INDEX_ENTRY, json.dumps(sorted(index))
        )
        return removed

    def names(self) -> list[str]:
        return sorted(name for name in self._index() if self.get(name) is not None)

    def close(self) -> None:
        pass
