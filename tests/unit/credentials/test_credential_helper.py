import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibox.credentials import helper

TOKEN = "stored-git-token-value-0123456789"


@pytest.fixture
def mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "sandbox.json").write_text(
        json.dumps({"mode": "stored", "user": "dev", "expires_utc": None})
    )
    (directory / "allowed-hosts.json").write_text(
        json.dumps({"hosts": ["git.internal", ".corp.internal"]})
    )
    (directory / "git-token").write_text(TOKEN)
    monkeypatch.setenv("AIBOX_CREDENTIALS_DIR", str(directory))
    return directory


def run_helper(args: list[str], data: bytes) -> tuple[int, bytes]:
    stdout = io.BytesIO()
    code = helper.run(args, io.BytesIO(data), stdout, io.StringIO())
    return code, stdout.getvalue()


def test_get_answers_allowed_host(mounted: Path) -> None:
    code, output = run_helper(["get"], b"protocol=https\nhost=git.internal\n\n")
    assert code == 0
    assert output == f"username=dev\npassword={TOKEN}\n".encode()


def test_get_keeps_requested_username(mounted: Path) -> None:
    _, output = run_helper(
        ["get"], b"protocol=https\nhost=a.corp.internal\nusername=x\n"
    )
    assert output.startswith(b"username=x\n")


@pytest.mark.parametrize(
    "request_text",
    [
        b"protocol=https\nhost=github.com\n\n",  # not allowlisted
        b"protocol=https\nhost=git.internal.evil.com\n\n",  # suffix trick
        b"protocol=ssh\nhost=git.internal\n\n",  # protocol without credentials
        b"protocol=https\n\n",  # no host
        b"url=https://evil.example/git.internal\n\n",  # host in path only
    ],
)
def test_get_refuses_other_hosts(mounted: Path, request_text: bytes) -> None:
    code, output = run_helper(["get"], request_text)
    assert code == 0
    assert output == b""


def test_store_and_erase_write_nothing(mounted: Path) -> None:
    before = sorted(p.name for p in mounted.iterdir())
    for action in ("store", "erase"):
        code, output = run_helper(
            [action], b"protocol=https\nhost=git.internal\npassword=new\n\n"
        )
        assert code == 0
        assert output == b""
    assert sorted(p.name for p in mounted.iterdir()) == before
    assert (mounted / "git-token").read_text() == TOKEN


def test_unknown_action_is_ignored(mounted: Path) -> None:
    assert run_helper(["approve"], b"") == (0, b"")


def test_malformed_input_one_stderr_line(
    mounted: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"garbage\n")))
    code = helper.main(["get"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("aibox-credential-helper: error: malformed credential")
    assert "Traceback" not in captured.err


def test_missing_mount_reports_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIBOX_CREDENTIALS_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(
        "sys.stdin",
        io.TextIOWrapper(io.BytesIO(b"protocol=https\nhost=git.internal\n")),
    )
    assert helper.main(["get"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no aibox credentials are mounted" in captured.err


def test_secret_command_prints_stored_value(mounted: Path) -> None:
    (mounted / "mirror-token").write_text("mirror-value")
    text = io.StringIO()
    code = helper.run(["secret", "mirror-token"], io.BytesIO(), io.BytesIO(), text)
    assert code == 0
    assert text.getvalue() == "mirror-value\n"


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=1024))
def test_get_never_leaks_to_unlisted_host(mounted: Path, data: bytes) -> None:
    stdout = io.BytesIO()
    try:
        helper.run(["get"], io.BytesIO(data), stdout, io.StringIO())
    except helper.UsageError:
        assert stdout.getvalue() == b""
        return
    if TOKEN.encode() in stdout.getvalue():
        request = helper.parse_request(data)
        assert helper.host_allowed(request.host, ["git.internal", ".corp.internal"])
        assert request.protocol in {"http", "https"}
