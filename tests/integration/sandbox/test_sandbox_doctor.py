"""`aibox doctor` against the real host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibox.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.root]


def test_doctor_json_passes_on_set_up_host(
    sandbox_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert code == 0, report
    assert report["ok"] is True
    assert statuses["runtime"] == "ok"
    assert statuses["seccomp"] == "ok"
    assert statuses["image"] == "ok"
    assert statuses["apparmor"] in ("ok", "warn")


def test_doctor_fails_on_bad_config_with_fix(
    sandbox_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gvisor:\n  enabled: maybe\n")
    code = main(["--config", str(config), "doctor"])
    output = capsys.readouterr().out
    assert code == 1
    assert "FAIL config" in output
    assert "fix:" in output
    assert "runtime" in output
