"""Streams pass through event by event; disconnects and many clients behave."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import psutil

from tests.integration.llm_proxy.llm_fake_upstream import TEXT_PARTS
from tests.integration.llm_proxy.llm_harness import (
    CLIENT_SECRET,
    Harness,
    HarnessFactory,
)

MESSAGES: Any = [{"role": "user", "content": "Say hello."}]
STEP_TIMEOUT = 10.0


async def test_each_event_arrives_before_next(harness: Harness) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )
    stream = await client.messages.create(
        model="gated", max_tokens=64, messages=MESSAGES, stream=True
    )
    iterator = stream.__aiter__()
    received = 0
    kinds = []
    while True:
        try:
            event = await asyncio.wait_for(iterator.__anext__(), STEP_TIMEOUT)
        except StopAsyncIteration:
            break
        received += 1
        kinds.append(event.type)
        # The stand-in blocks after each event until told to go on, so it has
        # produced exactly the events the client holds so far.
        assert harness.upstream.produced == received
        harness.upstream.proceed.put_nowait(None)
    await client.close()

    assert received == len(TEXT_PARTS) + 5
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"


async def test_client_disconnect_cancels_upstream(harness: Harness) -> None:
    body = {"model": "hold", "max_tokens": 10, "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{harness.url}/v1/messages", json=body)
        first = await asyncio.wait_for(
            response.content.readuntil(b"\n\n"), STEP_TIMEOUT
        )
        assert b"message_start" in first
        assert harness.upstream.open_streams == 1
        response.close()  # drops the connection mid-stream

    await asyncio.wait_for(harness.upstream.stream_closed.wait(), STEP_TIMEOUT)
    assert harness.upstream.open_streams == 0

    records = await harness.records(1)
    assert records[0]["error"] == "client_disconnected"
    assert records[0]["model"] == "hold"
    client = anthropic.AsyncAnthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )
    message = await client.messages.create(
        model="claude-test", max_tokens=8, messages=MESSAGES
    )
    await client.close()
    assert message.stop_reason == "end_turn"


def _tcp_connections_to(port: int) -> int:
    connections = psutil.Process().net_connections(kind="tcp")
    return sum(
        1
        for connection in connections
        if connection.raddr
        and connection.raddr.port == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


async def _stream_round(harness: Harness, clients: int) -> list[str]:
    harness.upstream.barrier = asyncio.Event()
    harness.upstream.barrier_target = clients
    client = anthropic.AsyncAnthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )

    async def one() -> str:
        async with client.messages.stream(
            model="barrier", max_tokens=8, messages=MESSAGES
        ) as stream:
            return "".join([part async for part in stream.text_stream])

    try:
        return await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(clients))), 60
        )
    finally:
        await client.close()


async def test_hundred_concurrent_streams_no_leaks(
    make_harness: HarnessFactory,
) -> None:
    process = psutil.Process()
    baseline_fds = process.num_fds()
    harness = await make_harness()

    first = await _stream_round(harness, 100)
    assert first == ["".join(TEXT_PARTS)] * 100
    assert harness.upstream.barrier.is_set()  # all 100 were open at once
    after_first = process.num_fds()

    second = await _stream_round(harness, 100)
    assert second == ["".join(TEXT_PARTS)] * 100
    after_second = process.num_fds()

    assert after_second <= after_first  # pooled connections reused, nothing grows
    assert harness.upstream.open_streams == 0
    for _ in range(200):
        if _tcp_connections_to(harness.port) == 0:
            break
        await asyncio.sleep(0.01)
    assert _tcp_connections_to(harness.port) == 0
    records = await harness.records(200)
    assert len(records) == 200
    assert all(record["error"] is None for record in records)
    assert all(record["status"] == 200 for record in records)

    await harness.runner.cleanup()
    await harness.upstream.stop()
    assert process.num_fds() <= baseline_fds
