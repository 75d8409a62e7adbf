"""Time one ``aibox-credential-helper get`` against a bare Python start-up.

git runs the helper once per authenticated operation, so its start-up time is
added to every clone, fetch and push. The script prints medians of 9 runs for:
the bare interpreter (baseline), the helper in stored mode, and the helper in
Vault mode against a local OpenBao dev server (token lookup included).

    /opt/aibox/venv/bin/python benchmarks/credential_helper.py
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

RUNS = 9
REQUEST = b"protocol=https\nhost=git.internal\n\n"


def median_seconds(command: list[str], environment: dict[str, str]) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(
            command, input=REQUEST, env=environment, capture_output=True, check=True
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def write_mount(directory: Path, mode: str, address: str = "") -> None:
    directory.mkdir()
    (directory / "sandbox.json").write_text(
        json.dumps(
            {
                "mode": mode,
                "user": "dev",
                "vault_address": address,
                "expires_utc": int(time.time()) + 3600,
            }
        )
    )
    (directory / "allowed-hosts.json").write_text(
        json.dumps({"hosts": ["git.internal"]})
    )


def start_bao(home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "bench-" + secrets.token_hex(8)
    bao = shutil.which("bao") or str(Path(sys.executable).with_name("bao"))
    process = subprocess.Popen(
        [
            bao,
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
    )
    address = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=1):
                return process, address, token
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    process.kill()
    raise SystemExit("bao dev server did not start")


def main() -> None:
    helper = str(Path(sys.executable).with_name("aibox-credential-helper"))
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        base_environment = {"PATH": os.environ["PATH"], "HOME": temporary}

        baseline = median_seconds([sys.executable, "-c", "pass"], base_environment)

        stored = root / "stored"
        write_mount(stored, "stored")
        (stored / "git-token").write_text("stored-token")
        stored_time = median_seconds(
            [helper, "get"], {**base_environment, "AIBOX_CREDENTIALS_DIR": str(stored)}
        )

        process, address, token = start_bao(root)
        try:
            vault = root / "vault"
            write_mount(vault, "vault", address)
            (vault / "vault-token").write_text(token)
            vault_time = median_seconds(
                [helper, "get"],
                {**base_environment, "AIBOX_CREDENTIALS_DIR": str(vault)},
            )
        finally:
            process.terminate()
            process.wait(timeout=10)

    print(f"python -c pass (baseline): {baseline * 1000:7.1f} ms")
    print(
        f"helper get, stored mode:   {stored_time * 1000:7.1f} ms "
        f"({stored_time / baseline:.1f}x baseline)"
    )
    print(
        f"helper get, Vault mode:    {vault_time * 1000:7.1f} ms "
        f"({vault_time / baseline:.1f}x baseline)"
    )


if __name__ == "__main__":
    main()
