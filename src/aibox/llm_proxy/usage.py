"""Token usage and reassembled content from upstream responses.

Usage is taken as the upstream reported it: from the ``usage`` object of a JSON
body, or from the stream events that carry it (Anthropic's ``message_start`` and
``message_delta``, OpenAI's final chat chunk and ``response.completed``).
"""

from __future__ import annotations

import json
from typing import Any

from aibox.llm_proxy.routes import Provider

Usage = dict[str, Any]

_ANTHROPIC_COUNTED = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_body(body: Any) -> Usage | None:
    """Return the ``usage`` object of a JSON response body, if it has one."""
    if isinstance(body, dict) and isinstance(body.get("usage"), dict):
        return dict(body["usage"])
    return None


def total_tokens(provider: Provider, usage: Usage | None) -> int | None:
    """Return the tokens that count against the limit, or None without usage."""
    if not usage:
        return None
    if provider is Provider.ANTHROPIC:
        return sum(_as_int(usage.get(name)) for name in _ANTHROPIC_COUNTED)
    if "total_tokens" in usage:
        return _as_int(usage["total_tokens"])
    prompt = _as_int(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _as_int(usage.get("completion_tokens", usage.get("output_tokens")))
    return prompt + completion


class StreamAssembler:
    """Rebuild a streamed response into the body a non-streamed call would return.

    Text is kept up to ``max_chars`` in total; past that the content is cut and
    ``truncated`` is set, while usage is still collected to the end.
    """

    def __init__(self, provider: Provider, max_chars: int) -> None:
        self.provider = provider
        self.usage: Usage | None = None
        self.truncated = False
        self.events = 0
        self._max_chars = max_chars
        self._kept_chars = 0
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._final: dict[str, Any] | None = None

    def _keep(self, text: str) -> str:
        room = self._max_chars - self._kept_chars
        if len(text) > room:
            self.truncated = True
            text = text[: max(room, 0)]
        self._kept_chars += len(text)
        return text

    def feed(self, event_name: str | None, data: Any) -> None:
        """Take one parsed event (its ``data`` already decoded from JSON)."""
        self.events += 1
        if not isinstance(data, dict):
            return
        if self.provider is Provider.ANTHROPIC:
            self._feed_anthropic(data)
        elif str(data.get("type", "")).startswith("response."):
            self._feed_responses(data)
        else:
            self._feed_chat(data)

    def _feed_anthropic(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            self._message = {k: v for k, v in data["message"].items() if k != "content"}
            self.usage = usage_from_body(data["message"])
        elif kind == "content_block_start" and isinstance(
            data.get("content_block"), dict
        ):
            self._blocks[_as_int(data.get("index"))] = dict(data["content_block"])
        elif kind == "content_block_delta" and isinstance(data.get("delta"), dict):
            block = self._blocks.setdefault(_as_int(data.get("index")), {})
            delta = data["delta"]
            for source, target in (
                ("text", "text"),
                ("thinking", "thinking"),
                ("partial_json", "input_json"),
            ):
                if isinstance(delta.get(source), str):
                    block[target] = block.get(target, "") + self._keep(delta[source])
        elif kind == "message_delta":
            if isinstance(data.get("delta"), dict):
                self._message.update(data["delta"])
            if isinstance(data.get("usage"), dict):
                self.usage = {**(self.usage or {}), **data["usage"]}

    def _feed_chat(self, data: dict[str, Any]) -> None:
        if not self._message:
            self._message = {k: data.get(k) for k in ("id", "object", "model")}
        if isinstance(data.get("usage"), dict):
            self.usage = dict(data["usage"])
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            slot = self._choices.setdefault(
                _as_int(choice.get("index")), {"content": ""}
            )
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = {}
            if isinstance(delta.get("content"), str):
                slot["content"] += self._keep(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._feed_tool_call(slot, call)
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]

    def _feed_tool_call(self, slot: dict[str, Any], call: Any) -> None:
        if not isinstance(call, dict):
            return
        calls: dict[int, dict[str, Any]] = slot.setdefault("tool_calls", {})
        entry = calls.setdefault(_as_int(call.get("index")), {"arguments": ""})
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        if isinstance(function.get("name"), str):
            entry["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            entry["arguments"] += self._keep(function["arguments"])

    def _feed_responses(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self._message["output_text"] = self._message.get("output_text", "") + (
                self._keep(data["delta"])
            )
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = data.get("response")
            if isinstance(response, dict):
                self._final = response
                self.usage = usage_from_body(response)

    def content(self) -> dict[str, Any]:
        """Return the reassembled response as a JSON-ready mapping."""
        if self._final is not None:
            return self._final
        if self.provider is Provider.ANTHROPIC:
            blocks = [self._blocks[index] for index in sorted(self._blocks)]
            return {**self._message, "content": blocks}
        if self._choices:
            choices = []
            for index in sorted(self._choices):
                slot = dict(self._choices[index])
                if "tool_calls" in slot:
                    slot["tool_calls"] = [
                        slot["tool_calls"][i] for i in sorted(slot["tool_calls"])
                    ]
                choices.append({"index": index, **slot})
            return {**self._message, "choices": choices}
        return dict(self._message)


def decode_event_data(data: str) -> Any:
    """Decode an event's data as JSON; raise ValueError when it is not JSON."""
    return json.loads(data)
