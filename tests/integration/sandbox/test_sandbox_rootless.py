"""An unprivileged member of the aibox group starts, enters and stops a sandbox."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aibox import paths
from aibox.config import Config
from aibox.sandbox import setup as host_setup
from tests.conftest import require_root, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.root]

# Runs the CLI as the test user with the network, credential and LLM proxy hooks
# replaced, as the root-run sandbox tests do; those areas test rootless on their own.
DRIVER = textwrap.dedent(
    """
    import sys
    from aibox.cli.main import main
    from aibox.sandbox import lifecycle

    lifecycle.enforcement.check_host_enforcement = lambda *args: None
    lifecycle.enforcement.container_network_args = lambda *args: ["--network", "none"]
    lifecycle.credentials.prepare_sandbox_credentials = lambda *args, **kwargs: []
    lifecycle.credentials.revoke_sandbox_credentials = lambda *args: None
    lifecycle.llm_proxy.start_llm_proxy = lambda *args: None
    sys.exit(main(sys.argv[1:]))
    """
)


@dataclass
class RootlessUser:
    name: str
    home: Path
    uid: int
    scratch: Path

    def environment(self) -> list[str]:
        return [
            "env",
            "-i",
            f"HOME={self.home}",
            f"USER={self.name}",
            f"LOGNAME={self.name}",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            f"XDG_RUNTIME_DIR={self.scratch / 'run'}",
        ]

    def run(
        self, *command: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", self.name, "--", *self.environment(), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def aibox(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, str(self.scratch / "driver.py"), *args)


def stop_processes_of(uid: int) -> None:
    """Stop what Podman left running for the test user (its rootless pause process)."""
    listed = subprocess.run(
        ["pgrep", "-u", str(uid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in listed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def rootless_user() -> Iterator[RootlessUser]:
    require_root()
    require_tool("podman")
    require_tool("runsc")
    require_tool("useradd")
    context = host_setup.SetupContext(config=Config(), notify=lambda message: None)
    host_setup.create_group(context)
    name = f"aiboxt{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--create-home", "--groups", paths.AIBOX_GROUP, name],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    (scratch / "run").mkdir(mode=0o700)
    (scratch / "driver.py").write_text(DRIVER)
    for path in (scratch, scratch / "run"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    scratch.chmod(0o755)
    user = RootlessUser(name, Path(entry.pw_dir), entry.pw_uid, scratch)
    try:
        yield user
    finally:
        user.run("podman", "system", "reset", "--force", timeout=300)
        stop_processes_of(user.uid)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def test_group_member_runs_sandbox_rootless(rootless_user: RootlessUser) -> None:
    assert rootless_user.name in grp.getgrnam(paths.AIBOX_GROUP).gr_mem
    context = host_setup.SetupContext(config=Config(), notify=lambda message: None)
    host_setup.prepare_rootless(context)
    assert host_setup._has_subordinate_ids(rootless_user.name, Path("/etc/subuid"))

    workspace = rootless_user.scratch / "workspace"
    workspace.mkdir()
    os.chown(workspace, rootless_user.uid, -1)
    workspace.chmod(0o777)  # rootless runsc needs others-write; see aibox doctor

    started = rootless_user.aibox("start", "--workspace", str(workspace))
    assert started.returncode == 0, started.stderr
    assert "started (runsc)" in started.stdout

    script = (
        "id -u; grep CapEff /proc/self/status | cut -f2; uname -r;"
        " echo rootless > /workspace/proof; unshare -U true 2>/dev/null; echo $?"
    )
    inside = rootless_user.aibox(
        "shell", "-w", str(workspace), "--", "bash", "-c", script
    )
    assert inside.returncode == 0, inside.stderr
    uid, capabilities, kernel, unshare_status = inside.stdout.split()
    assert uid == "1000"
    assert capabilities == "0000000000000000"
    assert kernel == "4.4.0"
    assert unshare_status != "0"
    assert (workspace / "proof").read_text() == "rootless\n"

    stopped = rootless_user.aibox("stop", "--workspace", str(workspace))
    assert stopped.returncode == 0, stopped.stderr
    listed = rootless_user.run("podman", "ps", "--all", "--format", "{{.Names}}")
    assert listed.stdout.strip() == ""
