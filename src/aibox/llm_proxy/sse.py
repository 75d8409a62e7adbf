"""Incremental server-sent events parser that keeps each event's raw bytes.

The proxy forwards events exactly as the upstream sent them, one whole event at
a time, so it needs the bytes of each event as well as its parsed fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An event ends at a blank line; the SSE format allows LF, CRLF and CR endings.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True)
class SSEEvent:
    raw: bytes
    event: str | None
    data: str | None

    @property
    def is_comment_only(self) -> bool:
        return self.event is None and self.data is None


def parse_event_fields(text: str) -> tuple[str | None, str | None]:
    """Return the ``event`` name and the joined ``data`` lines of one event."""
    event: str | None = None
    data_lines: list[str] = []
    for line in _LINE_END.split(text):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data_lines.append(value)
    return event, ("\n".join(data_lines) if data_lines else None)


class SSEParser:
    """Split a byte stream into events; ``feed`` returns the events completed so far."""

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = bytearray()
        self._max_event_bytes = max_event_bytes

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event."""
        return bytes(self._buffer)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add ``chunk``; raise ValueError if an event outgrows ``max_event_bytes``."""
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            match = _EVENT_END.search(self._buffer)
            if match is None:
                break
            raw = bytes(self._buffer[: match.end()])
            del self._buffer[: match.end()]
            text = raw[: match.start()].decode("utf-8", errors="replace")
            event, data = parse_event_fields(text)
            events.append(SSEEvent(raw=raw, event=event, data=data))
        if len(self._buffer) > self._max_event_bytes:
            raise ValueError(
                f"server-sent event larger than {self._max_event_bytes} bytes"
            )
        return events
