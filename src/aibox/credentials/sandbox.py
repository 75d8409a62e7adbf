"""Credential hand-off to a sandbox at start, revocation at stop.

With Vault, ``aibox start`` mints a child token limited to the user's secrets
with the policy's TTL and hands it over as a file on a tmpfs bind-mounted
read-only at ``/run/aibox/credentials``. Without Vault, the stored git and
mirror tokens go there instead. The LLM API key goes there in both modes, for
the ``llmproxy`` user only. Nothing is passed as an environment variable.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import Timeout

from aibox.config import Config
from aibox.credentials import revocations
from aibox.credentials.broker import (
    CredentialStore,
    backend_name,
    open_store,
    read_secret,
)
from aibox.credentials.errors import VaultUnavailableError
from aibox.credentials.handoff import (
    LLM_PROXY_UID,
    SANDBOX_UID,
    HandoffDirectory,
    create_directory,
    remove_directory,
    write_public_file,
    write_secret_file,
)
from aibox.credentials.revocations import PendingRevocation
from aibox.credentials.secret import GIT_TOKEN, LLM_API_KEY, MIRROR_TOKEN
from aibox.credentials.vault import ChildToken, VaultClient, check_user_name
from aibox.errors import AiboxError, UsageError
from aibox.network.allowlist import allowlist_from_policy
from aibox.policy.effective import EffectivePolicy
from aibox.policy.units import parse_duration

log = logging.getLogger("aibox.credentials")

DEFAULT_TOKEN_TTL_SECONDS = 8 * 3600
VAULT_TOKEN_FILE = "vault-token"  # noqa: S105 (a file name)
SANDBOX_FILE = "sandbox.json"
ALLOWED_HOSTS_FILE = "allowed-hosts.json"
_SANDBOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def credential_settings(policy: EffectivePolicy) -> tuple[int, bool]:
    """Return the token TTL in seconds and ``revoke_on_stop`` from the policy.

    ``credentials.ttl`` defaults to 8h and is capped by ``credentials.max_ttl``.
    """
    section = policy.data.get("credentials")
    if not isinstance(section, dict):
        section = {}
    try:
        ttl = parse_duration(section.get("ttl") or DEFAULT_TOKEN_TTL_SECONDS)
        max_ttl = section.get("max_ttl")
        if max_ttl is not None:
            ttl = min(ttl, parse_duration(max_ttl))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"policy credentials.ttl: {exc}",
            hint="Write the TTL as, for example, 8h or 30m.",
        ) from None
    revoke_on_stop = section.get("revoke_on_stop")
    if revoke_on_stop is None:
        revoke_on_stop = True
    if not isinstance(revoke_on_stop, bool):
        raise UsageError(
            f"policy credentials.revoke_on_stop must be a boolean: {revoke_on_stop!r}",
            hint="Set revoke_on_stop: true.",
        )
    return ttl, revoke_on_stop


def allowed_hosts_from_policy(policy: EffectivePolicy, config: Config) -> list[str]:
    """Return ``host:port`` patterns for every ``network.allow`` host and port.

    The policy's allowlist is read by the same function that renders the proxy,
    DNS and firewall rules, so the helper answers exactly for reachable hosts.
    """
    allowlist = allowlist_from_policy(policy, config)
    patterns = {
        f"{host}:{port}"
        for entry in allowlist.entries
        for host in entry.hosts
        for port in entry.ports
    }
    return sorted(patterns)


def _check_sandbox_id(sandbox_id: str) -> str:
    if not _SANDBOX_ID.match(sandbox_id):
        raise UsageError(
            f"invalid sandbox id {sandbox_id!r}",
            hint="Use letters, digits, '.', '_' and '-' only.",
        )
    return sandbox_id


def _sandbox_vault_address(config: Config) -> str:
    vault = config.credentials.vault
    return vault.sandbox_address or vault.address or ""


def _hand_over_vault(
    config: Config, directory: HandoffDirectory, user: str, sandbox_id: str, ttl: int
) -> ChildToken:
    with VaultClient.login(config.credentials.vault) as client:
        llm_key = client.read_secret(user, LLM_API_KEY)
        child = client.create_child_token(user, sandbox_id, ttl)
        try:
            write_secret_file(directory, VAULT_TOKEN_FILE, child.token, SANDBOX_UID)
            if llm_key is not None:
                write_secret_file(directory, LLM_API_KEY, llm_key, LLM_PROXY_UID)
        except BaseException:
            client.revoke_accessor(child.accessor)
            raise
    return child


def _hand_over_stored(config: Config, directory: HandoffDirectory, user: str) -> None:
    with contextlib.closing(open_store(config, user)) as store:
        _write_stored(store, directory)


def _write_stored(store: CredentialStore, directory: HandoffDirectory) -> None:
    for name, uid in (
        (GIT_TOKEN, SANDBOX_UID),
        (MIRROR_TOKEN, SANDBOX_UID),
        (LLM_API_KEY, LLM_PROXY_UID),
    ):
        value = read_secret(store, name)
        if value is None:
            log.info(
                "no %s in %s; the sandbox starts without it", name, store.describe()
            )
            continue
        write_secret_file(directory, name, value, uid)


def prepare_sandbox_credentials(
    config: Config,
    policy: EffectivePolicy,
    sandbox_id: str,
    user: str,
    rootless: bool,
    *,
    keep_id: bool = False,
) -> list[str]:
    """Issue this sandbox's credentials and return the podman arguments to mount them.

    Set ``keep_id`` when a rootless sandbox runs with
    ``--userns=keep-id:uid=1000,gid=1000``, which changes who uid 1000 is on the
    host. On failure nothing stays behind: a minted token is revoked and the
    directory removed before the error propagates.
    """
    _check_sandbox_id(sandbox_id)
    check_user_name(user)
    ttl, revoke_on_stop = credential_settings(policy)
    hosts = allowed_hosts_from_policy(policy, config)
    mode = "vault" if backend_name(config) == "vault" else "stored"
    directory = create_directory(sandbox_id, rootless, keep_id)
    issued = int(time.time())
    record: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "user": user,
        "mode": mode,
        "root": str(directory.root),
        "rootless": rootless,
        "mounted": directory.mounted,
        "revoke_on_stop": revoke_on_stop,
        "issued_utc": issued,
    }
    try:
        expires: int | None = None
        if mode == "vault":
            child = _hand_over_vault(config, directory, user, sandbox_id, ttl)
            expires = issued + child.ttl_seconds
            record.update(
                accessor=child.accessor, vault_address=config.credentials.vault.address
            )
        else:
            _hand_over_stored(config, directory, user)
        write_public_file(
            directory,
            SANDBOX_FILE,
            {
                "version": 1,
                "sandbox_id": sandbox_id,
                "user": user,
                "mode": mode,
                "vault_address": _sandbox_vault_address(config)
                if mode == "vault"
                else None,
                "vault_mount": config.credentials.vault.mount,
                "issued_utc": issued,
                "expires_utc": expires,
            },
        )
        write_public_file(directory, ALLOWED_HOSTS_FILE, {"hosts": hosts})
        revocations.write_json_atomic(revocations.record_path(sandbox_id), record)
    except BaseException:
        if "accessor" in record:
            _revoke_or_queue(config, sandbox_id, record["accessor"])
        remove_directory(directory.root, rootless, directory.mounted)
        raise
    return directory.podman_args()


def _revoke_or_queue(config: Config, sandbox_id: str, accessor: str) -> bool:
    """Revoke the token behind ``accessor``; queue it when that fails."""
    address = config.credentials.vault.address or ""
    try:
        with VaultClient.login(config.credentials.vault) as client:
            client.revoke_accessor(accessor)
        return True
    except AiboxError as exc:
        kind = "unreachable" if isinstance(exc, VaultUnavailableError) else "failed"
        log.warning(
            "revocation of sandbox %s token %s, queued: %s", sandbox_id, kind, exc
        )
        revocations.enqueue(sandbox_id, accessor, address, exc.message)
        return False


def has_credential_record(sandbox_id: str) -> bool:
    """Return whether credentials issued to ``sandbox_id`` are still recorded."""
    _check_sandbox_id(sandbox_id)
    return revocations.record_path(sandbox_id).exists()


def revoke_sandbox_credentials(config: Config, sandbox_id: str) -> None:
    """Revoke the credentials issued to ``sandbox_id`` and delete their files.

    When Vault cannot be reached the revocation is queued for the next aibox
    command; the files are deleted either way.
    """
    _check_sandbox_id(sandbox_id)
    record_file = revocations.record_path(sandbox_id)
    record = revocations.read_json(record_file)
    if not isinstance(record, dict):
        log.info("no credential record for sandbox %s", sandbox_id)
        return
    accessor = record.get("accessor")
    if isinstance(accessor, str) and record.get("revoke_on_stop", True):
        _revoke_or_queue(config, sandbox_id, accessor)
    root = record.get("root")
    if isinstance(root, str):
        remove_directory(
            Path(root), bool(record.get("rootless")), bool(record.get("mounted"))
        )
    record_file.unlink(missing_ok=True)


def pending_revocations(config: Config) -> list[PendingRevocation]:
    """Return the sandbox tokens whose revocation is queued (for ``aibox status``)."""
    return revocations.load_queue()


def retry_pending_revocations(config: Config) -> list[PendingRevocation]:
    """Retry queued revocations and return those still pending.

    Vault errors stay in the queue as ``last_error``. Only a failure to read or
    write the local queue file raises. Without a queue file this returns at
    once without contacting Vault.
    """
    if not revocations.queue_path().exists():
        return []
    with revocations.queue_lock():
        pending = revocations.load_queue()
        if not pending:
            revocations.save_queue([])
            return []
        try:
            client = VaultClient.login(config.credentials.vault)
        except AiboxError as exc:
            remaining = [
                replace(entry, attempts=entry.attempts + 1, last_error=exc.message)
                for entry in pending
            ]
            revocations.save_queue(remaining)
            return remaining
        with client:
            remaining = _retry_with(client, pending)
        revocations.save_queue(remaining)
        return remaining


def _retry_with(
    client: VaultClient, pending: list[PendingRevocation]
) -> list[PendingRevocation]:
    remaining: list[PendingRevocation] = []
    for entry in pending:
        try:
            client.revoke_accessor(entry.accessor)
            log.info("revoked the queued token of sandbox %s", entry.sandbox_id)
        except AiboxError as exc:
            log.warning(
                "queued revocation for sandbox %s failed: %s", entry.sandbox_id, exc
            )
            remaining.append(
                replace(entry, attempts=entry.attempts + 1, last_error=exc.message)
            )
    return remaining


def retry_revocations_before_command(load_config: Callable[[], Config]) -> None:
    """Retry queued revocations at the start of an aibox command; never raises.

    ``load_config`` is called only when the queue is not empty, so a command
    run to repair a broken config is not blocked by it.
    """
    if not revocations.queue_path().exists():
        return
    try:
        remaining = retry_pending_revocations(load_config())
    except (AiboxError, OSError, Timeout) as exc:
        log.warning("queued sandbox token revocations not retried: %s", exc)
        return
    if remaining:
        log.warning(
            "%d sandbox token revocation(s) still queued; 'aibox status' lists them",
            len(remaining),
        )
