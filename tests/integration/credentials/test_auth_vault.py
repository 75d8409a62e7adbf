"""`aibox auth` with the Vault backend, switched on by config alone."""

from __future__ import annotations

import getpass
import io
import json
from pathlib import Path

import pytest

from aibox.cli.main import main
from tests.integration.credentials.conftest import BaoServer


def write_config(path: Path, address: str, token_file: Path) -> None:
    path.write_text(
        "credentials:\n"
        "  backend: vault\n"
        "  vault:\n"
        f"    address: {address}\n"
        f"    token_file: {token_file}\n"
    )


@pytest.fixture
def vault_cli(bao: BaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(bao.root_token)
    config = tmp_path / "config.yaml"
    write_config(config, bao.address, token_file)
    monkeypatch.setenv("AIBOX_CONFIG", str(config))
    return token_file


def test_add_list_remove_in_vault(
    bao: BaoServer,
    vault_cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = getpass.getuser()
    monkeypatch.setattr("sys.stdin", io.StringIO("vault-cli-secret-value\n"))
    assert main(["auth", "add", "git-token", "--stdin"]) == 0
    stored = bao.client().secrets.kv.v2.read_secret_version(
        path=f"aibox/users/{user}/git-token",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert stored["data"]["data"] == {"value": "vault-cli-secret-value"}
    capsys.readouterr()

    assert main(["auth", "list", "--json"]) == 0
    output = capsys.readouterr().out
    listed = json.loads(output)
    assert listed["backend"] == "vault"
    assert {"name": "git-token", "source": "vault"} in listed["credentials"]
    assert "vault-cli-secret-value" not in output

    assert main(["auth", "remove", "git-token"]) == 0
    assert "Removed git-token from Vault" in capsys.readouterr().out
    assert main(["auth", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "git-token", "source": None} in listed["credentials"]


def test_forbidden_token_is_one_line(
    bao: BaoServer, vault_cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limited = bao.client().auth.token.create(policies=["default"], ttl="5m")
    token = limited["auth"]["client_token"]
    vault_cli.write_text(token)
    assert main(["auth", "list"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"Error: Vault at {bao.address} denied list of secret/")
    assert lines[0].endswith("(403 permission denied)")
    assert lines[1].startswith("Hint: ")
    assert len(lines) == 2
    assert token not in "\n".join(lines)


def test_unreachable_vault_is_one_line(
    vault_cli: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "down.yaml"
    write_config(config, "http://127.0.0.1:9", vault_cli)
    monkeypatch.setenv("AIBOX_CONFIG", str(config))
    assert main(["auth", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Vault at http://127.0.0.1:9 is unreachable")
    assert "Traceback" not in err
