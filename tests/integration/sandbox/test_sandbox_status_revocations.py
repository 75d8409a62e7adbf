"""`aibox status` reports Vault tokens whose revocation is still queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibox.cli.main import main
from aibox.credentials.revocations import PendingRevocation
from aibox.sandbox import status
from tests.conftest import require_tool


def test_status_lists_queued_revocations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("podman")
    pending = PendingRevocation(
        sandbox_id="aibox-dev-0123abcd",
        accessor="accessor-value",
        vault_address="http://127.0.0.1:1",
        queued_utc=1_800_000_000,
        attempts=2,
        last_error="connection refused",
    )
    monkeypatch.setattr(
        status.credentials, "pending_revocations", lambda config: [pending]
    )

    assert main(["status", "--workspace", str(tmp_path)]) == 0
    text = capsys.readouterr()
    assert "aibox-dev-0123abcd is not revoked yet" in text.err
    assert "connection refused" in text.err
    assert "accessor-value" not in text.out + text.err

    assert main(["status", "--json", "--workspace", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pending_revocations"][0]["sandbox_id"] == "aibox-dev-0123abcd"
    assert report["pending_revocations"][0]["attempts"] == 2
