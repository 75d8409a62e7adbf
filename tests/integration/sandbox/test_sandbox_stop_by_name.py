"""Stopping a sandbox whose workspace moved, and stopping during a start."""

from __future__ import annotations

import threading

import pytest

from aibox.errors import UsageError
from aibox.sandbox import lifecycle
from tests.integration.sandbox.conftest import SandboxHarness


def test_stop_by_name_after_workspace_moved(harness: SandboxHarness) -> None:
    config = harness.config()
    lifecycle.start(config, harness.workspace, lambda message: None)
    name = harness.name
    harness.workspace.rename(harness.workspace.with_name("moved"))

    assert lifecycle.stop_by_name(config, name) is True

    assert harness.containers() == []
    assert harness.revoked == [name]
    assert harness.volumes() != []  # volumes are kept


def test_stop_by_name_rejects_foreign_name(harness: SandboxHarness) -> None:
    with pytest.raises(UsageError, match="not one of your sandboxes"):
        lifecycle.stop_by_name(harness.config(), "aibox-someoneelse-01234567")


def test_stop_waits_for_running_start(harness: SandboxHarness) -> None:
    config = harness.config()
    lifecycle.start(config, harness.workspace, lambda message: None)
    held = threading.Event()
    release = threading.Event()

    def hold_start_lock() -> None:
        with lifecycle.start_lock(harness.name):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_start_lock, name="start-lock-holder")
    holder.start()
    assert held.wait(10)
    result: list[bool] = []
    stopper = threading.Thread(
        target=lambda: result.append(lifecycle.stop(config, harness.workspace)),
        name="stopper",
    )
    stopper.start()
    stopper.join(1)
    assert stopper.is_alive()  # stop waits while a start holds the lock
    assert harness.containers() != []

    release.set()
    holder.join(10)
    stopper.join(60)
    assert result == [True]
    assert harness.containers() == []
