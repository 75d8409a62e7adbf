"""The append-only, hash-chained decision log (``decisions.jsonl``).

Each record carries the sha256 of the previous record (``prev_hash``) and of itself
(``hash``, over the canonical JSON of every other field), and sequence ids count up
from 1 across rotated files. ``verify_log`` therefore detects an edited, deleted or
reordered line. Writers hold a file lock next to the log while they read the last
record and append, so concurrent ``aibox`` processes never interleave or lose
records.

When the active file would grow past the size limit it is renamed to
``decisions.jsonl.<first sequence id>`` and a new file continues the same chain.
aibox never deletes rotated files; shipping and retention belong to the log
collector.

NOTE: the chain proves order and integrity against edits that do not recompute it.
Someone able to rewrite the whole file can rebuild every hash, and records cut
from the end leave a shorter valid chain. Shipping records off the host as they
are written is the defence against both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock

from aibox import paths
from aibox.errors import AiboxError

log = logging.getLogger(__name__)

LOG_NAME = "decisions.jsonl"
GENESIS_HASH = "0" * 64
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_BYTES_VARIABLE = "AIBOX_DECISION_LOG_MAX_BYTES"
LOCK_TIMEOUT_SECONDS = 30
RECORD_FIELDS = (
    "seq",
    "ts",
    "kind",
    "user",
    "workspace",
    "sandbox_id",
    "image",
    "policy_hash",
    "input",
    "decision",
    "rule",
    "reason",
    "prev_hash",
    "hash",
)
_warned_fallback: set[str] = set()


def record_hash(record: dict[str, Any]) -> str:
    """Return the sha256 hex of the canonical JSON of ``record`` without ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_log_path() -> Path:
    """Return the shared log, or the per-user fallback (with a warning) if needed."""
    primary = paths.log_dir() / LOG_NAME
    if _writable(primary):
        return primary
    fallback = paths.user_state_dir() / LOG_NAME
    if str(primary) not in _warned_fallback:
        _warned_fallback.add(str(primary))
        log.warning(
            "decision log %s is not writable; writing to %s instead. Add your user "
            "to the aibox group or run 'aibox setup --system' to fix it.",
            primary,
            fallback,
        )
    return fallback


def _writable(path: Path) -> bool:
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    lock = path.with_name(path.name + ".lock")
    return all(not item.exists() or os.access(item, os.W_OK) for item in (path, lock))


def _max_bytes() -> int:
    text = os.environ.get(MAX_BYTES_VARIABLE)
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1024:
        raise AiboxError(
            f"invalid {MAX_BYTES_VARIABLE} {text!r}: expected bytes, at least 1024",
            hint=f"Unset {MAX_BYTES_VARIABLE} or set a number such as 10485760.",
        )
    return value


