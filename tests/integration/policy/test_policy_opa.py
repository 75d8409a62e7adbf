"""The effective policy checked by the real OPA across org, team and project."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from aibox.config import Config
from aibox.errors import ExternalToolError, UsageError
from aibox.policy import opa as opa_module
from aibox.policy.effective import check_policy, compute_effective_policy
from aibox.policy.errors import PolicyViolationError
from aibox.policy.hierarchy import packaged_org_text

REPO = Path(__file__).resolve().parents[3]


def write_yaml(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def org_data() -> dict[str, object]:
    data = yaml.safe_load(packaged_org_text())
    assert isinstance(data, dict)
    return data


def test_packaged_default_passes_opa(
    opa: str, system_dir: Path, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    effective = compute_effective_policy(Config(), workspace)
    assert effective.sources == ("packaged default org policy",)
    assert "using the packaged default baseline" in caplog.text
    assert [entry.id for entry in effective.allowlist] == [
        "harbor",
        "nexus",
        "foundry",
        "git",
        "vault",
    ]
    assert effective.engine == "gvisor"
    assert effective.rootless is True
    assert effective.require_apparmor is False
    assert len(effective.hash) == 64


def test_three_levels_merge_and_pass(
    opa: str, system_dir: Path, workspace: Path
) -> None:
    org = write_yaml(system_dir / "org-policy.yaml", org_data())
    team = write_yaml(
        system_dir / "teams" / "payments" / "policy.yaml",
        {
            "version": 1,
            "classification": "confidential",
            "runtime": {"require_apparmor": True},
            "credentials": {"ttl": "2h"},
        },
    )
    project = write_yaml(
        workspace / "aibox" / "policy.yaml",
        {
            "version": 1,
            "network": {
                "allow": [
                    {"id": "foundry", "rate_limit": {"requests_per_min": 20}},
                    {"id": "git"},
                ]
            },
            "resources": {"memory": "4Gi"},
            "tools": {"rules": [{"match": ["git", "push"], "allow": False}]},
        },
    )
    config = Config(team="payments")
    effective = compute_effective_policy(config, workspace)
    assert effective.sources == (str(org), str(team), str(project))
    assert effective.levels == ("org", "team", "project")
    assert [entry.id for entry in effective.allowlist] == ["foundry", "git"]
    assert effective.data["credentials"]["ttl"] == 7200
    assert effective.data["resources"]["memory"] == 4 * 1024**3
    assert effective.require_apparmor is True
    assert effective.origins["credentials.ttl"] == "team"
    assert effective.origins["resources.memory"] == "project"
    assert effective.origins["resources.cpu"] == "org"
    assert compute_effective_policy(config, workspace).hash == effective.hash


def test_every_violation_listed(opa: str, system_dir: Path, workspace: Path) -> None:
    data = org_data()
    data["runtime"] = {"rootless": False}
    data["network"]["allow"][0]["hosts"] = ["*.internal"]  # type: ignore[index]
    write_yaml(system_dir / "org-policy.yaml", data)
    write_yaml(
        workspace / "aibox" / "policy.yaml",
        {"version": 1, "credentials": {"ttl": "9h"}},
    )
    with pytest.raises(PolicyViolationError) as caught:
        compute_effective_policy(Config(), workspace)
    violations = caught.value.violations
    assert len(violations) == 3
    assert any("credentials.ttl loosens the parent" in line for line in violations)
    assert "runtime.rootless must be true: sandboxes run rootless" in violations
    assert any("wildcard host" in line for line in violations)
    assert caught.value.exit_code == 1


def test_check_policy_separates_loosenings_and_denials(
    opa: str, system_dir: Path, workspace: Path
) -> None:
    data = org_data()
    data["credentials"] = {"ttl": "12h", "max_ttl": "24h", "revoke_on_stop": True}
    write_yaml(system_dir / "org-policy.yaml", data)
    write_yaml(
        workspace / "aibox" / "policy.yaml",
        {"version": 1, "runtime": {"engine": "runc"}},
    )
    report = check_policy(Config(), workspace)
    assert len(report.loosenings) == 1
    assert "runtime.engine" in report.loosenings[0]
    assert report.denials == (
        "credentials.ttl 43200s is above the org cap of 28800s (8h)",
    )


def test_named_team_missing_is_error(
    opa: str, system_dir: Path, workspace: Path
) -> None:
    with pytest.raises(
        UsageError, match=r"team policy not found: .*teams/ghost/policy.yaml"
    ):
        compute_effective_policy(Config(team="ghost"), workspace)


def test_team_name_with_slash_rejected(system_dir: Path, workspace: Path) -> None:
    with pytest.raises(UsageError, match="invalid team name"):
        compute_effective_policy(Config(team="../etc"), workspace)


def test_malformed_project_yaml_names_line(system_dir: Path, workspace: Path) -> None:
    (workspace / "aibox" / "policy.yaml").write_text("version: 1\nnetwork: [\n")
    with pytest.raises(UsageError, match=r"malformed YAML .* at line 3"):
        compute_effective_policy(Config(), workspace)


def test_policy_path_is_directory(system_dir: Path, workspace: Path) -> None:
    (workspace / "aibox" / "policy.yaml").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        compute_effective_policy(Config(), workspace)


def test_missing_opa_fails_closed(
    system_dir: Path, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(opa_module, "OPA_FALLBACK_PATH", tmp_path / "no-opa")
    with pytest.raises(ExternalToolError) as caught:
        compute_effective_policy(Config(), workspace)
    assert "OPA is not installed" in caught.value.message
    assert caught.value.hint is not None
    assert "scripts/install-deps.sh" in caught.value.hint


def test_packaged_rego_matches_policies_dir() -> None:
    packaged = {path.name: path.read_bytes() for path in opa_module.rego_files()}
    source_dir = REPO / "policies" / "org"
    sources = {
        path.name: path.read_bytes()
        for path in source_dir.glob("*.rego")
        if not path.name.endswith("_test.rego")
    }
    assert packaged == sources


def test_opa_test_suite_passes(opa: str) -> None:
    completed = subprocess.run(
        [opa, "test", str(REPO / "policies"), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:]
    results = json.loads(completed.stdout)
    assert len(results) >= 34
    assert all(result.get("fail") is not True for result in results)
