"""Test-wide fixtures: a hermetic home, and skips that fail in CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

_CLEARED_VARIABLES = (
    "AIBOX_CONFIG",
    "AIBOX_DEBUG",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "BAO_ADDR",
    "BAO_TOKEN",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
)


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point HOME and every XDG variable at a fresh directory for each test.

    The real home directory is made unreachable through these variables, so no
    developer config or credential can change a result.
    """
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ["HOME"] = str(home)
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")
    os.environ["XDG_STATE_HOME"] = str(home / ".local" / "state")
    os.environ["XDG_DATA_HOME"] = str(home / ".local" / "share")
    os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
    os.environ["XDG_RUNTIME_DIR"] = str(home / "run")
    for name in _CLEARED_VARIABLES:
        os.environ.pop(name, None)
    try:
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)


def require_tool(name: str) -> str:
    """Return the path of ``name`` or skip (which CI turns into a failure)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; run scripts/install-deps.sh")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root on the host")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI, turn every skip into a failure: a component must not go missing."""
    outcome = yield
    report = outcome.get_result()
    in_ci = os.environ.get("CI") == "true"
    if in_ci and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr
        if isinstance(reason, tuple):
            reason = reason[2]
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
