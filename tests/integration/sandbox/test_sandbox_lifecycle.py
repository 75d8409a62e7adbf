"""Start, stop, restart and failure cleanup of real sandboxes, through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aibox.cli.main import main
from aibox.errors import AiboxError
from aibox.sandbox import lifecycle

from .conftest import SandboxHarness, status_json

pytestmark = [pytest.mark.integration, pytest.mark.root]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def cli(*args: str) -> int:
    return main(list(args))


def test_home_volume_survives_stop_and_start(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = str(harness.workspace)
    assert cli("start", "--workspace", workspace) == 0
    assert "started (runsc)" in capsys.readouterr().out
    marker = harness.exec("echo kept > /home/dev/marker")
    assert marker.returncode == 0, marker.stderr

    assert cli("stop", "--workspace", workspace) == 0
    assert harness.state() is None
    assert f"aibox-{harness.user}-home" in harness.volumes()
    assert harness.revoked == [harness.name]

    assert cli("start", "--workspace", workspace) == 0
    assert harness.exec("cat /home/dev/marker").stdout == "kept\n"


def test_second_start_says_running(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = str(harness.workspace)
    assert cli("start", "-w", workspace) == 0
    capsys.readouterr()
    assert cli("start", "-w", workspace) == 0
    assert "already running" in capsys.readouterr().out


def test_stopped_sandbox_restarts_warm(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = str(harness.workspace)
    assert cli("start", "-w", workspace) == 0
    first_id = harness.state()["Id"]  # type: ignore[index]
    harness.podman.run(["stop", "--time", "0", harness.name])
    capsys.readouterr()

    assert cli("start", "-w", workspace) == 0
    assert "restarted" in capsys.readouterr().out
    state = harness.state()
    assert state is not None
    assert state["Id"] == first_id
    assert state["State"]["Running"]
    init_filter = harness.exec("grep Seccomp: /proc/1/status")
    assert init_filter.stdout.split() == ["Seccomp:", "2"]


def test_status_json_reports_sandbox(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = str(harness.workspace)
    assert cli("status", "--json", "-w", workspace) == 0
    assert status_json(capsys.readouterr().out)["state"] == "absent"
    assert cli("start", "-w", workspace) == 0
    capsys.readouterr()

    assert cli("status", "--json", "-w", workspace) == 0
    report = status_json(capsys.readouterr().out)
    assert report["state"] == "running"
    assert report["runtime"] == "runsc"
    assert report["workspace"] == str(harness.workspace.resolve())
    assert report["image"].startswith("localhost/aibox-sandbox")
    assert report["apparmor"]["state"] in ("enforced", "degraded")
    assert report["uptime_seconds"] >= 0


def test_concurrent_start_rejected_without_leftovers(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    with lifecycle.start_lock(harness.name):
        code = cli("start", "-w", str(harness.workspace))
    captured = capsys.readouterr()
    assert code == 1
    assert "already being started" in captured.err
    assert "Traceback" not in captured.err
    assert harness.containers() == []
    assert harness.volumes() == []


def test_failed_start_removes_what_it_created(
    harness: SandboxHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = f"aibox-{harness.user}-home"
    harness.podman.create_volume(kept, {})

    def broken_proxy(*args: object) -> None:
        raise AiboxError("LLM proxy did not start")

    monkeypatch.setattr(lifecycle.llm_proxy, "start_llm_proxy", broken_proxy)
    with pytest.raises(AiboxError, match="LLM proxy"):
        lifecycle.start(harness.config(), harness.workspace, lambda m: None)

    assert harness.containers() == []
    assert harness.volumes() == [kept]
    assert harness.revoked == [harness.name]


def test_purge_removes_volumes(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = str(harness.workspace)
    assert cli("start", "-w", workspace) == 0
    assert len(harness.volumes()) == 8
    assert cli("stop", "--purge", "--yes", "-w", workspace) == 0
    assert harness.volumes() == []
    assert harness.containers() == []


def test_shell_runs_command_in_workspace(harness: SandboxHarness) -> None:
    workspace = str(harness.workspace)
    assert cli("start", "-w", workspace) == 0
    script = "pwd > /workspace/where; id -un >> /workspace/where"
    assert cli("shell", "-w", workspace, "--", "bash", "-c", script) == 0
    assert (harness.workspace / "where").read_text() == "/workspace\ndev\n"
    assert cli("shell", "-w", workspace, "--", "bash", "-c", "exit 3") == 3


def test_shell_without_sandbox_fails(
    harness: SandboxHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("shell", "-w", str(harness.workspace), "--", "true") == 1
    assert "not running" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make_workspace", "message"),
    [
        (lambda tmp: tmp / "absent", "workspace not found"),
        (
            lambda tmp: (tmp / "file").write_text("x") and tmp / "file",
            "not a directory",
        ),
    ],
)
def test_bad_workspace_is_usage_error(
    harness: SandboxHarness,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_workspace: object,
    message: str,
) -> None:
    workspace = make_workspace(tmp_path)  # type: ignore[operator]
    assert cli("start", "-w", str(workspace)) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 2  # the error and its hint
    assert harness.containers() == []


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("gvisor:\n  enabled: yes\n  - x\n", "line 3"),
        ("privileged: true\n", "unknown key 'privileged'"),
        ("cap_add: [SYS_ADMIN]\n", "unknown key 'cap_add'"),
        ("read_only: false\n", "unknown key 'read_only'"),
        ("runtime: lxc\n", "'runtime'"),
    ],
)
def test_bad_config_is_usage_error(
    harness: SandboxHarness,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config_text: str,
    message: str,
) -> None:
    config = write_config(tmp_path, config_text)
    code = cli("--config", str(config), "start", "-w", str(harness.workspace))
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert harness.containers() == []
    assert harness.volumes() == []


def test_missing_podman_is_failure(
    harness: SandboxHarness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert cli("start", "-w", str(harness.workspace)) == 1
    assert "container engine not found" in capsys.readouterr().err
    monkeypatch.setenv("PATH", os.defpath)


def test_missing_custom_image_leaves_nothing(
    harness: SandboxHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f"image: localhost/{harness.user}-missing:1\n")
    code = cli("--config", str(config), "start", "-w", str(harness.workspace))
    assert code == 1
    assert "image not found" in capsys.readouterr().err
    assert harness.containers() == []
    assert harness.volumes() == []
    assert harness.revoked == [harness.name]