@dataclass
class DecisionLog:
    """One decision log: the active file plus its rotated predecessors."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def files(self) -> list[Path]:
        """Return the rotated files, oldest first, then the active file if present."""
        rotated = sorted(
            candidate
            for candidate in self.path.parent.glob(self.path.name + ".*")
            if candidate.suffix[1:].isdigit()
        )
        return rotated + ([self.path] if self.path.exists() else [])

    def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one record built from ``fields``; return it with seq and hashes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(
            str(self.lock_path), timeout=LOCK_TIMEOUT_SECONDS, mode=0o660
        )
        try:
            with lock:
                return self._append_locked(fields)
        except filelock.Timeout:
            raise AiboxError(
                f"timed out after {LOCK_TIMEOUT_SECONDS} s waiting for lock "
                f"{self.lock_path}",
                hint="Another aibox process holds the decision log lock; retry.",
            ) from None
        except OSError as exc:
            raise AiboxError(
                f"cannot write decision log {self.path}: {exc.strerror}",
                hint="Check the permissions of the log directory.",
            ) from None

    def _append_locked(self, fields: dict[str, Any]) -> dict[str, Any]:
        last = self.last_record()
        record: dict[str, Any] = {
            "seq": 1 if last is None else int(last["seq"]) + 1,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            **fields,
            # The writer's real uid, because the "user" field comes from the
            # login name in the environment, which the caller controls.
            "uid": os.getuid(),
            "prev_hash": GENESIS_HASH if last is None else last["hash"],
        }
        record["hash"] = record_hash(record)
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
            self._rotate()
        created = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
        try:
            if created:
                # Group members (the aibox group) append to the shared log too.
                os.fchmod(descriptor, 0o660)
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return record

    def _rotate(self) -> None:
        first = next(_records_in(self.path), None)
        if first is None:
            return
        _, record = first
        target = self.path.with_name(f"{self.path.name}.{int(record['seq']):010d}")
        os.rename(self.path, target)

    def last_record(self) -> dict[str, Any] | None:
        """Return the newest record, reading only the tail of the newest file."""
        for candidate in reversed(self.files()):
            line = _last_line(candidate)
            if line is None:
                continue
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                raise AiboxError(
                    f"the last line of decision log {candidate} is not valid JSON",
                    hint="Run 'aibox policy verify-log' and keep the file for review.",
                ) from None
            return record
        return None

    def records(self) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        """Yield ``(file, line number, record)`` for every record, oldest first."""
        for candidate in self.files():
            for number, record in _records_in(candidate):
                yield candidate, number, record

    def find(self, seq: int) -> dict[str, Any] | None:
        for _, _, record in self.records():
            if record.get("seq") == seq:
                return record
        return None


def _records_in(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise AiboxError(
                    f"decision log {path} line {number} is not valid JSON",
                    hint="Run 'aibox policy verify-log' and keep the file for review.",
                ) from None
            yield number, record


def _last_line(path: Path) -> str | None:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        chunk = 4096
        while True:
            start = max(0, end - chunk)
            handle.seek(start)
            data = handle.read(end - start).rstrip(b"\n")
            if not data:
                return None
            cut = data.rfind(b"\n")
            if cut >= 0 or start == 0:
                return data[cut + 1 :].decode("utf-8")
            chunk *= 4


def open_log(path: Path | None = None) -> DecisionLog:
    return DecisionLog(path or default_log_path(), _max_bytes())


def record_decision(
    kind: str,
    *,
    user: str,
    workspace: str | Path | None,
    sandbox_id: str | None,
    image: str | None,
    policy_hash: str | None,
    input: dict[str, Any],
    decision: str,
    rule: str,
    reason: str,
) -> dict[str, Any]:
    """Append one decision record to the decision log and return it."""
    return open_log().append(
        {
            "kind": kind,
            "user": user,
            "workspace": None if workspace is None else str(workspace),
            "sandbox_id": sandbox_id,
            "image": image,
            "policy_hash": policy_hash,
            "input": input,
            "decision": decision,
            "rule": rule,
            "reason": reason,
        }
    )


@dataclass
class VerifyResult:
    """The result of ``verify_log``: record count, files and any chain problem."""

    count: int = 0
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(decision_log: DecisionLog) -> VerifyResult:
    """Check every record's hash, sequence id and link to its predecessor.

    The writers' lock is held while reading when it can be taken, so a rotation
    cannot happen halfway through. A reader without write access reads unlocked.
    """
    lock = filelock.FileLock(str(decision_log.lock_path), timeout=LOCK_TIMEOUT_SECONDS)
    try:
        with lock:
            return _verify_unlocked(decision_log)
    except (OSError, filelock.Timeout):
        return _verify_unlocked(decision_log)


def _verify_unlocked(decision_log: DecisionLog) -> VerifyResult:
    result = VerifyResult(files=decision_log.files())
    previous_hash = GENESIS_HASH
    expected_seq = 1
    try:
        for path, number, record in decision_log.records():
            where = f"{path} line {number}"
            problem = _check_record(record, previous_hash, expected_seq)
            if problem:
                result.problems.append(f"{where}: {problem}")
                break
            result.count += 1
            previous_hash = record["hash"]
            expected_seq += 1
    except AiboxError as exc:
        result.problems.append(exc.message)
    return result


def _check_record(record: Any, previous_hash: str, expected_seq: int) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    if record["hash"] != record_hash(record):
        return f"record {record['seq']} was modified (its hash does not match)"
    if record["seq"] != expected_seq:
        return (
            f"sequence id {record['seq']} where {expected_seq} was expected "
            "(a record was deleted or reordered)"
        )
    if record["prev_hash"] != previous_hash:
        return (
            f"record {record['seq']} does not link to the record before it "
            "(a record was deleted, inserted or reordered)"
        )
    return None


_SANDBOX_EVENTS = {
    "container_start": (
        "policy.effective",
        "the effective policy passed the tighten-only merge and every org Rego "
        "rule, so the sandbox was started with its runtime and resource settings",
    ),
    "container_stop": (
        "lifecycle.stop",
        "the sandbox was stopped on request: container removed, credentials revoked",
    ),
}


def record_sandbox_event(
    kind: str,
    *,
    sandbox_id: str,
    user: str,
    workspace: str,
    policy_hash: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    """Record a ``container_start`` or ``container_stop`` for the lifecycle module.

    ``details`` becomes the record's input; its ``image`` key fills the image field.
    """
    rule, reason = _SANDBOX_EVENTS[kind]
    data = dict(details)
    image = data.pop("image", None)
    return record_decision(
        kind,
        user=user,
        workspace=workspace,
        sandbox_id=sandbox_id,
        image=None if image is None else str(image),
        policy_hash=policy_hash or None,
        input=data,
        decision="allow",
        rule=rule,
        reason=reason,
    )
