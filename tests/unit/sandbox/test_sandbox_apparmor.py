"""AppArmor detection and the degraded mode."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aibox.errors import AiboxError
from aibox.sandbox import apparmor


def test_no_apparmor_in_kernel(tmp_path: Path) -> None:
    state = apparmor.detect(tmp_path / "absent", tmp_path / "absent")
    assert not state.kernel_enabled
    assert not state.active


def test_profile_loaded_detected(tmp_path: Path) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text("Y\n")
    profiles = tmp_path / "profiles"
    profiles.write_text("docker-default (enforce)\naibox-sandbox (enforce)\n")
    assert apparmor.detect(enabled, profiles).active
    profiles.write_text("docker-default (enforce)\n")
    state = apparmor.detect(enabled, profiles)
    assert state.kernel_enabled
    assert not state.profile_loaded


def test_degraded_warning_names_compensating_controls() -> None:
    state = apparmor.AppArmorState(kernel_enabled=False, profile_loaded=False)
    warning = apparmor.enforce_requirement(state, require=False, rootless=False)
    assert warning is not None
    assert "gVisor" in warning
    assert "seccomp" in warning


def test_required_apparmor_refuses_with_fix() -> None:
    state = apparmor.AppArmorState(kernel_enabled=False, profile_loaded=False)
    with pytest.raises(AiboxError, match="required") as info:
        apparmor.enforce_requirement(state, require=True, rootless=False)
    assert info.value.exit_code == 1
    assert "aibox setup --system" in (info.value.hint or "")


def test_active_profile_needs_no_warning() -> None:
    state = apparmor.AppArmorState(kernel_enabled=True, profile_loaded=True)
    assert apparmor.enforce_requirement(state, require=True, rootless=False) is None


def test_shipped_profile_denies_required_paths() -> None:
    text = apparmor.profile_text()
    for rule in (
        "deny /**/docker.sock",
        "deny /**/.ssh/**",
        "deny @{PROC}/*/mem",
        "deny @{PROC}/kcore",
        "deny mount",
        "deny ptrace",
        "deny capability sys_admin",
        "deny capability sys_ptrace",
        "deny capability net_admin",
        "deny capability net_raw",
        "/workspace/** rw",
        "/home/dev/** rw",
        "/tmp/** rw",
    ):
        assert rule in text, rule


def test_shipped_profile_parses(tmp_path: Path) -> None:
    parser = shutil.which("apparmor_parser") or "/usr/sbin/apparmor_parser"
    if not Path(parser).exists():
        pytest.skip("apparmor_parser is not installed; run scripts/install-deps.sh")
    profile = tmp_path / "profile"
    profile.write_text(apparmor.profile_text())
    result = subprocess.run(
        [parser, "-QTK", str(profile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
