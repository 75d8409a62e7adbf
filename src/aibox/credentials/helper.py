"""``aibox-credential-helper``: git's credential helper inside a sandbox.

    aibox-credential-helper get|store|erase   the git-credential protocol
    aibox-credential-helper secret NAME       print one secret (mirror-token, ...)
    aibox-credential-helper pre-commit        scan staged changes for tokens

Everything comes from the read-only tmpfs mount at ``/run/aibox/credentials``
(``AIBOX_CREDENTIALS_DIR`` overrides it). With Vault, ``get`` returns the
sandbox's own short-lived Vault token, which internal git servers validate with
a Vault token lookup. Before it returns the token, the helper looks the token
up in Vault to check that it is still valid. When Vault is unreachable it trusts
the expiry that the host recorded at start, so a brief outage does not break
git. Every helper process reads that state from the mount, so no cache daemon is
needed and the helper never writes a token anywhere. Stdout carries only the
protocol response.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from aibox.credentials.errors import CredentialError, VaultUnavailableError
from aibox.credentials.hosts import ANSWERED_PROTOCOLS, DEFAULT_PORTS, host_allowed
from aibox.credentials.protocol import (
    MAX_REQUEST_BYTES,
    CredentialRequest,
    format_response,
    parse_request,
)
from aibox.credentials.sandbox_vault import SandboxVault
from aibox.credentials.secret import GIT_TOKEN, Secret, check_secret_name
from aibox.errors import AiboxError, UsageError

PROGRAM = "aibox-credential-helper"
DEFAULT_DIR = "/run/aibox/credentials"
LOOKUP_TIMEOUT_SECONDS = 3.0


def credentials_dir() -> Path:
    return Path(os.environ.get("AIBOX_CREDENTIALS_DIR") or DEFAULT_DIR)


def _note(message: str) -> None:
    sys.stderr.write(f"{PROGRAM}: {message}\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CredentialError(
            f"{path} not found: no aibox credentials are mounted",
            hint="Start the sandbox with 'aibox start'.",
        ) from None
    except (OSError, ValueError) as exc:
        raise CredentialError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CredentialError(f"{path} is not a JSON object")
    return data


def _read_secret_file(path: Path) -> Secret | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror}") from None
    return Secret(value) if value else None


@dataclass(frozen=True)
class SandboxContext:
    """The sandbox description written by the host at start, and the allowed hosts."""

    directory: Path
    mode: str
    user: str
    vault_address: str
    vault_mount: str
    expires_utc: int | None
    allowed_hosts: list[str]

    @classmethod
    def load(cls, directory: Path) -> SandboxContext:
        sandbox = _read_json(directory / "sandbox.json")
        hosts = _read_json(directory / "allowed-hosts.json").get("hosts", [])
        expires = sandbox.get("expires_utc")
        return cls(
            directory=directory,
            mode=str(sandbox.get("mode", "")),
            user=str(sandbox.get("user", "")),
            vault_address=str(sandbox.get("vault_address") or ""),
            vault_mount=str(sandbox.get("vault_mount") or "secret"),
            expires_utc=expires if isinstance(expires, int) else None,
            allowed_hosts=[host for host in hosts if isinstance(host, str)],
        )

    def vault_client(self, token: Secret) -> SandboxVault:
        return SandboxVault(
            self.vault_address, token, self.vault_mount, timeout=LOOKUP_TIMEOUT_SECONDS
        )


def _parse_expire_time(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _valid_vault_token(context: SandboxContext) -> tuple[Secret, int | None] | None:
    """Return the sandbox token and its expiry if it is still usable."""
    token = _read_secret_file(context.directory / "vault-token")
    if token is None:
        _note("the sandbox has no Vault token")
        return None
    now = int(time.time())
    try:
        with context.vault_client(token) as client:
            data = client.lookup_self()
    except VaultUnavailableError as exc:
        if context.expires_utc is not None and now < context.expires_utc:
            _note(f"{exc.message}; using the sandbox token until it expires")
            return token, context.expires_utc
        _note(f"{exc.message}, and the sandbox token has expired")
        return None
    except CredentialError:
        _note("the sandbox token is no longer valid (revoked or expired)")
        return None
    expires = _parse_expire_time(data.get("expire_time")) or context.expires_utc
    return token, expires


def answer_get(request: CredentialRequest, context: SandboxContext) -> dict[str, str]:
    """Return the attributes for a ``get``, or none for a host outside the allowlist."""
    if request.protocol not in ANSWERED_PROTOCOLS:
        return {}
    default_port = DEFAULT_PORTS[request.protocol]
    if not host_allowed(request.host, context.allowed_hosts, default_port):
        _note(f"no credentials for {request.host or 'an empty host'}: not allowlisted")
        return {}
    username = request.get("username") or context.user or "aibox"
    if context.mode == "vault":
        found = _valid_vault_token(context)
        if found is None:
            return {}
        token, expires = found
        answer = {"username": username, "password": token.reveal()}
        if expires is not None:
            answer["password_expiry_utc"] = str(expires)
        return answer
    stored = _read_secret_file(context.directory / GIT_TOKEN)
    if stored is None:
        _note("no git token was handed to this sandbox")
        return {}
    return {"username": username, "password": stored.reveal()}


def _read_request(stdin: BinaryIO) -> CredentialRequest:
    return parse_request(stdin.read(MAX_REQUEST_BYTES + 1))


def print_secret(name: str, context: SandboxContext, stdout: TextIO) -> int:
    """Print ``name`` for tools that need it: from Vault, or from the mount."""
    check_secret_name(name)
    if context.mode == "vault":
        token = _read_secret_file(context.directory / "vault-token")
        if token is None:
            raise CredentialError("the sandbox has no Vault token")
        with context.vault_client(token) as client:
            value = client.read_secret(context.user, name)
    else:
        value = _read_secret_file(context.directory / name)
    if value is None:
        raise CredentialError(
            f"no {name} is available in this sandbox",
            hint=f"Add it on the host with 'aibox auth add {name}'.",
        )
    stdout.write(value.reveal() + "\n")
    return 0


def run(argv: list[str], stdin: BinaryIO, stdout: BinaryIO, text_out: TextIO) -> int:
    if not argv:
        raise UsageError(
            "missing action",
            hint=f"Run '{PROGRAM} get', 'store', 'erase' or 'secret NAME'.",
        )
    action = argv[0]
    if action == "pre-commit":
        from aibox.credentials.scanner import run_pre_commit

        return run_pre_commit(credentials_dir())
    if action == "secret":
        if len(argv) != 2:
            raise UsageError(
                "secret needs one NAME", hint=f"Run '{PROGRAM} secret mirror-token'."
            )
        return print_secret(argv[1], SandboxContext.load(credentials_dir()), text_out)
    if action not in ("get", "store", "erase"):
        # git documents that helpers ignore actions they do not know.
        return 0
    request = _read_request(stdin)
    if action != "get":
        return 0
    answer = answer_get(request, SandboxContext.load(credentials_dir()))
    stdout.write(format_response(answer))
    stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the helper; print one error line on stderr instead of a traceback."""
    arguments = sys.argv[1:] if argv is None else argv
    try:
        code = run(arguments, sys.stdin.buffer, sys.stdout.buffer, sys.stdout)
    except AiboxError as exc:
        _note(f"error: {exc.message}")
        if exc.hint:
            _note(f"hint: {exc.hint}")
        code = exc.exit_code
    except OSError as exc:
        _note(f"error: {exc.strerror or exc}")
        code = 1
    except KeyboardInterrupt:
        code = 130
    return code
