"""Fixtures for policy tests that run the real OPA: system, log and workspace dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_tool


@pytest.fixture
def opa() -> str:
    return require_tool("opa")


@pytest.fixture
def system_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "etc-aibox"
    folder.mkdir()
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(folder))
    return folder


@pytest.fixture
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "log"
    folder.mkdir()
    monkeypatch.setenv("AIBOX_LOG_DIR", str(folder))
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "aibox").mkdir(parents=True)
    return folder
