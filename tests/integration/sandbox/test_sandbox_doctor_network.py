"""`aibox doctor` includes the host-side egress checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibox.cli.main import main
from tests.conftest import require_root, require_tool

UNCONFIGURED_NETWORK = """\
network:
  podman_network: abxdocnone
  subnet: 10.213.251.0/24
  bridge: abxdoc0
"""


def test_doctor_fails_without_egress_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_root()
    require_tool("podman")
    config = tmp_path / "config.yaml"
    config.write_text(UNCONFIGURED_NETWORK)

    code = main(["--config", str(config), "doctor", "--json"])
    output = json.loads(capsys.readouterr().out)

    assert code == 1
    checks = output["checks"] if isinstance(output, dict) else output
    network = {
        check["name"]: check for check in checks if check["name"].startswith("network")
    }
    assert network["network: proxy"]["status"] == "fail"
    assert network["network: DNS"]["status"] == "fail"
    assert network["network: firewall loaded"]["status"] == "fail"
    assert all(check["fix"] for check in network.values())
