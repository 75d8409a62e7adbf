import io
import json
from pathlib import Path

import pytest

from aibox.cli.main import main

SECRET_VALUE = "ghp_auth_cli_test_value_123456"


@pytest.fixture
def file_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.yaml"
    store = tmp_path / "store.enc"
    config.write_text(f"credentials:\n  backend: file\n  store_file: {store}\n")
    monkeypatch.setenv("AIBOX_CONFIG", str(config))
    monkeypatch.setenv("AIBOX_STORE_PASSPHRASE", "cli test passphrase")
    return store


def feed_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_add_list_remove(
    file_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_stdin(monkeypatch, SECRET_VALUE + "\n")
    assert main(["auth", "add", "git-token", "--stdin"]) == 0
    assert file_config.exists()
    assert SECRET_VALUE.encode() not in file_config.read_bytes()
    assert "Stored git-token in encrypted file" in capsys.readouterr().out

    assert main(["auth", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["backend"] == "file"
    assert {"name": "git-token", "source": "file"} in listed["credentials"]
    assert {"name": "llm-api-key", "source": None} in listed["credentials"]

    assert main(["auth", "list"]) == 0
    text = capsys.readouterr().out
    assert "git-token" in text
    assert SECRET_VALUE not in text

    assert main(["auth", "remove", "git-token"]) == 0
    assert "Removed git-token" in capsys.readouterr().out
    assert main(["auth", "remove", "git-token"]) == 0
    assert "was not stored" in capsys.readouterr().out


def test_list_shows_environment_fallback(
    file_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIBOX_MIRROR_TOKEN", "env-mirror-value")
    assert main(["auth", "list", "--json"]) == 0
    output = capsys.readouterr().out
    assert {"name": "mirror-token", "source": "env"} in json.loads(output)[
        "credentials"
    ]
    assert "env-mirror-value" not in output


def test_unknown_name_is_usage_error(
    file_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["auth", "add", "ssh-key", "--stdin"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("Error: unknown credential name 'ssh-key'")
    assert "Traceback" not in captured.err


def test_value_argument_is_rejected(
    file_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["auth", "add", "git-token", SECRET_VALUE]) == 2
    captured = capsys.readouterr()
    assert "takes only the credential name" in captured.err
    assert SECRET_VALUE not in captured.err
    assert SECRET_VALUE not in captured.out
    assert not file_config.exists()


def test_empty_value_rejected(
    file_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_stdin(monkeypatch, "\n")
    assert main(["auth", "add", "llm-api-key", "--stdin"]) == 2
    assert "empty value for llm-api-key" in capsys.readouterr().err


def test_wrong_passphrase_one_line_and_store_intact(
    file_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_stdin(monkeypatch, SECRET_VALUE)
    assert main(["auth", "add", "git-token", "--stdin"]) == 0
    before = file_config.read_bytes()
    capsys.readouterr()

    monkeypatch.setenv("AIBOX_STORE_PASSPHRASE", "not the passphrase")
    feed_stdin(monkeypatch, "other-value")
    assert main(["auth", "add", "mirror-token", "--stdin"]) == 1
    captured = capsys.readouterr()
    error_lines = captured.err.strip().splitlines()
    assert error_lines[0].startswith("Error: cannot decrypt credential store")
    assert error_lines[1].startswith("Hint: Set AIBOX_STORE_PASSPHRASE")
    assert len(error_lines) == 2
    assert SECRET_VALUE not in captured.err
    assert file_config.read_bytes() == before


def test_corrupted_store_one_line(
    file_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file_config.write_text("{broken")
    file_config.chmod(0o600)
    assert main(["auth", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"Error: credential store {file_config} is corrupted: not JSON"
    )
    assert file_config.read_text() == "{broken"


def test_unknown_backend_in_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  backend: floppy\n")
    monkeypatch.setenv("AIBOX_CONFIG", str(config))
    assert main(["auth", "list"]) == 2
    err = capsys.readouterr().err
    assert "credentials.backend" in err
    assert "Traceback" not in err
