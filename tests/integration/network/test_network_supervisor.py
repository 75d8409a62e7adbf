"""The supervisor that keeps CoreDNS running where systemd does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _child_pid(log: Path, count: int) -> int:
    lines = [line for line in log.read_text().splitlines() if "started" in line]
    return int(lines[count - 1].rsplit(" ", 1)[1])


def test_supervisor_restarts_and_stops(tmp_path: Path) -> None:
    pidfile = tmp_path / "service.pid"
    log = tmp_path / "service.log"
    command = [sys.executable, "-m", "aibox.network.supervisor", "--detach"]
    command += ["--pidfile", str(pidfile), "--log", str(log), "--"]
    command += ["sh", "-c", "echo child running; exec sleep 60"]

    subprocess.run(command, check=True, timeout=30)
    _wait(
        lambda: pidfile.exists() and log.exists() and "child running" in log.read_text()
    )
    supervisor = int(pidfile.read_text())
    first_child = _child_pid(log, 1)
    os.kill(first_child, signal.SIGKILL)
    _wait(lambda: log.read_text().count("started") == 2)
    second_child = _child_pid(log, 2)
    os.kill(supervisor, signal.SIGTERM)
    _wait(lambda: not pidfile.exists())

    text = log.read_text()
    assert second_child != first_child
    assert "exited with code -9; restarting in 1 s" in text
    assert "stopped sh (exit code" in text
    with pytest.raises(ProcessLookupError):
        os.kill(second_child, 0)
