"""The official Anthropic and OpenAI SDKs talk through the proxy to the stand-in."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import anthropic
import openai

from tests.integration.llm_proxy.llm_fake_upstream import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    TEXT_PARTS,
)
from tests.integration.llm_proxy.llm_harness import (
    CANARY_KEY,
    CLIENT_SECRET,
    SANDBOX_ID,
    USER,
    Harness,
)

EXPECTED_TEXT = "".join(TEXT_PARTS)
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


def anthropic_client(harness: Harness) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )


def openai_client(harness: Harness) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=CLIENT_SECRET, base_url=f"{harness.url}/v1", max_retries=0
    )


def assert_upstream_clean(harness: Harness, expected_requests: int) -> None:
    assert harness.upstream.violations == []
    assert len(harness.upstream.seen) == expected_requests
    for seen in harness.upstream.seen:
        assert seen.headers["X-AIBox-Sandbox-ID"] == SANDBOX_ID
        assert seen.headers["X-AIBox-User"] == USER


async def test_anthropic_message_sync(harness: Harness) -> None:
    client = anthropic_client(harness)

    message = await asyncio.to_thread(
        client.messages.create, model="claude-test", max_tokens=64, messages=MESSAGES
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == EXPECTED_TEXT
    assert message.usage.input_tokens == INPUT_TOKENS
    assert message.usage.output_tokens == OUTPUT_TOKENS
    assert_upstream_clean(harness, 1)
    assert harness.upstream.seen[0].headers["x-api-key"] == CANARY_KEY

    [record] = await harness.records(1)
    assert record["status"] == 200
    assert record["model"] == "claude-test"
    assert record["path"] == "/v1/messages"
    assert record["sandbox_id"] == SANDBOX_ID
    assert record["user"] == USER
    assert record["usage"]["input_tokens"] == INPUT_TOKENS
    assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
    assert json.loads(record["request_body"])["messages"] == MESSAGES
    assert record["request_body_truncated"] is False
    sent = harness.upstream.seen[0].body
    assert record["request_body_sha256"] == hashlib.sha256(sent).hexdigest()
    assert record["request_bytes"] == len(sent)
    assert json.loads(record["response_body"])["content"][0]["text"] == EXPECTED_TEXT
    assert record["latency_ms"] >= record["ttfb_ms"] >= 0


async def test_anthropic_stream_sync(harness: Harness) -> None:
    client = anthropic_client(harness)

    def run() -> tuple[str, Any]:
        with client.messages.stream(
            model="claude-test", max_tokens=64, messages=MESSAGES
        ) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message()

    text, final = await asyncio.to_thread(run)

    assert text == EXPECTED_TEXT
    assert final.usage.output_tokens == OUTPUT_TOKENS
    assert_upstream_clean(harness, 1)
    [record] = await harness.records(1)
    assert record["stream"] is True
    assert record["status"] == 200
    assert record["usage"]["input_tokens"] == INPUT_TOKENS
    assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
    reassembled = json.loads(record["response_body"])
    assert reassembled["content"][0]["text"] == EXPECTED_TEXT
    assert reassembled["stop_reason"] == "end_turn"
    assert record["response_events"] == len(TEXT_PARTS) + 5


async def test_anthropic_count_tokens_and_models(harness: Harness) -> None:
    client = anthropic_client(harness)

    counted = await asyncio.to_thread(
        client.messages.count_tokens, model="claude-test", messages=MESSAGES
    )
    models = await asyncio.to_thread(client.models.list)

    assert counted.input_tokens == INPUT_TOKENS
    assert [model.id for model in models.data] == ["claude-test"]
    assert_upstream_clean(harness, 2)


async def test_anthropic_stream_async(harness: Harness) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )
    async with client.messages.stream(
        model="claude-test", max_tokens=64, messages=MESSAGES
    ) as stream:
        text = "".join([part async for part in stream.text_stream])
    await client.close()

    assert text == EXPECTED_TEXT
    assert_upstream_clean(harness, 1)


async def test_openai_chat_sync(harness: Harness) -> None:
    client = openai_client(harness)

    completion = await asyncio.to_thread(
        client.chat.completions.create, model="gpt-test", messages=MESSAGES
    )

    assert completion.choices[0].message.content == EXPECTED_TEXT
    assert completion.usage is not None
    assert completion.usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    assert_upstream_clean(harness, 1)
    headers = harness.upstream.seen[0].headers
    assert headers["Authorization"] == f"Bearer {CANARY_KEY}"
    [record] = await harness.records(1)
    assert record["provider"] == "openai"
    assert record["usage"]["total_tokens"] == INPUT_TOKENS + OUTPUT_TOKENS


async def test_openai_chat_stream_sync(harness: Harness) -> None:
    client = openai_client(harness)

    def run() -> tuple[str, Any]:
        stream = client.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        return "".join(parts), usage

    text, usage = await asyncio.to_thread(run)

    assert text == EXPECTED_TEXT
    assert usage is not None
    assert usage.completion_tokens == OUTPUT_TOKENS
    assert_upstream_clean(harness, 1)
    [record] = await harness.records(1)
    assert record["usage"]["completion_tokens"] == OUTPUT_TOKENS
    reassembled = json.loads(record["response_body"])
    assert reassembled["choices"][0]["content"] == EXPECTED_TEXT
    assert reassembled["choices"][0]["finish_reason"] == "stop"


async def test_openai_responses_and_embeddings(harness: Harness) -> None:
    client = openai_client(harness)

    response = await asyncio.to_thread(
        client.responses.create, model="gpt-test", input="Say hello."
    )

    def stream_text() -> str:
        parts = []
        with client.responses.stream(model="gpt-test", input="Say hello.") as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    parts.append(event.delta)
        return "".join(parts)

    streamed = await asyncio.to_thread(stream_text)
    embedding = await asyncio.to_thread(
        client.embeddings.create, model="embed-test", input="hello"
    )
    models = await asyncio.to_thread(client.models.list)

    assert response.output_text == EXPECTED_TEXT
    assert streamed == EXPECTED_TEXT
    assert embedding.data[0].embedding == [0.1, 0.2]
    assert [model.id for model in models.data] == ["gpt-test"]
    assert_upstream_clean(harness, 4)
    records = await harness.records(4)
    stream_record = next(r for r in records if r["stream"])
    assert stream_record["usage"]["output_tokens"] == OUTPUT_TOKENS
    assert json.loads(stream_record["response_body"])["status"] == "completed"


async def test_async_openai_stream(harness: Harness) -> None:
    client = openai.AsyncOpenAI(
        api_key=CLIENT_SECRET, base_url=f"{harness.url}/v1", max_retries=0
    )
    stream = await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    parts = [c.choices[0].delta.content async for c in stream if c.choices]
    await client.close()

    assert "".join(p for p in parts if p) == EXPECTED_TEXT
    assert_upstream_clean(harness, 1)
