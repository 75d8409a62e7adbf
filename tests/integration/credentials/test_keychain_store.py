"""The keychain backend against a real Secret Service (gnome-keyring on D-Bus)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibox.cli.main import main
from aibox.credentials.keychain import KeychainStore, keychain_available
from aibox.credentials.secret import Secret
from tests.integration.credentials.conftest import require_tool


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start a private D-Bus session bus and an unlocked gnome-keyring on it."""
    dbus = require_tool("dbus-daemon")
    keyring_daemon = require_tool("gnome-keyring-daemon")
    bus = subprocess.Popen(
        [dbus, "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    daemon = subprocess.Popen(
        [keyring_daemon, "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": address},
    )
    assert daemon.stdin is not None
    daemon.stdin.write(b"keyring test password")
    daemon.stdin.close()
    import keyring.core
    from keyring.backends import fail

    try:
        deadline = time.monotonic() + 20
        # keyring caches the backend it detected first, so detect again now.
        keyring.core.init_backend()
        while not keychain_available() or not _service_ready():
            if time.monotonic() > deadline:
                pytest.fail("gnome-keyring did not register the Secret Service in 20 s")
            time.sleep(0.2)
            keyring.core.init_backend()
        yield
    finally:
        for process in (daemon, bus):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if bus.stdout is not None:
            bus.stdout.close()
        # The bus is gone: leave keyring with no backend, as on a headless host.
        keyring.set_keyring(fail.Keyring())


def _service_ready() -> bool:
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.get_password("aibox-probe", "probe")
    except KeyringError:
        return False
    return True


def test_keychain_round_trip(secret_service: None) -> None:
    import keyring

    assert type(keyring.get_keyring()).__module__ == "keyring.backends.SecretService"
    store = KeychainStore()
    assert store.names() == []
    store.set("llm-api-key", Secret("sk-keychain-value"))
    store.set("git-token", Secret("ghp-keychain-value"))
    assert store.get("llm-api-key") == Secret("sk-keychain-value")
    assert store.names() == ["git-token", "llm-api-key"]
    assert keyring.get_password("aibox", "git-token") == "ghp-keychain-value"
    assert store.delete("git-token") is True
    assert store.delete("git-token") is False
    assert store.names() == ["llm-api-key"]


def test_auth_commands_use_keychain_by_default(
    secret_service: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("mirror-from-stdin\n"))
    assert main(["auth", "add", "mirror-token", "--stdin"]) == 0
    capsys.readouterr()
    assert main(["auth", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["backend"] == "keyring"
    assert {"name": "mirror-token", "source": "keyring"} in listed["credentials"]
    assert KeychainStore().get("mirror-token") == Secret("mirror-from-stdin")
    assert main(["auth", "remove", "mirror-token"]) == 0
    assert KeychainStore().get("mirror-token") is None
