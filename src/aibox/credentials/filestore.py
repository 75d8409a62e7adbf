"""An encrypted credential file: AES-256-GCM with a key derived by scrypt.

The key comes from ``AIBOX_STORE_PASSPHRASE`` when it is set, else from a random
machine secret kept beside the store (mode 0600). The machine secret protects a
copied or backed-up store file. It does not protect against the same user, who
can read the secret next to the store, so set a passphrase for that. Every write
picks a new salt and nonce and replaces the file atomically under a lock, so a
failed read or write leaves the previous file intact.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from filelock import FileLock

from aibox import paths
from aibox.credentials.errors import CredentialError
from aibox.credentials.secret import Secret, check_secret_name

PASSPHRASE_VARIABLE = "AIBOX_STORE_PASSPHRASE"  # noqa: S105 (a variable name)
FORMAT_NAME = "aibox-credential-store"
FORMAT_VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_AAD = b"aibox-credential-store-v1"


def default_store_path() -> Path:
    return paths.user_state_dir() / "credentials.enc"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, field: str, path: Path) -> bytes:
    if not isinstance(text, str):
        raise _corrupted(path, f"field {field!r} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _corrupted(path, f"field {field!r} is not base64") from None


def _corrupted(path: Path, detail: str) -> CredentialError:
    return CredentialError(
        f"credential store {path} is corrupted: {detail}",
        hint="Restore the file from a backup, or remove it and add the secrets again.",
    )


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 through a temporary file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialError(
            f"{path} has mode {mode:04o}, readable by other users",
            hint=f"Run 'chmod 600 {path}'.",
        )


class EncryptedFileStore:
    """Credentials in one AES-GCM encrypted JSON file."""

    name = "file"

    def __init__(
        self, path: Path | None = None, passphrase: Secret | None = None
    ) -> None:
        self.path = path or default_store_path()
        self._passphrase = passphrase
        self._lock = FileLock(str(self.path) + ".lock", timeout=10)

    def describe(self) -> str:
        return f"encrypted file {self.path}"

    def _key_material(self) -> bytes:
        if self._passphrase is not None:
            return self._passphrase.reveal().encode()
        from_environment = os.environ.get(PASSPHRASE_VARIABLE)
        if from_environment:
            return from_environment.encode()
        return self._machine_secret()

    def _machine_secret(self) -> bytes:
        secret_path = self.path.with_name(self.path.name + ".key")
        if not secret_path.exists():
            _write_atomic(secret_path, secrets.token_hex(32).encode())
        _check_private(secret_path)
        return secret_path.read_bytes().strip()

    def _derive(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        kdf = Scrypt(salt=salt, length=32, n=n, r=r, p=p)
        return kdf.derive(self._key_material())

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        _check_private(self.path)
        try:
            document = json.loads(self.path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            raise _corrupted(self.path, "not JSON") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
            raise _corrupted(self.path, f"not an {FORMAT_NAME} file")
        if document.get("version") != FORMAT_VERSION:
            raise _corrupted(
                self.path, f"unsupported version {document.get('version')!r}"
            )
        kdf = document.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise _corrupted(self.path, "unknown key derivation")
        try:
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        except (KeyError, TypeError, ValueError):
            raise _corrupted(self.path, "invalid scrypt parameters") from None
        if not (2**10 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
            raise _corrupted(self.path, "scrypt parameters out of range")
        salt = _unb64(kdf.get("salt"), "kdf.salt", self.path)
        nonce = _unb64(document.get("nonce"), "nonce", self.path)
        ciphertext = _unb64(document.get("ciphertext"), "ciphertext", self.path)
        if len(nonce) != 12:
            raise _corrupted(self.path, "nonce must be 12 bytes")
        try:
            key = self._derive(salt, n, r, p)
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, _AAD)
        except InvalidTag:
            raise CredentialError(
                f"cannot decrypt credential store {self.path}: "
                "wrong passphrase or modified file",
                hint=f"Set {PASSPHRASE_VARIABLE} to the passphrase used to write it.",
            ) from None
        try:
            secrets_map = json.loads(plaintext)["secrets"]
        except (ValueError, KeyError, TypeError):
            raise _corrupted(self.path, "decrypted content is not valid") from None
        if not isinstance(secrets_map, dict) or not all(
            isinstance(value, str) for value in secrets_map.values()
        ):
            raise _corrupted(self.path, "decrypted content is not valid")
        return {str(key): value for key, value in secrets_map.items()}

    def _save(self, secrets_map: dict[str, str]) -> None:
        salt = os.urandom(16)
        nonce = os.urandom(12)
        key = self._derive(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        plaintext = json.dumps({"secrets": secrets_map}).encode()
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kdf": {
                "name": "scrypt",
                "salt": _b64(salt),
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
            },
            "nonce": _b64(nonce),
            "ciphertext": _b64(AESGCM(key).encrypt(nonce, plaintext, _AAD)),
        }
        _write_atomic(self.path, json.dumps(document, indent=1).encode())

    def get(self, name: str) -> Secret | None:
        check_secret_name(name)
        value = self._load().get(name)
        return None if value is None else Secret(value)

    def set(self, name: str, value: Secret) -> None:
        check_secret_name(name)
        with self._lock:
            current = self._load()
            current[name] = value.reveal()
            self._save(current)

    def delete(self, name: str) -> bool:
        check_secret_name(name)
        with self._lock:
            current = self._load()
            if name not in current:
                return False
            del current[name]
            self._save(current)
            return True

    def names(self) -> list[str]:
        return sorted(self._load())

    def close(self) -> None:
        pass
