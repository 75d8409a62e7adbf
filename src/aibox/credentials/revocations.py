"""Sandbox token records and the queue of revocations that failed.

A record per sandbox keeps the token's accessor (never the token) so ``aibox
stop`` can revoke it. When Vault is unreachable at stop, the accessor moves to
``pending-revocations.json`` and the next aibox command retries it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from aibox import paths

log = logging.getLogger("aibox.credentials")


def state_dir() -> Path:
    return paths.user_state_dir() / "credentials"


def queue_path() -> Path:
    return state_dir() / "pending-revocations.json"


def record_path(sandbox_id: str) -> Path:
    return state_dir() / "sandboxes" / f"{sandbox_id}.json"


@dataclass(frozen=True)
class PendingRevocation:
    """A sandbox token that still has to be revoked in Vault."""

    sandbox_id: str
    accessor: str
    vault_address: str
    queued_utc: int
    attempts: int
    last_error: str


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """Return the parsed file, or None when it is missing or unreadable JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable state file %s: %s", path, exc)
        return None


def _lock() -> FileLock:
    state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileLock(str(queue_path()) + ".lock", timeout=10)


def _parse(entry: Any) -> PendingRevocation | None:
    try:
        return PendingRevocation(
            sandbox_id=str(entry["sandbox_id"]),
            accessor=str(entry["accessor"]),
            vault_address=str(entry["vault_address"]),
            queued_utc=int(entry["queued_utc"]),
            attempts=int(entry["attempts"]),
            last_error=str(entry["last_error"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def load_queue() -> list[PendingRevocation]:
    data = read_json(queue_path())
    if not isinstance(data, list):
        return []
    return [item for item in map(_parse, data) if item is not None]


def save_queue(entries: list[PendingRevocation]) -> None:
    if entries:
        write_json_atomic(queue_path(), [asdict(entry) for entry in entries])
    else:
        queue_path().unlink(missing_ok=True)


def enqueue(sandbox_id: str, accessor: str, vault_address: str, error: str) -> None:
    with _lock():
        entries = [entry for entry in load_queue() if entry.accessor != accessor]
        entries.append(
            PendingRevocation(
                sandbox_id=sandbox_id,
                accessor=accessor,
                vault_address=vault_address,
                queued_utc=int(time.time()),
                attempts=1,
                last_error=error,
            )
        )
        save_queue(entries)


def queue_lock() -> FileLock:
    return _lock()
