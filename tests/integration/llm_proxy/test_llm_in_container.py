"""The proxy started inside a real container as uid 1001, out of uid 1000's reach."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from aibox.config import Config
from aibox.llm_proxy.sandbox import PROXY_UID, start_llm_proxy
from aibox.policy.effective import EffectivePolicy
from aibox.sandbox import image
from aibox.sandbox.podman import Podman
from tests.integration.llm_proxy.llm_connect_proxy import ConnectProxy
from tests.integration.llm_proxy.llm_fake_upstream import FakeUpstream
from tests.integration.llm_proxy.llm_harness import CLIENT_SECRET, require_tool

IMAGE = "localhost/aibox-sandbox:latest"
VENV = Path(sys.executable).parent.parent
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


def editable_sources() -> list[str]:
    """Return the directories an editable install of aibox imports from."""
    site = VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = []
    for pth in (site / "site-packages").glob("__editable__*aibox*.pth"):
        found += [line for line in pth.read_text().splitlines() if line.startswith("/")]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def engine() -> Podman:
    require_tool("podman")
    require_tool("runc")
    if os.geteuid() != 0:
        pytest.skip("needs root to give the key file to uid 1001")
    podman = Podman.locate("podman")
    image.ensure_image(podman, IMAGE, lambda message: None)
    return podman


@pytest.fixture
def container(engine: Podman, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    key = "sk-in-container-" + secrets.token_hex(12)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o755)
    key_file = credentials / "llm-api-key"
    key_file.write_text(key)
    os.chown(key_file, PROXY_UID, PROXY_UID)
    os.chmod(key_file, 0o400)
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, PROXY_UID, PROXY_UID)
    os.chmod(logs, 0o750)
    os.chmod(tmp_path, 0o755)

    name = "aiboxllm-" + secrets.token_hex(4)
    mounts = ["--volume", f"{VENV}:{VENV}:ro"]
    for source in editable_sources():
        mounts += ["--volume", f"{source}:{source}:ro"]
    engine.run(
        [
            "run",
            "--detach",
            "--name",
            name,
            "--pull=never",
            "--runtime",
            "runc",
            "--network",
            "host",
            "--read-only",
            "--user",
            "1000:1000",
            "--cap-drop=ALL",
            "--security-opt",
            "no-new-privileges",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--label",
            "io.aibox.user=container-dev",
            "--volume",
            f"{credentials}:/run/aibox/credentials:ro",
            "--volume",
            f"{logs}:/var/log/aibox:rw",
            *mounts,
            IMAGE,
            "sleep",
            "infinity",
        ],
        timeout=120,
    )
    try:
        yield name, key, logs
    finally:
        engine.run(["rm", "--force", "--time", "0", name], check=False, timeout=60)


@pytest.fixture
async def services(
    container: tuple[str, str, Path],
) -> AsyncIterator[tuple[FakeUpstream, ConnectProxy]]:
    name, key, _ = container
    upstream = FakeUpstream(key=key, sandbox_id=name, user="container-dev")
    await upstream.start()
    egress = ConnectProxy()
    await egress.start()
    yield upstream, egress
    await egress.stop()
    await upstream.stop()


def as_developer(
    engine: Podman, name: str, script: str
) -> subprocess.CompletedProcess[str]:
    return engine.run(
        ["exec", "--user", "1000:1000", name, "bash", "-c", script],
        check=False,
        timeout=120,
    )


async def test_proxy_in_container_hides_key(
    engine: Podman,
    container: tuple[str, str, Path],
    services: tuple[FakeUpstream, ConnectProxy],
) -> None:
    name, key, logs = container
    upstream, egress = services
    port = free_port()
    # The loopback /29 makes the "bridge gateway" 127.0.0.1, where the test's
    # egress proxy listens; the container shares the host network.
    config = Config.model_validate(
        {
            "network": {"subnet": "127.0.0.0/29", "proxy_port": egress.port},
            "llm": {
                "listen": f"127.0.0.1:{port}",
                "anthropic_upstream": upstream.url,
                "openai_upstream": upstream.url,
            },
        }
    )
    policy = EffectivePolicy(data={"llm": {"max_request_bytes": 1048576}}, hash="test")

    await asyncio.to_thread(start_llm_proxy, config, policy, name, False)
    client = anthropic.Anthropic(
        api_key=CLIENT_SECRET, base_url=f"http://127.0.0.1:{port}", max_retries=0
    )
    message = await asyncio.to_thread(
        client.messages.create, model="claude-test", max_tokens=8, messages=MESSAGES
    )

    assert message.stop_reason == "end_turn"
    assert upstream.violations == []
    assert egress.targets[0].startswith(f"http://127.0.0.1:{upstream.port}/")

    processes = as_developer(engine, name, "ps -o uid=,args= -e")
    proxy_lines = [
        line for line in processes.stdout.splitlines() if "aibox-llm-proxy" in line
    ]
    assert proxy_lines and proxy_lines[0].split()[0] == str(PROXY_UID)
    assert key not in processes.stdout

    read_key = as_developer(engine, name, "cat /run/aibox/credentials/llm-api-key")
    assert read_key.returncode != 0
    assert key not in read_key.stdout

    environments = as_developer(
        engine, name, "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"
    )
    assert key not in environments.stdout
    pid = as_developer(engine, name, "pgrep -u 1001 -f aibox-llm-proxy | head -1")
    proxy_environ = as_developer(
        engine, name, f"cat /proc/{pid.stdout.strip()}/environ"
    )
    assert proxy_environ.returncode != 0  # another user's environ is unreadable

    # Every writable or runtime place in the sandbox; the read-only venv and
    # source mounts come from the host checkout and never receive the key.
    places = "/run /tmp /var /home /etc /root /workspace /usr/local"
    search = as_developer(engine, name, f"grep -rlsF -- {key} {places}")
    assert search.stdout.strip() == ""
    control = as_developer(engine, name, f"grep -rlsF -- llmproxy:x:1001 {places}")
    assert "/etc/passwd" in control.stdout.split()  # the same search does find files

    records = [
        json.loads(line)
        for line in (logs / "llm-payloads.jsonl").read_text().splitlines()
    ]
    assert records[-1]["sandbox_id"] == name
    assert records[-1]["user"] == "container-dev"
    assert key not in (logs / "llm-payloads.jsonl").read_text()
