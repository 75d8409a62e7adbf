"""One interface over the credential stores, chosen by config.

``credentials.backend`` picks the store: ``vault``, ``keyring``, ``file`` or
``env``. ``auto`` means Vault when ``credentials.vault.address`` is set, else the
keychain when one is usable, else the encrypted file. Reads fall back to the
``AIBOX_*`` environment variables last, so moving from a fallback store to Vault is
a config change only.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Protocol

from aibox.config import Config
from aibox.credentials.envstore import EnvironmentStore
from aibox.credentials.filestore import EncryptedFileStore
from aibox.credentials.keychain import KeychainStore, keychain_available
from aibox.credentials.secret import Secret, check_secret_name
from aibox.credentials.vault import VaultClient

log = logging.getLogger("aibox.credentials")


class CredentialStore(Protocol):
    """Get, set, delete and list the secrets aibox manages."""

    name: str

    def describe(self) -> str: ...

    def get(self, name: str) -> Secret | None: ...

    def set(self, name: str, value: Secret) -> None: ...

    def delete(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def close(self) -> None: ...


class VaultStore:
    """The user's secrets in Vault's KV v2 engine."""

    name = "vault"

    def __init__(self, client: VaultClient, user: str) -> None:
        self.client = client
        self.user = user

    def describe(self) -> str:
        return (
            f"Vault {self.client.address} ({self.client.mount}/aibox/users/{self.user})"
        )

    def get(self, name: str) -> Secret | None:
        return self.client.read_secret(self.user, name)

    def set(self, name: str, value: Secret) -> None:
        self.client.write_secret(self.user, name, value)

    def delete(self, name: str) -> bool:
        return self.client.delete_secret(self.user, name)

    def names(self) -> list[str]:
        return self.client.list_secrets(self.user)

    def close(self) -> None:
        self.client.close()


def current_user() -> str:
    return getpass.getuser()


def backend_name(config: Config) -> str:
    """Resolve ``auto`` into the backend that ``open_store`` will use."""
    chosen = config.credentials.backend
    if chosen != "auto":
        return chosen
    if config.credentials.vault.address:
        return "vault"
    if keychain_available():
        return "keyring"
    return "file"


def open_store(config: Config, user: str | None = None) -> CredentialStore:
    """Open the configured primary store (logging in to Vault when it is chosen)."""
    chosen = backend_name(config)
    if chosen == "vault":
        return VaultStore(
            VaultClient.login(config.credentials.vault), user or current_user()
        )
    if chosen == "keyring":
        return KeychainStore()
    if chosen == "file":
        store_file = config.credentials.store_file
        return EncryptedFileStore(Path(store_file).expanduser() if store_file else None)
    return EnvironmentStore()


def read_secret(store: CredentialStore, name: str) -> Secret | None:
    """Read ``name`` from ``store``, then from its ``AIBOX_*`` variable."""
    check_secret_name(name)
    value = store.get(name)
    if value is not None:
        return value
    if store.name == "env":
        return None
    value = EnvironmentStore().get(name)
    if value is not None:
        log.info(
            "credential %s comes from the environment, not %s", name, store.describe()
        )
    return value
