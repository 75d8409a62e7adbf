"""The hand-off for rootless Podman, run as a throwaway unprivileged user."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.integration.credentials.conftest import build_rootfs, require_tool

PREPARE = """
import json, sys
from aibox.config import config_from_mapping
from aibox.credentials import sandbox
from aibox.policy.effective import EffectivePolicy
config = config_from_mapping({"credentials": {"backend": "env"}}, "test")
if sys.argv[1] == "start":
    args = sandbox.prepare_sandbox_credentials(
        config, EffectivePolicy(data={}, hash="0"), sys.argv[2], "dev",
        rootless=True, keep_id=sys.argv[3] == "keep-id")
    print(json.dumps(args))
else:
    sandbox.revoke_sandbox_credentials(config, sys.argv[2])
"""


@dataclass
class RootlessUser:
    name: str
    uid: int
    base: Path
    runtime: Path

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.base / "home"),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_STATE_HOME": str(self.base / "home" / "state"),
        }
        environment.update(extra)
        return environment

    def run(self, command: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "runuser",
                "-u",
                self.name,
                "--",
                "env",
                "-i",
                *[f"{key}={value}" for key, value in self.environment(**extra).items()],
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            cwd=self.base,
        )


@pytest.fixture
def rootless_user() -> Iterator[RootlessUser]:
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway user needs root")
    for tool in ("podman", "runc", "useradd", "userdel", "runuser"):
        require_tool(tool)
    name = "aiboxcr" + secrets.token_hex(4)
    base = Path(tempfile.mkdtemp(prefix="aiboxcr-"))
    base.chmod(0o755)
    subprocess.run(
        ["useradd", "-m", "-d", str(base / "home"), "-s", "/bin/sh", name], check=True
    )
    uid = int(
        subprocess.run(
            ["id", "-u", name], capture_output=True, text=True, check=True
        ).stdout
    )
    runtime = base / "runtime"
    runtime.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(runtime)],
        check=True,
    )
    os.chown(runtime, uid, uid)
    user = RootlessUser(name, uid, base, runtime)
    try:
        if name not in Path("/etc/subuid").read_text():
            pytest.fail("useradd did not assign subordinate ids; check /etc/login.defs")
        yield user
    finally:
        for process in psutil.process_iter(["uids"]):
            if process.info["uids"] and process.info["uids"].real == uid:
                process.kill()
        psutil.wait_procs(
            [
                p
                for p in psutil.process_iter(["uids"])
                if p.info["uids"] and p.info["uids"].real == uid
            ],
            timeout=10,
        )
        subprocess.run(["umount", "-l", str(runtime)], check=False)
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("userns", ["default", "keep-id"])
def test_rootless_files_reach_only_their_users(
    rootless_user: RootlessUser, userns: str
) -> None:
    canaries = {
        "AIBOX_GIT_TOKEN": "git-" + secrets.token_hex(10),
        "AIBOX_LLM_API_KEY": "llm-" + secrets.token_hex(10),
    }
    script = rootless_user.base / "prepare.py"
    script.write_text(PREPARE)
    rootfs = build_rootfs(rootless_user.base / "rootfs")
    subprocess.run(
        ["chown", "-R", f"{rootless_user.uid}:{rootless_user.uid}", str(rootfs)],
        check=True,
    )

    started = rootless_user.run(
        [sys.executable, str(script), "start", "sbx-rl", userns], **canaries
    )
    assert started.returncode == 0, started.stderr
    mount_args = json.loads(started.stdout)
    directory = rootless_user.runtime / "aibox" / "sandboxes" / "sbx-rl" / "credentials"
    assert str(directory) in mount_args[1]

    userns_args = ["--userns=keep-id:uid=1000,gid=1000"] if userns == "keep-id" else []

    def read_as(uid: int, name: str) -> subprocess.CompletedProcess[str]:
        return rootless_user.run(
            [
                "podman",
                "run",
                "--rm",
                "--runtime",
                "runc",
                "--network",
                "none",
                *userns_args,
                "--user",
                f"{uid}:{uid}",
                *mount_args,
                "--rootfs",
                str(rootfs),
                "cat",
                f"/run/aibox/credentials/{name}",
            ]
        )

    developer = read_as(1000, "git-token")
    assert developer.returncode == 0, developer.stderr
    assert developer.stdout == canaries["AIBOX_GIT_TOKEN"]
    assert "Permission denied" in read_as(1000, "llm-api-key").stderr
    proxy = read_as(1001, "llm-api-key")
    assert proxy.returncode == 0, proxy.stderr
    assert proxy.stdout == canaries["AIBOX_LLM_API_KEY"]
    assert "Permission denied" in read_as(1001, "git-token").stderr

    stopped = rootless_user.run([sys.executable, str(script), "stop", "sbx-rl", userns])
    assert stopped.returncode == 0, stopped.stderr
    assert not directory.exists()


def test_rootless_rejects_runtime_dir_on_disk(rootless_user: RootlessUser) -> None:
    script = rootless_user.base / "prepare.py"
    script.write_text(PREPARE)
    on_disk = rootless_user.base / "home" / "not-tmpfs"
    result = rootless_user.run(
        [sys.executable, str(script), "start", "sbx-disk", "default"],
        XDG_RUNTIME_DIR=str(on_disk),
    )
    assert result.returncode != 0
    assert "is not on tmpfs" in result.stderr
    assert not (on_disk / "aibox" / "sandboxes" / "sbx-disk").exists()
