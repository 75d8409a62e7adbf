"""The sandbox's pre-commit hook, run by a real git."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.integration.credentials.conftest import helper_path, require_tool

ISSUED = "issued-sandbox-token-7f3a9c2e1b"
GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    require_tool("git")
    helper_path()
    hooks = resources.files("aibox") / "data" / "git-hooks"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "git-token").write_text(ISSUED)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "AIBOX_CREDENTIALS_DIR": str(credentials),
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True, env=environment)
    subprocess.run(
        ["git", "-C", str(work), "config", "core.hooksPath", str(hooks)],
        check=True,
        env=environment,
    )
    return work, environment


def commit(
    work: Path, environment: dict[str, str], name: str, text: str
) -> subprocess.CompletedProcess[str]:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", name], check=True, env=environment)
    return subprocess.run(
        ["git", "-C", str(work), "commit", "-q", "-m", f"add {name}"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )


def test_clean_commit_passes(repository: tuple[Path, dict[str, str]]) -> None:
    work, environment = repository
    result = commit(work, environment, "app.py", "print('hello')\n")
    assert result.returncode == 0, result.stderr


def test_issued_token_is_rejected(repository: tuple[Path, dict[str, str]]) -> None:
    work, environment = repository
    commit(work, environment, "README", "start\n")
    result = commit(
        work,
        environment,
        "config/settings.ini",
        f"[auth]\nuser = dev\ntoken = {ISSUED}\n",
    )
    assert result.returncode != 0
    assert "config/settings.ini:3: credential issued by aibox" in result.stderr
    assert ISSUED not in result.stderr + result.stdout
    log = subprocess.run(
        ["git", "-C", str(work), "log", "--format=%s"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    assert log.stdout.split() == ["add", "README"]


def test_known_token_format_is_rejected(
    repository: tuple[Path, dict[str, str]],
) -> None:
    work, environment = repository
    result = commit(work, environment, "deploy.sh", f"export GH={GITHUB_TOKEN}\n")
    assert result.returncode != 0
    assert "deploy.sh:1: GitHub token" in result.stderr
    assert GITHUB_TOKEN not in result.stderr


def test_token_removed_again_passes(repository: tuple[Path, dict[str, str]]) -> None:
    work, environment = repository
    assert commit(work, environment, "a.txt", f"{GITHUB_TOKEN}\n").returncode != 0
    result = commit(work, environment, "a.txt", "redacted\n")
    assert result.returncode == 0, result.stderr
