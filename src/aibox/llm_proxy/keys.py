"""The upstream API key: loaded from a file or Vault and reloaded on change.

The key is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it.
A file source is reloaded when its inode, size or modification time changes; both
sources reload on SIGHUP. A failed reload keeps the last good key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aibox.errors import AiboxError, UsageError

log = logging.getLogger(__name__)


class Secret:
    """A string that is masked wherever it could be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class KeySourceError(AiboxError):
    """The key source cannot provide a key."""


class KeySource(Protocol):
    @property
    def description(self) -> str: ...

    def load(self) -> Secret:
        """Read the key; raise KeySourceError when it is missing or empty."""

    def changed(self) -> bool:
        """Return True when the source may hold a different key than last loaded."""


@dataclass
class FileKeySource:
    """A key in a file, typically on a tmpfs readable only by the proxy's user."""

    path: Path
    _stamp: tuple[int, int, int] | None = None

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def load(self) -> Secret:
        stamp = self._current_stamp()
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeySourceError(
                f"cannot read the LLM API key file {self.path}: {exc.strerror}",
                hint="Check that the credentials were provisioned for this sandbox "
                "and that the file is readable by the proxy's user.",
            ) from None
        value = text.strip()
        if not value or any(ch.isspace() for ch in value):
            raise KeySourceError(
                f"the LLM API key file {self.path} is empty or has more than one word",
                hint="Write the key alone, on one line.",
            )
        self._stamp = stamp
        return Secret(value)

    def changed(self) -> bool:
        return self._current_stamp() != self._stamp


@dataclass
class VaultKeySource:
    """A key in a Vault (or OpenBao) KV version 2 secret."""

    address: str
    token_file: Path
    mount: str
    secret_path: str
    field: str = "api_key"

    @property
    def description(self) -> str:
        return f"Vault secret {self.mount}/{self.secret_path}"

    def load(self) -> Secret:
        import hvac

        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KeySourceError(
                f"cannot read the Vault token file {self.token_file}: {exc.strerror}",
                hint="Check that the sandbox token was provisioned.",
            ) from None
        client = hvac.Client(url=self.address, token=token, timeout=10)
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=self.secret_path,
                mount_point=self.mount,
                raise_on_deleted_version=True,
            )
            value = response["data"]["data"][self.field]
        except Exception as exc:  # hvac raises many types; the key is never in them
            raise KeySourceError(
                f"reading {self.description} field {self.field!r} from "
                f"{self.address} failed: {type(exc).__name__}",
                hint="Check the Vault address, token and secret path.",
            ) from None
        finally:
            client.adapter.close()
        if not isinstance(value, str) or not value.strip():
            raise KeySourceError(
                f"{self.description} field {self.field!r} is empty",
                hint="Store the key with 'aibox auth add llm-api-key'.",
            )
        return Secret(value.strip())

    def changed(self) -> bool:
        return False


class KeyStore:
    """The current key and its source; reloads keep the last good key on failure."""

    def __init__(self, source: KeySource) -> None:
        self.source = source
        self._key = source.load()
        self.reloads = 0

    @property
    def key(self) -> Secret:
        return self._key

    def reload(self, reason: str) -> bool:
        """Load the key again; return True when a key was loaded."""
        try:
            self._key = self.source.load()
        except KeySourceError as exc:
            log.warning("keeping the previous LLM API key: %s (%s)", exc, reason)
            return False
        self.reloads += 1
        log.info(
            "reloaded the LLM API key from %s (%s)", self.source.description, reason
        )
        return True

    def reload_if_changed(self) -> bool:
        if not self.source.changed():
            return False
        return self.reload("file changed")


def key_source_from_options(
    key_file: str | None,
    vault_address: str | None,
    vault_token_file: str | None,
    vault_mount: str,
    vault_path: str | None,
    vault_field: str,
) -> KeySource:
    """Choose the key source from the command-line options."""
    if vault_address:
        if not vault_token_file or not vault_path:
            raise UsageError(
                "--vault-addr needs --vault-token-file and --vault-path",
                hint="Name the token file and the KV path of the LLM key.",
            )
        return VaultKeySource(
            vault_address, Path(vault_token_file), vault_mount, vault_path, vault_field
        )
    if not key_file:
        raise UsageError(
            "no LLM API key source given",
            hint="Pass --key-file PATH or --vault-addr with --vault-path.",
        )
    return FileKeySource(Path(key_file))
