"""The ``aibox-llm-proxy`` console script as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.integration.llm_proxy.llm_fake_upstream import FakeUpstream
from tests.integration.llm_proxy.llm_harness import (
    CANARY_KEY,
    CLIENT_SECRET,
    SANDBOX_ID,
    USER,
)

SCRIPT = Path(sys.executable).parent / "aibox-llm-proxy"
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream(key=CANARY_KEY, sandbox_id=SANDBOX_ID, user=USER)
    await server.start()
    yield server
    await server.stop()


async def start_process(
    upstream: FakeUpstream, key_file: Path, payload_log: Path, *extra: str
) -> tuple[asyncio.subprocess.Process, int, bytearray]:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "--listen",
        "127.0.0.1:0",
        "--anthropic-upstream",
        upstream.url,
        "--openai-upstream",
        upstream.url,
        "--key-file",
        str(key_file),
        "--payload-log",
        str(payload_log),
        "--sandbox-id",
        SANDBOX_ID,
        "--user",
        USER,
        *extra,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ["PATH"]},
    )
    assert process.stderr is not None
    output = bytearray()
    while True:
        line = await asyncio.wait_for(process.stderr.readline(), 20)
        assert line, f"proxy exited early: {output.decode()}"
        output += line
        match = _LISTENING.search(line)
        if match:
            return process, int(match.group(1)), output


async def stop_process(process: asyncio.subprocess.Process, output: bytearray) -> int:
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    output += await asyncio.wait_for(process.stderr.read(), 20)
    return await process.wait()


async def test_sighup_reloads_key(upstream: FakeUpstream, tmp_path: Path) -> None:
    key_file = tmp_path / "llm-api-key"
    key_file.write_text(CANARY_KEY)
    payload_log = tmp_path / "payloads.jsonl"
    # A long poll interval leaves SIGHUP as the only way the key can change.
    process, port, output = await start_process(
        upstream, key_file, payload_log, "--key-poll-seconds", "3600"
    )
    client = anthropic.Anthropic(
        api_key=CLIENT_SECRET, base_url=f"http://127.0.0.1:{port}", max_retries=0
    )

    def call() -> Any:
        return client.messages.create(
            model="claude-test", max_tokens=8, messages=MESSAGES
        )

    try:
        await asyncio.to_thread(call)
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert CANARY_KEY.encode() not in environ
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert CANARY_KEY.encode() not in cmdline

        new_key = "sk-rotated-55aa"
        key_file.write_text(new_key)
        upstream.key = new_key
        with pytest.raises(anthropic.AuthenticationError):
            await asyncio.to_thread(call)  # still the old key: no reload yet
        process.send_signal(signal.SIGHUP)
        for _ in range(200):
            if b"reloaded the LLM API key" in output:
                break
            assert process.stderr is not None
            output += await asyncio.wait_for(process.stderr.readline(), 20)
        message = await asyncio.to_thread(call)
    finally:
        exit_code = await stop_process(process, output)

    assert message.stop_reason == "end_turn"
    assert exit_code == 0
    assert b"SIGHUP" in output
    assert CANARY_KEY.encode() not in output
    assert new_key.encode() not in output
    records = [json.loads(line) for line in payload_log.read_text().splitlines()]
    assert [record["status"] for record in records] == [200, 401, 200]
    assert CANARY_KEY not in payload_log.read_text()


async def test_missing_key_file_exits_1(upstream: FakeUpstream, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "--listen",
        "127.0.0.1:0",
        "--key-file",
        str(tmp_path / "absent"),
        "--payload-log",
        str(tmp_path / "payloads.jsonl"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode == 1
    assert b"Error: cannot read the LLM API key file" in stderr
    assert b"Traceback" not in stderr


async def test_bad_option_exits_2(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "--listen", "nowhere", stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode == 2
    assert b"invalid listen address 'nowhere'" in stderr
