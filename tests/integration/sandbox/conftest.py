"""Fixtures for sandbox tests that run real Podman containers.

Every test uses a unique sandbox user name (through ``USER``/``LOGNAME``), so its
containers and volumes never collide with anyone else's, and removes them after.
The network, credential and LLM proxy hooks of ``aibox start`` are replaced by
stand-ins that attach no network: those areas have their own integration tests,
and these tests check the container controls themselves.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from aibox import paths
from aibox.config import Config
from aibox.policy.hierarchy import packaged_org_text
from aibox.sandbox import image, lifecycle
from aibox.sandbox.podman import Podman
from tests.conftest import require_root, require_tool

PREFIX = "aiboxit"


@dataclass
class SandboxHarness:
    """A unique sandbox user, a workspace, and helpers to run commands inside."""

    user: str
    workspace: Path
    podman: Podman
    system_dir: Path
    revoked: list[str] = field(default_factory=list)

    def config(self, runtime: str = "runsc", **overrides: Any) -> Config:
        data: dict[str, Any] = {"gvisor": {"enabled": runtime == "runsc"}}
        data.update(overrides)
        if runtime == "runc":
            self.allow_runc()
        return Config.model_validate(data)

    def allow_runc(self) -> None:
        """Switch the org policy in the test's system directory to runc.

        The packaged baseline requires gVisor, and config alone must not be able
        to leave it, so runc runs need an org policy that names runc.
        """
        path = self.system_dir / "org-policy.yaml"
        data = yaml.safe_load(packaged_org_text())
        data["runtime"]["engine"] = "runc"
        data["classification"] = "public"
        path.write_text(yaml.safe_dump(data), "utf-8")

    @property
    def name(self) -> str:
        return lifecycle.Sandbox.for_workspace(self.workspace).name

    def exec(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash as dev in /workspace of the running sandbox."""
        sandbox = lifecycle.Sandbox.for_workspace(self.workspace)
        data = self.podman.inspect_container(sandbox.name) or {}
        labels = data.get("Config", {}).get("Labels") or {}
        gvisor = labels.get("io.aibox.runtime") == "runsc"
        args = lifecycle.exec_args(sandbox, ["bash", "-c", script], False, {}, gvisor)
        return self.podman.run(args, check=False, timeout=120)

    def volumes(self) -> list[str]:
        listed = self.podman.run(["volume", "ls", "--format", "{{.Name}}"]).stdout
        return [
            name for name in listed.split() if name.startswith(f"aibox-{self.user}-")
        ]

    def containers(self) -> list[str]:
        listed = self.podman.run(
            [
                "ps",
                "--all",
                "--format",
                "{{.Names}}",
                "--filter",
                f"name=aibox-{self.user}-",
            ]
        ).stdout
        return listed.split()

    def state(self) -> dict[str, Any] | None:
        return self.podman.inspect_container(self.name)


def remove_everything(podman: Podman, user: str) -> None:
    for container in podman.run(
        ["ps", "--all", "--format", "{{.Names}}", "--filter", f"name=aibox-{user}-"],
        check=False,
    ).stdout.split():
        podman.remove_container(container, timeout_seconds=0)
    for volume in podman.run(["volume", "ls", "--format", "{{.Name}}"]).stdout.split():
        if volume.startswith(f"aibox-{user}-"):
            podman.remove_volume(volume)


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    """Make sure the default sandbox image exists (built or imported once)."""
    require_root()
    require_tool("podman")
    require_tool("runsc")
    require_tool("mmdebstrap")
    podman = Podman.locate("podman")
    image.ensure_image(podman, image.DEFAULT_IMAGE, lambda message: None)
    return image.DEFAULT_IMAGE


@pytest.fixture
def harness(
    sandbox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SandboxHarness]:
    user = f"{PREFIX}{secrets.token_hex(3)}"
    monkeypatch.setenv("USER", user)
    monkeypatch.setenv("LOGNAME", user)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    workspace.chmod(0o777)
    podman = Podman.locate("podman")
    system_dir = tmp_path / "etc-aibox"
    system_dir.mkdir()
    for profile in ("seccomp.json", "seccomp-gvisor.json"):
        shutil.copy2(paths.system_dir() / profile, system_dir / profile)
    (system_dir / "org-policy.yaml").write_text(packaged_org_text(), "utf-8")
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(system_dir))
    result = SandboxHarness(
        user=user, workspace=workspace, podman=podman, system_dir=system_dir
    )

    monkeypatch.setattr(
        lifecycle.enforcement, "check_host_enforcement", lambda *args: None
    )
    monkeypatch.setattr(
        lifecycle.enforcement,
        "container_network_args",
        lambda *args: ["--network", "none"],
    )
    monkeypatch.setattr(
        lifecycle.credentials, "prepare_sandbox_credentials", lambda *args, **kwargs: []
    )
    monkeypatch.setattr(
        lifecycle.credentials,
        "revoke_sandbox_credentials",
        lambda config, sandbox_id: result.revoked.append(sandbox_id),
    )
    monkeypatch.setattr(lifecycle.llm_proxy, "start_llm_proxy", lambda *args: None)
    monkeypatch.setattr(lifecycle.llm_proxy, "payload_log_mount_args", lambda *args: [])
    try:
        yield result
    finally:
        remove_everything(podman, user)


def status_json(output: str) -> dict[str, Any]:
    data = json.loads(output)
    assert isinstance(data, dict)
    return data


def host_kernel() -> str:
    return os.uname().release
