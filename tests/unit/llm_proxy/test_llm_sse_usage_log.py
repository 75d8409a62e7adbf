"""SSE parsing, stream reassembly, usage and payload records."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibox.llm_proxy.payload_log import BodyCapture, Exchange, PayloadLog, build_record
from aibox.llm_proxy.routes import Provider
from aibox.llm_proxy.sse import SSEParser
from aibox.llm_proxy.usage import StreamAssembler, total_tokens, usage_from_body


def test_parser_splits_across_chunks() -> None:
    parser = SSEParser(max_event_bytes=1024)

    assert parser.feed(b'event: a\ndata: {"x"') == []
    events = parser.feed(b": 1}\n\ndata: 2\r\n\r\n: comment\n\n")

    assert [e.event for e in events] == ["a", None, None]
    assert [e.data for e in events] == ['{"x": 1}', "2", None]
    assert events[0].raw == b'event: a\ndata: {"x": 1}\n\n'
    assert events[2].is_comment_only


def test_parser_joins_data_lines() -> None:
    [event] = SSEParser(1024).feed(b"data: a\ndata: b\n\n")

    assert event.data == "a\nb"


def test_parser_rejects_oversized_event() -> None:
    with pytest.raises(ValueError, match="larger than 16 bytes"):
        SSEParser(16).feed(b"data: " + b"x" * 32)


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(1, 7))
def test_parser_raw_bytes_round_trip(parts: list[bytes], cut: int) -> None:
    stream = b"".join(
        b"data: " + p.replace(b"\n", b"").replace(b"\r", b"") + b"\n\n" for p in parts
    )
    parser = SSEParser(1 << 20)
    events = []
    for start in range(0, len(stream), cut):
        events += parser.feed(stream[start : start + cut])

    assert b"".join(e.raw for e in events) == stream
    assert len(events) == len(parts)


def feed_all(assembler: StreamAssembler, events: list[dict[str, Any]]) -> None:
    for event in events:
        assembler.feed(event.get("type"), event)


def test_anthropic_reassembly_and_usage() -> None:
    assembler = StreamAssembler(Provider.ANTHROPIC, max_chars=1000)
    feed_all(
        assembler,
        [
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "content": [],
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": "ls"},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 12},
            },
        ],
    )

    content = assembler.content()
    assert content["content"][0]["text"] == "Hi"
    assert content["content"][1]["input_json"] == '{"a":1}'
    assert content["stop_reason"] == "tool_use"
    assert assembler.usage == {"input_tokens": 9, "output_tokens": 12}
    assert total_tokens(Provider.ANTHROPIC, assembler.usage) == 21


def test_chat_reassembly_with_tool_calls() -> None:
    assembler = StreamAssembler(Provider.OPENAI, max_chars=1000)
    call = {"index": 0, "function": {"name": "f", "arguments": "{}"}}
    feed_all(
        assembler,
        [
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "A"}}]},
            {
                "id": "c",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [call]},
                        "finish_reason": "tool_calls",
                    }
                ],
            },
            {
                "id": "c",
                "choices": [],
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 4,
                    "total_tokens": 7,
                },
            },
        ],
    )

    choice = assembler.content()["choices"][0]
    assert choice["content"] == "A"
    assert choice["tool_calls"] == [{"arguments": "{}", "name": "f"}]
    assert choice["finish_reason"] == "tool_calls"
    assert total_tokens(Provider.OPENAI, assembler.usage) == 7


def test_reassembly_truncates_text() -> None:
    assembler = StreamAssembler(Provider.OPENAI, max_chars=3)
    feed_all(assembler, [{"choices": [{"index": 0, "delta": {"content": "abcdef"}}]}])

    assert assembler.content()["choices"][0]["content"] == "abc"
    assert assembler.truncated is True


def test_usage_from_body_variants() -> None:
    assert usage_from_body({"usage": {"total_tokens": 5}}) == {"total_tokens": 5}
    assert usage_from_body({"usage": "nope"}) is None
    assert usage_from_body([1]) is None
    assert total_tokens(Provider.OPENAI, {"input_tokens": 2, "output_tokens": 3}) == 5
    assert total_tokens(Provider.OPENAI, None) is None


def make_exchange() -> Exchange:
    return Exchange(
        request_id="r1",
        sandbox_id="s",
        user="u",
        method="POST",
        path="/v1/messages",
        started=time.time(),
        started_monotonic=time.monotonic(),
    )


def test_record_truncates_and_hashes_body() -> None:
    exchange = make_exchange()
    exchange.request = BodyCapture(limit=4)
    exchange.request.add(b"0123")
    exchange.request.add(b"456789")

    record = build_record(exchange, max_body_bytes=4)

    assert record["request_body"] == "0123"
    assert record["request_body_truncated"] is True
    assert record["request_bytes"] == 10
    assert record["request_body_sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert record["timestamp"].endswith("Z")


def test_payload_log_writes_json_lines(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path / "logs" / "payloads.jsonl", max_body_bytes=100)
    log.open()
    for _ in range(3):
        log.submit(make_exchange())
    log.close()

    lines = (tmp_path / "logs" / "payloads.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["request_id"] == "r1"
    assert log.dropped == 0
    assert (tmp_path / "logs" / "payloads.jsonl").stat().st_mode & 0o777 == 0o640
