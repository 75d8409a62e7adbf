"""The fallback hand-off seen from inside a real Podman container."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibox.config import config_from_mapping
from aibox.credentials import sandbox
from aibox.credentials.filestore import EncryptedFileStore
from aibox.credentials.secret import Secret
from aibox.policy.effective import EffectivePolicy
from tests.integration.credentials.conftest import build_rootfs, require_tool

PREFIX = "aibox-credtest-"
PODMAN_RUN = [
    "run",
    "--rm",
    "--pull=never",
    "--runtime",
    "runc",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    require_tool("podman")
    require_tool("runc")
    if os.geteuid() != 0:
        pytest.skip("the rootful hand-off needs root to chown and mount tmpfs")
    return build_rootfs(tmp_path / "rootfs")


@pytest.fixture
def container_name() -> Iterator[str]:
    name = PREFIX + secrets.token_hex(4)
    yield name
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def podman_run(
    rootfs: Path, mount_args: list[str], user: str, *command: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "podman",
            *PODMAN_RUN,
            "--user",
            user,
            *mount_args,
            "--rootfs",
            str(rootfs),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_fallback_files_reach_only_their_users(
    rootfs: Path,
    tmp_path: Path,
    run_dir: Path,
    container_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canaries = {
        name: f"canary-{name}-{secrets.token_hex(12)}"
        for name in ("git-token", "llm-api-key", "mirror-token")
    }
    store_file = tmp_path / "store.enc"
    monkeypatch.setenv("AIBOX_STORE_PASSPHRASE", "podman test")
    store = EncryptedFileStore(store_file)
    for name, value in canaries.items():
        store.set(name, Secret(value))
    config = config_from_mapping(
        {"credentials": {"backend": "file", "store_file": str(store_file)}}, "test"
    )
    policy = EffectivePolicy(
        data={"network": {"allow": [{"id": "git", "hosts": ["git.internal"]}]}},
        hash="c",
    )

    mount_args = sandbox.prepare_sandbox_credentials(
        config, policy, "sbx-podman", "dev", rootless=False
    )
    inside = "/run/aibox/credentials"

    as_developer = podman_run(
        rootfs, mount_args, "1000:1000", "cat", f"{inside}/git-token"
    )
    assert as_developer.returncode == 0, as_developer.stderr
    assert as_developer.stdout == canaries["git-token"]
    mirror = podman_run(
        rootfs, mount_args, "1000:1000", "cat", f"{inside}/mirror-token"
    )
    assert mirror.stdout == canaries["mirror-token"]
    developer_key = podman_run(
        rootfs, mount_args, "1000:1000", "cat", f"{inside}/llm-api-key"
    )
    assert developer_key.returncode != 0
    assert "Permission denied" in developer_key.stderr

    as_proxy = podman_run(
        rootfs, mount_args, "1001:1001", "cat", f"{inside}/llm-api-key"
    )
    assert as_proxy.returncode == 0, as_proxy.stderr
    assert as_proxy.stdout == canaries["llm-api-key"]
    proxy_git = podman_run(
        rootfs, mount_args, "1001:1001", "cat", f"{inside}/git-token"
    )
    assert proxy_git.returncode != 0

    public = podman_run(
        rootfs, mount_args, "1001:1001", "cat", f"{inside}/sandbox.json"
    )
    assert '"mode": "stored"' in public.stdout
    write = podman_run(rootfs, mount_args, "0:0", "sh", "-c", f"echo x > {inside}/new")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr

    environment = podman_run(rootfs, mount_args, "1000:1000", "env")
    assert environment.returncode == 0
    created = subprocess.run(
        [
            "podman",
            "create",
            "--name",
            container_name,
            "--runtime",
            "runc",
            "--network",
            "none",
            *mount_args,
            "--rootfs",
            str(rootfs),
            "sh",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    inspected = subprocess.run(
        ["podman", "inspect", container_name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert inside in inspected.stdout
    for value in canaries.values():
        assert value not in environment.stdout
        assert value not in inspected.stdout
        assert value not in created.stdout + created.stderr

    sandbox.revoke_sandbox_credentials(config, "sbx-podman")
    assert not (run_dir / "sandboxes" / "sbx-podman").exists()
