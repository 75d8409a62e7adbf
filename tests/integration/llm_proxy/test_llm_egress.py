"""Upstream traffic leaves through the configured HTTP proxy, CONNECT for https."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.integration.llm_proxy.llm_connect_proxy import ConnectProxy
from tests.integration.llm_proxy.llm_fake_upstream import FakeUpstream
from tests.integration.llm_proxy.llm_harness import (
    CANARY_KEY,
    CLIENT_SECRET,
    SANDBOX_ID,
    USER,
    HarnessFactory,
    require_tool,
    write_test_ca,
)

MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
async def tls_upstream(tmp_path: Path) -> AsyncIterator[tuple[FakeUpstream, Path]]:
    ca_path, cert_path, key_path = write_test_ca(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    upstream = FakeUpstream(
        key=CANARY_KEY,
        sandbox_id=SANDBOX_ID,
        user=USER,
        client_secrets=(CLIENT_SECRET,),
    )
    await upstream.start(ssl_context=context)
    yield upstream, ca_path
    await upstream.stop()


async def test_https_upstream_through_connect_proxy(
    make_harness: HarnessFactory, tls_upstream: tuple[FakeUpstream, Path]
) -> None:
    upstream, ca_path = tls_upstream
    egress = ConnectProxy()
    await egress.start()
    base = f"https://localhost:{upstream.port}"
    harness = await make_harness(
        anthropic_upstream=base,
        openai_upstream=base,
        upstream_proxy=egress.url,
        upstream_ca_file=str(ca_path),
    )
    client = anthropic.Anthropic(
        api_key=CLIENT_SECRET, base_url=harness.url, max_retries=0
    )

    message = await asyncio.to_thread(
        client.messages.create, model="claude-test", max_tokens=8, messages=MESSAGES
    )
    await egress.stop()

    assert message.stop_reason == "end_turn"
    assert egress.targets == [f"localhost:{upstream.port}"]
    assert upstream.violations == []
    assert upstream.seen[0].headers["X-AIBox-Sandbox-ID"] == SANDBOX_ID


async def test_unreachable_egress_proxy_gives_502(make_harness: HarnessFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    harness = await make_harness(
        anthropic_upstream="https://localhost:9",
        openai_upstream="https://localhost:9",
        upstream_proxy=f"http://127.0.0.1:{closed_port}",
    )
    client = openai.OpenAI(
        api_key=CLIENT_SECRET, base_url=f"{harness.url}/v1", max_retries=0
    )

    with pytest.raises(openai.APIStatusError) as caught:
        await asyncio.to_thread(
            client.chat.completions.create, model="gpt-test", messages=MESSAGES
        )

    assert caught.value.status_code == 502
    assert caught.value.code == "egress_proxy_unreachable"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SQUID_CONFIG = """\
http_port 127.0.0.1:{port}
pid_filename {root}/squid.pid
cache_log {root}/cache.log
access_log stdio:{root}/access.log
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 0 seconds
coredump_dir {root}
acl upstream_port port {upstream_port}
acl CONNECT method CONNECT
http_access allow CONNECT localhost upstream_port
http_access deny all
"""


@pytest.fixture
def squid() -> Iterator[tuple[str, Path]]:
    squid_path = require_tool("squid")
    # Squid started as root writes its logs as nobody, who cannot enter the
    # per-user pytest directory, so its files live in a directory of their own.
    root = Path(tempfile.mkdtemp(prefix="aibox-llm-squid-"))
    os.chmod(root, 0o777)
    try:
        yield squid_path, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_https_upstream_through_real_squid(
    make_harness: HarnessFactory,
    tls_upstream: tuple[FakeUpstream, Path],
    squid: tuple[str, Path],
) -> None:
    squid_path, root = squid
    upstream, ca_path = tls_upstream
    port = free_port()
    config = root / "squid.conf"
    config.write_text(
        SQUID_CONFIG.format(port=port, root=root, upstream_port=upstream.port)
    )
    process = subprocess.Popen(
        [squid_path, "-N", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, (
                process.stderr.read() if process.stderr else ""
            )
            await asyncio.sleep(0.05)
        base = f"https://localhost:{upstream.port}"
        harness = await make_harness(
            anthropic_upstream=base,
            openai_upstream=base,
            upstream_proxy=f"http://127.0.0.1:{port}",
            upstream_ca_file=str(ca_path),
        )
        client = openai.OpenAI(
            api_key=CLIENT_SECRET, base_url=f"{harness.url}/v1", max_retries=0
        )
        completion = await asyncio.to_thread(
            client.chat.completions.create, model="gpt-test", messages=MESSAGES
        )
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert completion.choices[0].finish_reason == "stop"
    assert upstream.violations == []
    access_log = (root / "access.log").read_text()
    assert f"CONNECT localhost:{upstream.port}" in access_log
