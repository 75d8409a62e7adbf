"""Fixtures that run the proxy in-process against the stand-in upstream."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aibox.llm_proxy import keys
from aibox.llm_proxy.server import LLMProxy, start_server
from aibox.llm_proxy.settings import ProxySettings
from tests.integration.llm_proxy.llm_fake_upstream import FakeUpstream
from tests.integration.llm_proxy.llm_harness import (
    CANARY_KEY,
    CLIENT_SECRET,
    SANDBOX_ID,
    USER,
    FakeClock,
    Harness,
    HarnessFactory,
)


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    started: list[Harness] = []

    async def factory(**overrides: Any) -> Harness:
        upstream = FakeUpstream(
            key=CANARY_KEY,
            sandbox_id=SANDBOX_ID,
            user=USER,
            client_secrets=(CLIENT_SECRET,),
        )
        await upstream.start()
        key_file = tmp_path / f"llm-api-key-{len(started)}"
        key_file.write_text(CANARY_KEY + "\n")
        settings = ProxySettings(
            host="127.0.0.1",
            port=0,
            anthropic_upstream=upstream.url,
            openai_upstream=upstream.url,
            sandbox_id=SANDBOX_ID,
            user=USER,
            payload_log=tmp_path / f"payloads-{len(started)}.jsonl",
        )
        settings = dataclasses.replace(settings, **overrides)
        clock = FakeClock()
        proxy = LLMProxy(settings, keys.KeyStore(keys.FileKeySource(key_file)), clock)
        runner, port = await start_server(proxy)
        harness = Harness(upstream, proxy, runner, port, clock, key_file)
        started.append(harness)
        return harness

    yield factory
    for harness in started:
        await harness.runner.cleanup()
        await harness.upstream.stop()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()
