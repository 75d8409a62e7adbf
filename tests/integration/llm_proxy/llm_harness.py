"""The in-process proxy under test, its stand-in upstream and a test clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from llm_fake_upstream import FakeUpstream

from aibox.llm_proxy.server import LLMProxy

CANARY_KEY = "sk-canary-7f3a9c2e41d8b6a5"
CLIENT_SECRET = "client-side-secret-0d1e"
SANDBOX_ID = "sbx-test-42"
USER = "dev@example.internal"


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    upstream: FakeUpstream
    proxy: LLMProxy
    runner: web.AppRunner
    port: int
    clock: FakeClock
    key_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def records(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` payload records are written, then return them all."""
        log = self.proxy.payload_log
        for _ in range(500):
            if log.written >= count:
                break
            await asyncio.sleep(0.01)
        lines = log.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


HarnessFactory = Callable[..., Awaitable[Harness]]
