"""Decision log: hash chain, tamper detection, rotation, locking and fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aibox.policy import decisions
from aibox.policy.decisions import DecisionLog, record_decision, verify_log


@pytest.fixture
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "log"
    folder.mkdir()
    monkeypatch.setenv("AIBOX_LOG_DIR", str(folder))
    return folder


def write(kind: str = "tool_check", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "user": "dev",
        "workspace": "/ws",
        "sandbox_id": "aibox-dev-ws",
        "image": "localhost/aibox-sandbox:latest",
        "policy_hash": "ab" * 32,
        "input": {"command": ["ls"]},
        "decision": "allow",
        "rule": "tools.rules[ls]",
        "reason": "matched",
    }
    fields.update(overrides)
    return record_decision(kind, **fields)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_records_chain_from_genesis(log_dir: Path) -> None:
    first = write()
    second = write("container_start")
    assert first["seq"] == 1
    assert first["prev_hash"] == decisions.GENESIS_HASH
    assert second["seq"] == 2
    assert second["prev_hash"] == first["hash"]
    assert second["ts"].endswith("+00:00")
    stored = [json.loads(line) for line in lines(log_dir / "decisions.jsonl")]
    assert stored == [first, second]
    fields = list(decisions.RECORD_FIELDS)
    assert list(stored[0]) == [*fields[:-2], "uid", *fields[-2:]]
    assert stored[0]["uid"] == os.getuid()


def test_verify_accepts_intact_log(log_dir: Path) -> None:
    for _ in range(5):
        write()
    result = verify_log(decisions.open_log())
    assert result.ok
    assert result.count == 5


def test_verify_detects_edited_line(log_dir: Path) -> None:
    for _ in range(3):
        write()
    path = log_dir / "decisions.jsonl"
    content = lines(path)
    content[1] = content[1].replace('"decision":"allow"', '"decision":"deny"')
    path.write_text("".join(content))
    result = verify_log(decisions.open_log())
    assert not result.ok
    assert "line 2: record 2 was modified" in result.problems[0]
    assert result.count == 1


def test_verify_detects_deleted_line(log_dir: Path) -> None:
    for _ in range(3):
        write()
    path = log_dir / "decisions.jsonl"
    content = lines(path)
    del content[1]
    path.write_text("".join(content))
    result = verify_log(decisions.open_log())
    assert not result.ok
    assert "sequence id 3 where 2 was expected" in result.problems[0]


def test_verify_detects_reordered_lines(log_dir: Path) -> None:
    for _ in range(3):
        write()
    path = log_dir / "decisions.jsonl"
    content = lines(path)
    content[1], content[2] = content[2], content[1]
    path.write_text("".join(content))
    assert not verify_log(decisions.open_log()).ok


def test_verify_detects_rehashed_record_with_broken_link(log_dir: Path) -> None:
    for _ in range(3):
        write()
    path = log_dir / "decisions.jsonl"
    content = lines(path)
    record = json.loads(content[1])
    record["reason"] = "edited"
    record["hash"] = decisions.record_hash(record)
    content[1] = json.dumps(record, separators=(",", ":")) + "\n"
    path.write_text("".join(content))
    result = verify_log(decisions.open_log())
    assert not result.ok
    assert "record 3 does not link" in result.problems[0]


def test_verify_reports_invalid_json(log_dir: Path) -> None:
    write()
    path = log_dir / "decisions.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    result = verify_log(decisions.open_log())
    assert not result.ok
    assert "line 2 is not valid JSON" in result.problems[0]


def test_rotation_keeps_chain_verifiable(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(decisions.MAX_BYTES_VARIABLE, "2048")
    written = [write(input={"command": ["x" * 200]}) for _ in range(20)]
    log = decisions.open_log()
    files = log.files()
    assert len(files) > 2
    assert all(path.stat().st_size <= 2048 for path in files)
    result = verify_log(log)
    assert result.ok, result.problems
    assert result.count == 20
    assert log.last_record() == written[-1]
    assert log.find(1) == written[0]


def test_rotation_detects_removed_middle_file(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(decisions.MAX_BYTES_VARIABLE, "2048")
    for _ in range(20):
        write(input={"command": ["x" * 200]})
    log = decisions.open_log()
    log.files()[1].unlink()
    assert not verify_log(log).ok


def test_invalid_max_bytes_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(decisions.MAX_BYTES_VARIABLE, "ten")
    with pytest.raises(decisions.AiboxError, match="invalid AIBOX_DECISION_LOG_MAX"):
        decisions.open_log()


def test_missing_log_dir_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIBOX_LOG_DIR", str(tmp_path / "absent"))
    decisions._warned_fallback.clear()
    record = write()
    fallback = Path(os.environ["XDG_STATE_HOME"]) / "aibox" / "decisions.jsonl"
    assert json.loads(fallback.read_text()) == record
    assert "is not writable; writing to" in caplog.text


_WRITER = """
import sys
from aibox.policy.decisions import record_decision
for index in range(int(sys.argv[1])):
    record_decision(
        "tool_check", user=sys.argv[2], workspace="/ws", sandbox_id=None, image=None,
        policy_hash=None, input={"index": index, "pad": "y" * 300}, decision="allow",
        rule="tools.default", reason="concurrency test",
    )
"""


def test_concurrent_writers_lose_nothing(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(decisions.MAX_BYTES_VARIABLE, "65536")
    count = 150
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(count), name])
        for name in ("first", "second", "third")
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    log = DecisionLog(log_dir / "decisions.jsonl")
    result = verify_log(log)
    assert result.ok, result.problems
    assert result.count == 3 * count
    records = [record for _, _, record in log.records()]
    assert [record["seq"] for record in records] == list(range(1, 3 * count + 1))
    for name in ("first", "second", "third"):
        indexes = [r["input"]["index"] for r in records if r["user"] == name]
        assert indexes == list(range(count))
    assert len(log.files()) > 1
