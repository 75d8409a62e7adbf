"""A local stand-in for the LLM gateway, speaking the Anthropic and OpenAI APIs.

It checks every request for the injected key, the identity headers and the absence
of any client credential, records what it saw, and answers with realistic bodies,
event streams and usage. The model name picks a scenario: ``fail-500``,
``reset``, ``malformed``, ``reset-mid-stream``, ``gated`` (one event per item put on
``proceed``), ``hold`` (stops after the first event), ``barrier`` (holds every
stream until ``barrier_target`` are open), ``endless``, ``echo-key``; any other
model gets a normal answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TEXT_PARTS = ("Hello", " from", " the", " stand-in", " gateway.")
INPUT_TOKENS = 21
OUTPUT_TOKENS = len(TEXT_PARTS)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    """The stand-in server; start with :meth:`start`, stop with :meth:`stop`."""

    key: str
    sandbox_id: str
    user: str
    client_secrets: tuple[str, ...] = ()
    seen: list[SeenRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    produced: int = 0
    proceed: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    open_streams: int = 0
    barrier_target: int = 0
    barrier: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", ssl_context: Any = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- checks ---------------------------------------------------------------

    def _check(self, request: web.Request, provider: str) -> str | None:
        headers = request.headers
        if provider == "anthropic":
            if headers.get("x-api-key") != self.key:
                return "x-api-key is not the injected key"
            if "authorization" in headers:
                return "authorization header reached an Anthropic upstream"
        else:
            if headers.get("authorization") != f"Bearer {self.key}":
                return "authorization is not the injected key"
            if "x-api-key" in headers:
                return "x-api-key header reached an OpenAI upstream"
        if "api-key" in headers:
            return "api-key header reached the upstream"
        if headers.get("x-aibox-sandbox-id") != self.sandbox_id:
            return f"wrong sandbox id {headers.get('x-aibox-sandbox-id')!r}"
        if headers.get("x-aibox-user") != self.user:
            return f"wrong user {headers.get('x-aibox-user')!r}"
        for secret in self.client_secrets:
            for name, value in headers.items():
                if secret in value:
                    return f"client credential arrived in header {name}"
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            SeenRequest(request.method, request.path, dict(request.headers), body)
        )
        is_anthropic = "anthropic-version" in request.headers or (
            request.path.startswith("/v1/messages")
        )
        provider = "anthropic" if is_anthropic else "openai"
        problem = self._check(request, provider)
        if problem is not None:
            self.violations.append(problem)
            return web.json_response({"error": {"message": problem}}, status=401)

        document: dict[str, Any] = json.loads(body) if body else {}
        model = str(document.get("model", ""))
        if model == "fail-500":
            return web.json_response(
                {"type": "error", "error": {"type": "api_error", "message": "boom"}},
                status=500,
            )
        if model == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if model == "echo-key":
            return web.json_response(
                {"error": {"message": f"key {self.key} is not allowed here"}},
                status=403,
            )

        path = request.path
        if path == "/v1/models":
            return self._models(provider)
        if path == "/v1/messages/count_tokens":
            return web.json_response({"input_tokens": INPUT_TOKENS})
        if path == "/v1/embeddings":
            return self._embeddings(model)
        if document.get("stream"):
            return await self._stream(request, path, model, document)
        if path == "/v1/messages":
            return web.json_response(anthropic_message(model))
        if path == "/v1/chat/completions":
            return web.json_response(chat_completion(model))
        if path == "/v1/responses":
            return web.json_response(response_object(model))
        return web.json_response({"error": {"message": "not found"}}, status=404)

    def _models(self, provider: str) -> web.Response:
        if provider == "anthropic":
            return web.json_response(
                {
                    "data": [
                        {
                            "type": "model",
                            "id": "claude-test",
                            "display_name": "Claude Test",
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                    ],
                    "has_more": False,
                    "first_id": "claude-test",
                    "last_id": "claude-test",
                }
            )
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": "gpt-test",
                        "object": "model",
                        "created": 1,
                        "owned_by": "org",
                    }
                ],
            }
        )

    def _embeddings(self, model: str) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": model,
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        )

    # -- streams --------------------------------------------------------------

    async def _stream(
        self, request: web.Request, path: str, model: str, document: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if path == "/v1/messages":
            events = anthropic_events(model)
        elif path == "/v1/responses":
            events = responses_events(model)
        else:
            include_usage = bool(
                (document.get("stream_options") or {}).get("include_usage")
            )
            events = chat_events(model, include_usage)

        self.open_streams += 1
        try:
            await self._send_events(request, response, model, events)
        finally:
            self.open_streams -= 1
            self.stream_closed.set()
        return response

    async def _send_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        model: str,
        events: list[bytes],
    ) -> None:
        for index, event in enumerate(events):
            if model == "malformed" and index == 2:
                await response.write(b"data: {this is not json\n\n")
                await response.write_eof()
                return
            if model == "reset-mid-stream" and index == 2:
                assert request.transport is not None
                request.transport.abort()
                return
            await response.write(event)
            self.produced += 1
            if model == "gated":
                await self.proceed.get()
            if model == "hold" and index == 0:
                await asyncio.Event().wait()
            if model == "barrier" and index == 0:
                if self.open_streams >= self.barrier_target:
                    self.barrier.set()
                await self.barrier.wait()
        if model == "endless":
            filler = (
                b"data: " + json.dumps({"type": "ping", "pad": "x" * 60_000}).encode()
            )
            while True:
                await response.write(filler + b"\n\n")
        await response.write_eof()


def sse(event: str | None, data: Any) -> bytes:
    text = f"data: {json.dumps(data)}\n\n"
    return (f"event: {event}\n" + text).encode() if event else text.encode()


def anthropic_message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_test_0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(TEXT_PARTS)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def anthropic_events(model: str) -> list[bytes]:
    start = anthropic_message(model)
    start.update(content=[], stop_reason=None)
    start["usage"] = {"input_tokens": INPUT_TOKENS, "output_tokens": 1}
    events = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for part in TEXT_PARTS:
        delta = {"type": "text_delta", "text": part}
        events.append(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": delta},
            )
        )
    events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(TEXT_PARTS)},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        },
    }


def chat_events(model: str, include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1}
    base["model"] = model
    events = [
        sse(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    ]
    for part in TEXT_PARTS:
        choice = {"index": 0, "delta": {"content": part}, "finish_reason": None}
        events.append(sse(None, {**base, "choices": [choice]}))
    events.append(
        sse(
            None,
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        )
    )
    if include_usage:
        usage = chat_completion(model)["usage"]
        events.append(sse(None, {**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def response_object(model: str) -> dict[str, Any]:
    text = "".join(TEXT_PARTS)
    return {
        "id": "resp_test",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def responses_events(model: str) -> list[bytes]:
    final = response_object(model)
    created = {**final, "status": "in_progress", "output": [], "usage": None}
    item = {
        "type": "message",
        "id": "msg_1",
        "status": "in_progress",
        "role": "assistant",
    }
    part_start = {"type": "output_text", "text": "", "annotations": []}
    events = [
        sse("response.created", {"type": "response.created", "response": created}),
        sse(
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "content": []},
                "sequence_number": 0,
            },
        ),
        sse(
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": part_start,
                "sequence_number": 0,
            },
        ),
    ]
    for number, part in enumerate(TEXT_PARTS):
        events.append(
            sse(
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": part,
                    "sequence_number": number + 1,
                },
            )
        )
    events.append(
        sse(
            "response.completed",
            {"type": "response.completed", "response": final, "sequence_number": 99},
        )
    )
    return events
