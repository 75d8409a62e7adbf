"""git clone and push through aibox-credential-helper against a Vault-checked server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from aibox.credentials import sandbox
from aibox.policy.effective import EffectivePolicy
from tests.integration.credentials.conftest import (
    BaoServer,
    GitServer,
    free_port,
    helper_path,
    vault_config,
)


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("the rootful hand-off needs root to chown and mount tmpfs")


def policy_for(host: str, port: int = 443, ttl: str = "1h") -> EffectivePolicy:
    allow = [{"id": "git", "hosts": [host], "ports": [port]}]
    data = {"network": {"allow": allow}, "credentials": {"ttl": ttl}}
    return EffectivePolicy(data=data, hash="b" * 64)


def git_environment(home: Path, credentials: Path, **extra: str) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "AIBOX_CREDENTIALS_DIR": str(credentials),
    }
    environment.update(extra)
    return environment


def git(
    environment: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        "git",
        "-c",
        "credential.helper=",
        "-c",
        f"credential.helper={helper_path()}",
        "-c",
        "user.name=dev",
        "-c",
        "user.email=dev@example.com",
        *args,
    ]
    return subprocess.run(
        command,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_helper(
    environment: dict[str, str], request: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helper_path(), "get"],
        input=request,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_clone_and_push_until_stop(
    bao: BaoServer, git_server: GitServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(
        config,
        policy_for("localhost", git_server.port),
        "sbx-git",
        user,
        rootless=False,
    )
    credentials = run_dir / "sandboxes" / "sbx-git" / "credentials"
    token = (credentials / "vault-token").read_text()
    environment = git_environment(tmp_path / "home", credentials)

    cloned = git(
        environment, "clone", "-q", git_server.url("repo.git"), str(tmp_path / "work")
    )
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "work" / "README").read_text() == "seed\n"
    assert git_server.accepted
    assert set(git_server.accepted) == {user}

    (tmp_path / "work" / "change.txt").write_text("from the sandbox\n")
    git(environment, "add", "change.txt", cwd=tmp_path / "work")
    committed = git(environment, "commit", "-q", "-m", "change", cwd=tmp_path / "work")
    assert committed.returncode == 0, committed.stderr
    pushed = git(environment, "push", "-q", "origin", "main", cwd=tmp_path / "work")
    assert pushed.returncode == 0, pushed.stderr
    log = subprocess.run(
        ["git", "-C", str(git_server.root / "repo.git"), "log", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert log.stdout.splitlines()[0] == "change"
    assert token not in cloned.stderr + pushed.stderr

    # The credential files vanish at stop, so keep a copy to prove the token is
    # refused by Vault and the helper even when it is still presented.
    saved = tmp_path / "saved-credentials"
    saved.mkdir()
    for name in ("vault-token", "sandbox.json", "allowed-hosts.json"):
        (saved / name).write_bytes((credentials / name).read_bytes())

    sandbox.revoke_sandbox_credentials(config, "sbx-git")
    rejected_before = git_server.rejected
    after = git(
        git_environment(tmp_path / "home", saved),
        "clone",
        "-q",
        git_server.url("repo.git"),
        str(tmp_path / "after-stop"),
    )
    assert after.returncode != 0
    assert "no longer valid" in after.stderr
    assert git_server.rejected > rejected_before

    pushed_after = git(
        git_environment(tmp_path / "home", saved),
        "push",
        "-q",
        "origin",
        "main",
        cwd=tmp_path / "work",
    )
    assert pushed_after.returncode != 0


def test_helper_answers_only_allowlisted_host(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(
        config, policy_for("git.internal"), "sbx-hosts", user, rootless=False
    )
    credentials = run_dir / "sandboxes" / "sbx-hosts" / "credentials"
    environment = git_environment(tmp_path / "home", credentials)

    allowed = run_helper(environment, "protocol=https\nhost=git.internal\n\n")
    assert allowed.returncode == 0
    lines = dict(line.split("=", 1) for line in allowed.stdout.splitlines())
    assert lines["username"] == user
    assert lines["password"] == (credentials / "vault-token").read_text()
    described = json.loads((credentials / "sandbox.json").read_text())
    assert abs(int(lines["password_expiry_utc"]) - described["expires_utc"]) <= 2

    other = run_helper(environment, "protocol=https\nhost=github.com\n\n")
    assert other.returncode == 0
    assert other.stdout == ""
    assert "not allowlisted" in other.stderr
    sandbox.revoke_sandbox_credentials(config, "sbx-hosts")


def test_vault_outage_keeps_token_until_expiry(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(
        config, policy_for("git.internal", ttl="4s"), "sbx-outage", user, rootless=False
    )
    credentials = run_dir / "sandboxes" / "sbx-outage" / "credentials"
    token = (credentials / "vault-token").read_text()
    # The sandbox reaches Vault only through its proxy; a dead proxy is an outage.
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    environment = git_environment(
        tmp_path / "home", credentials, http_proxy=dead_proxy, https_proxy=dead_proxy
    )
    request = "protocol=https\nhost=git.internal\n\n"

    for _ in range(2):  # separate helper processes share the state on the mount
        during = run_helper(environment, request)
        assert during.returncode == 0
        assert f"password={token}" in during.stdout
        assert "unreachable" in during.stderr
        assert "until it expires" in during.stderr

    time.sleep(5)
    expired = run_helper(environment, request)
    assert expired.returncode == 0
    assert expired.stdout == ""
    assert "expired" in expired.stderr
    sandbox.revoke_sandbox_credentials(config, "sbx-outage")


def test_secret_command_reads_own_vault_secret(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    client = bao.client()
    client.secrets.kv.v2.create_or_update_secret(
        path=f"aibox/users/{user}/mirror-token", secret={"value": "mirror-from-vault"}
    )
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(
        config, policy_for("git.internal"), "sbx-secret", user, rootless=False
    )
    credentials = run_dir / "sandboxes" / "sbx-secret" / "credentials"
    environment = git_environment(tmp_path / "home", credentials)

    def secret(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [helper_path(), "secret", name],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    found = secret("mirror-token")
    assert found.returncode == 0, found.stderr
    assert found.stdout == "mirror-from-vault\n"
    missing = secret("git-token")
    assert missing.returncode == 1
    assert missing.stderr.startswith("aibox-credential-helper: error: no git-token")

    sandbox.revoke_sandbox_credentials(config, "sbx-secret")
