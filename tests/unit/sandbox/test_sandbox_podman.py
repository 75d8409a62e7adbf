"""The Podman wrapper against the real podman executable."""

from __future__ import annotations

import pytest

from aibox.errors import ExternalToolError
from aibox.sandbox.podman import Podman, PodmanError, child_environment
from tests.conftest import require_tool


def test_missing_engine_is_one_line_error() -> None:
    with pytest.raises(ExternalToolError, match="container engine not found") as info:
        Podman.locate("podman", env={"PATH": "/nonexistent"})
    assert info.value.exit_code == 1
    assert "install-deps" in (info.value.hint or "")


def test_child_environment_is_allowlisted() -> None:
    env = child_environment({"PATH": "/bin", "VAULT_TOKEN": "s.secret", "HOME": "/h"})
    assert env == {"PATH": "/bin", "HOME": "/h"}


def test_failed_command_keeps_command_and_status() -> None:
    require_tool("podman")
    podman = Podman.locate("podman")
    with pytest.raises(PodmanError) as info:
        podman.run(["volume", "inspect", "aiboxtest-no-such-volume"])
    error = info.value
    assert error.command[1:] == ["volume", "inspect", "aiboxtest-no-such-volume"]
    assert error.returncode != 0
    assert "aiboxtest-no-such-volume" in error.stderr
    assert "exit code" in error.message


def test_missing_objects_report_absent() -> None:
    require_tool("podman")
    podman = Podman.locate("podman")
    assert podman.inspect_container("aiboxtest-no-such-container") is None
    assert not podman.volume_exists("aiboxtest-no-such-volume")
    assert podman.version().startswith("4.")
