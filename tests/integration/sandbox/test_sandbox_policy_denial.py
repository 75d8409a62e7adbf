"""A start that the policy refuses creates nothing and leaves a deny record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibox.policy.errors import PolicyViolationError
from aibox.sandbox import lifecycle
from tests.integration.sandbox.conftest import SandboxHarness

LOOSENING_POLICY = """\
version: 1
network:
  allow:
    - id: paste
      hosts: [paste.example.com]
      ports: [443]
"""


def test_loosening_policy_denies_start(
    harness: SandboxHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    monkeypatch.setenv("AIBOX_LOG_DIR", str(log_dir))
    policy_file = harness.workspace / "aibox" / "policy.yaml"
    policy_file.parent.mkdir()
    policy_file.write_text(LOOSENING_POLICY)

    with pytest.raises(PolicyViolationError) as excinfo:
        lifecycle.start(harness.config(), harness.workspace, lambda message: None)

    assert "network.allow[paste]" in excinfo.value.message
    assert harness.containers() == []
    assert harness.volumes() == []
    records = [
        json.loads(line)
        for line in (log_dir / "decisions.jsonl").read_text().splitlines()
    ]
    assert records[-1]["kind"] == "container_start"
    assert records[-1]["decision"] == "deny"
    assert records[-1]["sandbox_id"] == harness.name
    assert "paste.example.com" in records[-1]["reason"]
