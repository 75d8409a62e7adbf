"""Rate limits, body size limits and bad input, seen through real clients."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.llm_proxy.llm_harness import (
    CANARY_KEY,
    CLIENT_SECRET,
    Harness,
    HarnessFactory,
)

MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 response with a Content-Length; return head and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head, body


def anthropic_client(harness: Harness) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )


def openai_client(harness: Harness) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=CLIENT_SECRET, base_url=f"{harness.url}/v1", max_retries=0
    )


async def test_requests_per_min_429_then_recovers(make_harness: HarnessFactory) -> None:
    harness = await make_harness(requests_per_min=2)
    client = anthropic_client(harness)

    def call() -> Any:
        return client.messages.create(
            model="claude-test", max_tokens=8, messages=MESSAGES
        )

    await asyncio.to_thread(call)
    await asyncio.to_thread(call)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await asyncio.to_thread(call)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "30"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert len(harness.upstream.seen) == 2

    harness.clock.advance(29)
    with pytest.raises(anthropic.RateLimitError):
        await asyncio.to_thread(call)
    harness.clock.advance(1)
    message = await asyncio.to_thread(call)
    assert message.stop_reason == "end_turn"

    records = await harness.records(5)
    assert [r["status"] for r in records] == [200, 200, 429, 429, 200]
    assert records[2]["error"] == "rate_limited"


async def test_tokens_per_min_429_then_recovers(make_harness: HarnessFactory) -> None:
    harness = await make_harness(tokens_per_min=1000)
    client = openai_client(harness)

    def stream_without_usage() -> None:
        # No usage is reported, so the 900-token estimate stays charged.
        stream = client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, max_tokens=900, stream=True
        )
        for _ in stream:
            pass

    def call(max_tokens: int) -> Any:
        return client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, max_tokens=max_tokens
        )

    await asyncio.to_thread(stream_without_usage)
    with pytest.raises(openai.RateLimitError) as caught:
        await asyncio.to_thread(call, 500)

    retry_after = int(caught.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert caught.value.code == "rate_limited"
    assert "tokens_per_min" in caught.value.message

    harness.clock.advance(retry_after)
    completion = await asyncio.to_thread(call, 500)
    assert completion.usage is not None

    # Settled with the reported usage (26 tokens), not the 500-token estimate,
    # so the returned difference lets a 400-token request in at once.
    second = await asyncio.to_thread(call, 400)
    assert second.choices[0].finish_reason == "stop"


async def test_body_over_limit_by_content_length(make_harness: HarnessFactory) -> None:
    harness = await make_harness(max_request_bytes=1024 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        + b"{"
        * 1024
    )
    await writer.drain()

    # The answer comes while 99.9 MB of the declared body were never sent.
    head, body = await read_response(reader)
    writer.close()

    assert head.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert harness.upstream.seen == []
    [record] = await harness.records(1)
    assert record["status"] == 413
    assert record["request_bytes"] == 100000000


async def test_body_over_limit_chunked(make_harness: HarnessFactory) -> None:
    harness = await make_harness(max_request_bytes=64 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.port)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nanthropic-version: 2023-06-01\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 16384
    for _ in range(5):  # 80 KiB, and no terminating chunk
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()

    # The answer comes before the client has finished the body.
    head, body = await read_response(reader)
    writer.close()

    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["type"] == "request_too_large"
    assert harness.upstream.seen == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_body"),
        (b'{"messages": []}', 400, "missing_model"),
        (b'{"model": 7, "messages": []}', 400, "missing_model"),
    ],
)
async def test_bad_request_bodies(
    harness: Harness, body: bytes, status: int, code: str
) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{harness.url}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        document = await response.json()

    assert response.status == status
    assert document["error"]["code"] == code
    assert harness.upstream.seen == []
    [record] = await harness.records(1)
    assert record["error"] == code
    assert record["status"] == status


async def test_unknown_path_provider_format(harness: Harness) -> None:
    async with aiohttp.ClientSession() as session:
        openai_style = await session.get(f"{harness.url}/v1/files")
        anthropic_style = await session.get(
            f"{harness.url}/v1/files", headers={"anthropic-version": "2023-06-01"}
        )
        openai_body = await openai_style.json()
        anthropic_body = await anthropic_style.json()
        health = await session.get(f"{harness.url}/healthz")

    assert openai_style.status == 404
    assert openai_body["error"]["code"] == "no_route"
    assert anthropic_style.status == 404
    assert anthropic_body["error"]["type"] == "not_found_error"
    assert health.status == 200


async def test_upstream_500_passes_through(harness: Harness) -> None:
    client = anthropic_client(harness)

    with pytest.raises(anthropic.InternalServerError) as caught:
        await asyncio.to_thread(
            client.messages.create, model="fail-500", max_tokens=8, messages=MESSAGES
        )

    assert caught.value.status_code == 500
    [record] = await harness.records(1)
    assert record["error"] == "upstream_status_500"


async def test_upstream_reset_gives_502(harness: Harness) -> None:
    client = openai_client(harness)

    with pytest.raises(openai.APIStatusError) as caught:
        await asyncio.to_thread(
            client.chat.completions.create, model="reset", messages=MESSAGES
        )

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_reset"
    [record] = await harness.records(1)
    assert record["error"] == "upstream_reset"
    assert record["status"] == 502


@pytest.mark.parametrize(
    ("model", "error"),
    [("malformed", "malformed_event"), ("reset-mid-stream", "upstream_reset")],
)
async def test_broken_stream_raises_in_sdk(
    harness: Harness, model: str, error: str
) -> None:
    client = anthropic_client(harness)

    def run() -> None:
        stream = client.messages.create(
            model=model, max_tokens=8, messages=MESSAGES, stream=True
        )
        for _ in stream:
            pass

    with pytest.raises(anthropic.APIStatusError):
        await asyncio.to_thread(run)

    [record] = await harness.records(1)
    assert record["error"] == error
    assert record["stream"] is True
    message = await asyncio.to_thread(
        anthropic_client(harness).messages.create,
        model="claude-test",
        max_tokens=8,
        messages=MESSAGES,
    )
    assert message.stop_reason == "end_turn"  # the proxy keeps serving


async def test_openai_broken_stream_raises(harness: Harness) -> None:
    client = openai_client(harness)

    def run() -> None:
        stream = client.chat.completions.create(
            model="malformed", messages=MESSAGES, stream=True
        )
        for _ in stream:
            pass

    with pytest.raises(openai.APIError, match="malformed"):
        await asyncio.to_thread(run)


async def test_slow_client_stream_is_cut(make_harness: HarnessFactory) -> None:
    harness = await make_harness(client_write_timeout=0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", harness.port))
    _reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps(
        {"model": "endless", "max_tokens": 8, "messages": MESSAGES, "stream": True}
    ).encode()
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    # The client never reads; meanwhile another client is served.
    other = await asyncio.to_thread(
        anthropic_client(harness).messages.create,
        model="claude-test",
        max_tokens=8,
        messages=MESSAGES,
    )
    assert other.stop_reason == "end_turn"

    await asyncio.wait_for(harness.upstream.stream_closed.wait(), 30)
    writer.close()

    records = await harness.records(2)
    slow = next(r for r in records if r["model"] == "endless")
    assert slow["error"] == "client_write_timeout"


async def test_canary_key_never_leaks(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen_bodies: list[str] = []
    bodies = [
        {"model": "claude-test", "max_tokens": 8, "messages": MESSAGES},
        {"model": "claude-test", "max_tokens": 8, "messages": MESSAGES, "stream": True},
        {"model": "echo-key", "max_tokens": 8, "messages": MESSAGES},
        {"model": "fail-500", "max_tokens": 8, "messages": MESSAGES},
        {"model": "reset", "max_tokens": 8, "messages": MESSAGES},
        {"model": "malformed", "max_tokens": 8, "messages": MESSAGES, "stream": True},
        {"max_tokens": 8},
    ]
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            response = await session.post(
                f"{harness.url}/v1/messages", json=body, headers={"x-api-key": "client"}
            )
            seen_bodies.append(await response.text())
            seen_bodies.append(json.dumps(dict(response.headers)))
        invalid = await session.post(f"{harness.url}/v1/messages", data=b"{")
        seen_bodies.append(await invalid.text())

    records = await harness.records(len(bodies) + 1)
    echoed = seen_bodies[4]
    assert "[redacted]" in echoed  # the upstream echoed the key, the proxy hid it
    assert all(CANARY_KEY not in text for text in seen_bodies)
    assert CANARY_KEY not in json.dumps(records)
    assert CANARY_KEY not in harness.proxy.payload_log.path.read_text()
    assert CANARY_KEY not in caplog.text
    assert CANARY_KEY not in repr(harness.proxy.key_store.key)
    assert len(caplog.records) > 0
