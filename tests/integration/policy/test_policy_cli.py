"""`aibox policy` commands end to end, in-process, with the real OPA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aibox.cli.main import main
from aibox.policy import decisions


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def project_policy(workspace: Path, data: object) -> None:
    (workspace / "aibox" / "policy.yaml").write_text(yaml.safe_dump(data))


def read_log(log_dir: Path) -> list[dict[str, object]]:
    lines = (log_dir / "decisions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_validate_valid(
    opa: str,
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "policy", "validate", "--workspace", str(workspace))
    assert code == 0
    assert "Effective policy hash: " in out
    assert "Policy is valid." in out
    assert "services: harbor (harbor.internal)" in out
    record = read_log(log_dir)[0]
    assert record["kind"] == "policy_validate"
    assert record["decision"] == "allow"


def test_validate_lists_each_violation(
    opa: str,
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project_policy(
        workspace,
        {"version": 1, "runtime": {"rootless": False}, "resources": {"cpu": 99}},
    )
    code, out, _ = run(capsys, "policy", "validate", "--workspace", str(workspace))
    assert code == 1
    assert "2 violation(s):" in out
    assert "runtime.rootless loosens the parent (parent: true, child: false)" in out
    assert "resources.cpu loosens the parent (parent: 4.0, child: 99.0)" in out
    assert read_log(log_dir)[0]["decision"] == "deny"


def test_validate_json(
    opa: str,
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "policy", "validate", "-w", str(workspace), "--json")
    data = json.loads(out)
    assert code == 0
    assert data["valid"] is True
    assert len(data["hash"]) == 64
    assert data["violations"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "version: 1\ntools: {default: low}\n",
            "invalid value 'low' for 'tools.default'",
        ),
        ("network: {}\n", "missing required field 'version'"),
        ("version: 1\nfoo: 1\n", "unknown field 'foo'"),
        ("version: 1\n  bad: [\n", "malformed YAML"),
        ("version: 1\ncredentials: {ttl: forever}\n", "credentials.ttl"),
    ],
)
def test_validate_bad_file_exit_two(
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    (workspace / "aibox" / "policy.yaml").write_text(content)
    code, _, err = run(capsys, "policy", "validate", "--workspace", str(workspace))
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("Error: ")
    assert "project policy" in err


def test_validate_without_opa_fails_closed(
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aibox.policy import opa as opa_module

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(opa_module, "OPA_FALLBACK_PATH", tmp_path / "none")
    code, _, err = run(capsys, "policy", "validate", "--workspace", str(workspace))
    assert code == 1
    assert "OPA is not installed" in err
    assert "bash scripts/install-deps.sh" in err


def test_show_names_levels(
    opa: str, system_dir: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project_policy(workspace, {"version": 1, "credentials": {"ttl": "1h"}})
    code, out, _ = run(capsys, "policy", "show", "--workspace", str(workspace))
    assert code == 0
    lines = {
        line.split()[0]: line for line in out.splitlines() if line and line[0] != "#"
    }
    assert lines["credentials.ttl"].split()[1:] == ["1h", "[project]"]
    assert lines["runtime.engine"].split()[1:] == ["gvisor", "[org]"]
    assert lines["resources.disk"].split()[1:] == ["20Gi", "[org]"]


def test_check_blocked_tool(
    opa: str,
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "policy",
        "check",
        "-w",
        str(workspace),
        "--",
        "curl",
        "-sS",
        "https://x",
    )
    assert code == 1
    assert "deny: curl -sS https://x" in out
    assert "rule: tools.rules[curl] (risk blocked-by-default)" in out
    record = read_log(log_dir)[0]
    assert record["kind"] == "tool_check"
    assert record["input"] == {"command": ["curl", "-sS", "https://x"]}
    assert record["decision"] == "deny"
    assert record["rule"] == "tools.rules[curl]"


def test_check_review_and_safe(
    opa: str,
    system_dir: Path,
    log_dir: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "policy", "check", "-w", str(workspace), "--", "git", "push"
    )
    assert code == 0
    assert "Notice: this command needs review" in out
    code, out, _ = run(
        capsys, "policy", "check", "-w", str(workspace), "--", "git", "status"
    )
    assert code == 0
    assert "allow: git status" in out
    assert [r["decision"] for r in read_log(log_dir)] == ["review", "allow"]


def test_start_stop_records_explained(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in ("container_start", "container_stop"):
        decisions.record_sandbox_event(
            kind,
            sandbox_id="aibox-dev-ws",
            user="dev",
            workspace="/home/dev/ws",
            policy_hash="ef" * 32,
            details={
                "image": "localhost/aibox-sandbox:latest",
                "sources": ["org.yaml"],
            },
        )
    code, out, _ = run(capsys, "policy", "explain", "--log-entry", "1")
    assert code == 0
    assert "Record 1 (container_start)" in out
    assert (
        "before starting sandbox aibox-dev-ws from image localhost/aibox-sandbox" in out
    )
    assert "Decision: allowed." in out
    code, out, _ = run(capsys, "policy", "explain", "--last")
    assert "Record 2 (container_stop)" in out
    code, out, _ = run(capsys, "policy", "verify-log")
    assert code == 0
    assert "Decision log is intact: 2 record(s) in 1 file(s)." in out


def test_verify_log_detects_tampering(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in ("container_start", "container_stop"):
        decisions.record_sandbox_event(
            kind, sandbox_id="s", user="u", workspace="/w", policy_hash="", details={}
        )
    path = log_dir / "decisions.jsonl"
    path.write_text(path.read_text().replace('"user":"u"', '"user":"x"', 1))
    code, out, _ = run(capsys, "policy", "verify-log")
    assert code == 1
    assert "Tampering detected:" in out
    assert "record 1 was modified" in out


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "explain"],
        ["policy", "explain", "--last", "--log-entry", "1"],
    ],
)
def test_explain_needs_one_selector(
    log_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert "give exactly one of --log-entry N and --last" in err


def test_explain_missing_entry(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "policy", "explain", "--log-entry", "5")
    assert code == 1
    assert "has no record 5" in err
