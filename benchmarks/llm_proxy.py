"""Latency the LLM proxy adds, against direct calls to the same local upstream.

Starts the stand-in upstream from the integration tests and the real
``aibox-llm-proxy`` console script as separate processes, then measures from this
process with one aiohttp client:

- non-streaming chat completions with a 10 KB request body,
- streaming chat completions, time to the first event,

each at concurrency 1 and 50, direct and through the proxy, printing p50 and p99,
the added latency and the ratio. Finally it holds 100 streams open through the
proxy and reports the proxy's resident memory.

Run: /opt/aibox/venv/bin/python benchmarks/llm_proxy.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
STAND_IN_DIR = ROOT / "tests" / "integration" / "llm_proxy"
PROXY_SCRIPT = Path(sys.executable).parent / "aibox-llm-proxy"
KEY = "sk-benchmark-key"
SANDBOX_ID = "sbx-bench"
USER = "bench@example.internal"

UPSTREAM_PROGRAM = f"""
import asyncio, sys
sys.path.insert(0, {str(STAND_IN_DIR)!r})
from llm_fake_upstream import FakeUpstream

async def main():
    upstream = FakeUpstream(key={KEY!r}, sandbox_id={SANDBOX_ID!r}, user={USER!r})
    await upstream.start()
    print(upstream.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def request_body(stream: bool, model: str = "gpt-test") -> bytes:
    content = "x" * (10 * 1024 - 120)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 64,
        "stream": stream,
    }
    return json.dumps(body).encode()


DIRECT_HEADERS = {
    "Authorization": f"Bearer {KEY}",
    "X-AIBox-Sandbox-ID": SANDBOX_ID,
    "X-AIBox-User": USER,
    "Content-Type": "application/json",
}
PROXY_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer none"}


async def start_upstream() -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", UPSTREAM_PROGRAM, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    port = int(await asyncio.wait_for(process.stdout.readline(), 20))
    return process, port


async def start_proxy(
    upstream_port: int, workdir: Path
) -> tuple[asyncio.subprocess.Process, int]:
    key_file = workdir / "key"
    key_file.write_text(KEY)
    upstream = f"http://127.0.0.1:{upstream_port}"
    process = await asyncio.create_subprocess_exec(
        str(PROXY_SCRIPT),
        "--listen",
        "127.0.0.1:0",
        "--anthropic-upstream",
        upstream,
        "--openai-upstream",
        upstream,
        "--key-file",
        str(key_file),
        "--payload-log",
        str(workdir / "payloads.jsonl"),
        "--sandbox-id",
        SANDBOX_ID,
        "--user",
        USER,
        stderr=asyncio.subprocess.DEVNULL,  # one INFO line per request, as deployed
    )
    port = await _find_port(process.pid)
    return process, port


async def _find_port(pid: int) -> int:
    for _ in range(400):
        for connection in psutil.Process(pid).net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN:
                return int(connection.laddr.port)
        await asyncio.sleep(0.05)
    raise RuntimeError("the proxy did not start listening")


Call = Callable[[aiohttp.ClientSession], Awaitable[float]]


def non_streaming_call(url: str, headers: dict[str, str]) -> Call:
    body = request_body(stream=False)

    async def call(session: aiohttp.ClientSession) -> float:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        return time.perf_counter() - started

    return call


def first_event_call(url: str, headers: dict[str, str]) -> Call:
    body = request_body(stream=True)

    async def call(session: aiohttp.ClientSession) -> float:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 200, response.status
            await response.content.readuntil(b"\n\n")
            elapsed = time.perf_counter() - started
            await response.read()
        return elapsed

    return call


async def measure(call: Call, total: int, concurrency: int) -> list[float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    samples: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(20, total)):  # warm-up: connections and code paths
            await call(session)
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                samples.append(await call(session))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, direct: list[float], proxied: list[float]) -> None:
    for label, fraction in (("p50", 0.50), ("p99", 0.99)):
        base = percentile(direct, fraction) * 1000
        through = percentile(proxied, fraction) * 1000
        print(
            f"{name:<34} {label}  direct {base:7.2f} ms  proxy {through:7.2f} ms  "
            f"added {through - base:6.2f} ms  ratio {through / base:5.2f}"
        )


async def peak_rss_with_open_streams(
    proxy_port: int, proxy_pid: int, count: int
) -> None:
    process = psutil.Process(proxy_pid)
    idle = process.memory_info().rss
    url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    body = request_body(stream=True, model="hold")
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector) as session:
        responses = [
            await session.post(url, data=body, headers=PROXY_HEADERS)
            for _ in range(count)
        ]
        for response in responses:
            await response.content.readuntil(b"\n\n")
        peak = process.memory_info().rss
        for response in responses:
            response.close()
    print(
        f"proxy RSS idle {idle / 2**20:.1f} MiB, with {count} open streams "
        f"{peak / 2**20:.1f} MiB ({(peak - idle) / count / 1024:.0f} KiB per stream)"
    )


async def main(total: int) -> None:
    with tempfile.TemporaryDirectory(prefix="aibox-llm-bench-") as workdir:
        upstream, upstream_port = await start_upstream()
        proxy, proxy_port = await start_proxy(upstream_port, Path(workdir))
        direct_url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
        proxy_url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        cpus = os.cpu_count()
        print(f"python {sys.version.split()[0]}, {cpus} CPUs, {total} requests each")
        try:
            for concurrency in (1, 50):
                for name, factory in (
                    ("non-streaming 10 KB", non_streaming_call),
                    ("streaming, time to first event", first_event_call),
                ):
                    direct = await measure(
                        factory(direct_url, DIRECT_HEADERS), total, concurrency
                    )
                    proxied = await measure(
                        factory(proxy_url, PROXY_HEADERS), total, concurrency
                    )
                    report(f"{name}, concurrency {concurrency}", direct, proxied)
            await peak_rss_with_open_streams(proxy_port, proxy.pid, 100)
        finally:
            for process in (proxy, upstream):
                process.send_signal(signal.SIGTERM)
                await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per case")
    asyncio.run(main(parser.parse_args().requests))
