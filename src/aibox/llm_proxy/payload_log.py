"""The payload log: one JSON line per exchange, written off the response path.

Handlers hand a finished :class:`Exchange` to :meth:`PayloadLog.submit`, which
only puts it on a bounded queue. A writer thread turns exchanges into records and
appends them, so a slow disk delays the log and never a response. When the queue
is full the record is dropped and counted, and the count is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_QUEUE_SIZE = 10_000


@dataclass
class BodyCapture:
    """The first bytes of a body, its full size and its running SHA-256."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.digest.update(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)


@dataclass
class Exchange:
    """Everything recorded about one request; filled in as the exchange runs."""

    request_id: str
    sandbox_id: str
    user: str
    method: str
    path: str
    started: float  # time.time() at arrival
    started_monotonic: float
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    error: str | None = None
    request: BodyCapture | None = None
    response: BodyCapture | None = None
    reassembled: dict[str, Any] | None = None
    reassembled_truncated: bool = False
    usage: dict[str, Any] | None = None
    ttfb_seconds: float | None = None
    latency_seconds: float | None = None
    events: int | None = None


def _body_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _body_fields(prefix: str, capture: BodyCapture | None) -> dict[str, Any]:
    if capture is None:
        return {f"{prefix}_bytes": 0}
    return {
        f"{prefix}_bytes": capture.size,
        f"{prefix}_body": _body_text(bytes(capture.kept)),
        f"{prefix}_body_truncated": capture.truncated,
        f"{prefix}_body_sha256": capture.digest.hexdigest(),
    }


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def build_record(exchange: Exchange, max_body_bytes: int) -> dict[str, Any]:
    """Turn an exchange into the JSON-ready payload log record.

    For a stream, ``response_body`` is the reassembled response (cut at
    ``max_body_bytes``) and ``response_body_sha256`` is the hash of the raw event
    stream as sent to the client.
    """
    record: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exchange.started))
        + f".{int(exchange.started * 1000) % 1000:03d}Z",
        "request_id": exchange.request_id,
        "sandbox_id": exchange.sandbox_id,
        "user": exchange.user,
        "method": exchange.method,
        "path": exchange.path,
        "provider": exchange.provider,
        "model": exchange.model,
        "stream": exchange.stream,
        "status": exchange.status,
        "error": exchange.error,
        "usage": exchange.usage,
        "latency_ms": _milliseconds(exchange.latency_seconds),
        "ttfb_ms": _milliseconds(exchange.ttfb_seconds),
    }
    record.update(_body_fields("request", exchange.request))
    record.update(_body_fields("response", exchange.response))

    if exchange.reassembled is not None:
        text = json.dumps(exchange.reassembled, ensure_ascii=False)
        truncated = exchange.reassembled_truncated or len(text) > max_body_bytes
        record["response_body"] = text[:max_body_bytes]
        record["response_body_truncated"] = truncated
        record["response_events"] = exchange.events
    return record


class PayloadLog:
    """Append-only JSON lines file fed from a queue by one writer thread."""

    def __init__(self, path: Path, max_body_bytes: int) -> None:
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[Exchange | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._file: Any = None

    def open(self) -> None:
        """Open the file (mode 0640 when created) and start the writer thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._file = os.fdopen(descriptor, "a", encoding="utf-8")
        self._thread = threading.Thread(
            target=self._run, name="payload-log-writer", daemon=True
        )
        self._thread.start()

    def submit(self, exchange: Exchange) -> None:
        """Queue an exchange without blocking; drop it when the queue is full."""
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "payload log queue full, %d records dropped so far; "
                    "check that %s is writable and not on a slow disk",
                    self.dropped,
                    self.path,
                )

    def close(self) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self._file.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty() and batch[-1] is not None:
                batch.append(self._queue.get_nowait())
            self._write(item for item in batch if item is not None)
            if batch[-1] is None:
                return

    def _write(self, exchanges: Any) -> None:
        lines = []
        for exchange in exchanges:
            record = build_record(exchange, self.max_body_bytes)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if not lines:
            return
        try:
            self._file.write("".join(lines))
            self._file.flush()
            self.written += len(lines)
        except OSError as exc:
            self.dropped += len(lines)
            log.error("writing the payload log %s failed: %s", self.path, exc)
