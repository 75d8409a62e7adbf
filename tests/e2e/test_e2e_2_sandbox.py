"""Acceptance points 3 to 10, driven by an unprivileged developer through the CLI.

The sandbox started for point 3 is the one points 4 to 10 probe, stop and
restart, so the tests depend on file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import POINTS, VAULT_PORT, World, describe
from tests.e2e.points import (
    BLOCKED_SYSCALLS,
    SYSCALL_NUMBERS,
    SYSCALL_PROBE,
    main_workspace,
    require_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def test_p03_start_rootless_gvisor_seccomp(world: World) -> None:
    workspace = main_workspace(world)
    policy_dir = workspace / "aibox"
    policy_dir.mkdir(exist_ok=True)
    # A project policy that tightens the org baseline: fewer CPUs, one more rule.
    (policy_dir / "policy.yaml").write_text(
        "version: 1\n"
        "resources:\n  cpu: 2\n"
        "tools:\n  rules:\n    - {match: [rm, -rf], risk: blocked-by-default}\n"
    )
    for path in (policy_dir, policy_dir / "policy.yaml"):
        shutil.chown(path, world.uid, world.gid)

    result = world.aibox("start", "--workspace", str(workspace))

    assert result.returncode == 0, describe(result)
    warning = result.stderr.lower()
    assert "apparmor" in warning, describe(result)
    assert "gvisor" in warning, describe(result)
    assert "seccomp" in warning, describe(result)
    data = world.inspect(workspace)
    assert data is not None and data["State"]["Running"], describe(result)
    assert Path(data["OCIRuntime"]).name == "runsc" or data["OCIRuntime"] == "runsc"
    labels = data["Config"]["Labels"]
    assert labels["io.aibox.runtime"] == "runsc"
    security_options = " ".join(data["HostConfig"]["SecurityOpt"])
    assert "seccomp" in security_options, security_options
    assert "apparmor" not in security_options, security_options
    inside = world.shell(
        workspace,
        "id -u; uname -r; touch /workspace/e2e-written && echo written; "
        "unshare -U true",
    )
    lines = inside.stdout.splitlines()
    assert lines[0] == "1000", describe(inside)
    # gVisor's Sentry reports its own kernel release, not the host's.
    assert lines[1] != os.uname().release, describe(inside)
    assert lines[2] == "written", describe(inside)
    assert (workspace / "e2e-written").is_file()
    assert "Operation not permitted" in inside.stderr, describe(inside)


def test_p03_require_apparmor_refuses_creating_nothing(world: World) -> None:
    workspace = world.workspace("apparmor")
    containers = world.containers()
    volumes = world.volumes()
    world.write_org_policy(require_apparmor=True)
    try:
        result = world.aibox("start", "--workspace", str(workspace))
    finally:
        world.write_org_policy()

    assert result.returncode == 1, describe(result)
    assert "apparmor" in result.stderr.lower(), describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert world.containers() == containers
    assert world.volumes() == volumes


def test_p04_loosening_project_policy_refused(world: World) -> None:
    workspace = world.workspace("loosening")
    policy_dir = workspace / "aibox"
    policy_dir.mkdir(exist_ok=True)
    (policy_dir / "policy.yaml").write_text("version: 1\nresources:\n  cpu: 64\n")
    containers = world.containers()

    result = world.aibox("start", "--workspace", str(workspace))

    assert result.returncode == 1, describe(result)
    assert "resources.cpu" in result.stderr, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert world.containers() == containers


def test_p04_container_labelled_with_policy_hash(world: World) -> None:
    workspace = require_running(world)
    validated = world.aibox(
        "policy", "validate", "--workspace", str(workspace), "--json"
    )
    assert validated.returncode == 0, describe(validated)
    report = json.loads(validated.stdout)
    data = world.inspect(workspace)
    assert data is not None

    label = data["Config"]["Labels"].get("io.aibox.policy-hash")

    assert label, "the container has no io.aibox.policy-hash label"
    assert label == report["hash"], f"label {label} != validated {report['hash']}"
    world.state["policy_hash"] = label


def test_p05_dns_resolves_through_coredns(world: World) -> None:
    workspace = require_running(world)
    script = (
        "dig +short +time=3 +tries=1 vault.internal A; "
        "echo status=$(dig +time=3 +tries=1 example.com A | "
        "sed -n 's/.*status: \\([A-Z]*\\).*/\\1/p')"
    )

    result = world.shell(workspace, script)

    lines = result.stdout.split()
    assert world.addresses["vault"] in lines, describe(result)
    assert "status=NXDOMAIN" in lines, describe(result)


def test_p05_vault_reachable_through_squid(world: World) -> None:
    workspace = require_running(world)
    url = f"http://vault.internal:{VAULT_PORT}/v1/sys/health"
    script = (
        f"curl -sS -o /dev/null -w 'http=%{{http_code}}\\n' {url}; "
        f"curl -sS -p -o /dev/null -w 'connect=%{{http_code}}\\n' {url}"
    )

    result = world.shell(workspace, script)

    assert "http=200" in result.stdout.split(), describe(result)
    assert "connect=200" in result.stdout.split(), describe(result)
    access_logs = sorted(world.log_dir.glob("*proxy-access.log"))
    assert access_logs, f"no Squid access log in {world.log_dir}"
    access = "".join(path.read_text() for path in access_logs)
    assert f"vault.internal:{VAULT_PORT}/v1/sys/health" in access, access[-2000:]
    assert f"CONNECT vault.internal:{VAULT_PORT}" in access, access[-2000:]


def test_p05_other_destinations_fail(world: World) -> None:
    workspace = require_running(world)
    vault_ip = world.addresses["vault"]
    # The same address responds to the host, so a failure below is the sandbox's.
    assert world.vault_lookup(world.vault_token) == 200
    script = (
        "curl -sS --max-time 10 -o /dev/null https://example.com; echo exit=$?; "
        f"curl -sS --max-time 10 --noproxy '*' -o /dev/null "
        f"http://{vault_ip}:{VAULT_PORT}/v1/sys/health; echo exit=$?; "
        f"curl -sS --max-time 10 -o /dev/null -w 'code=%{{http_code}}\\n' "
        f"http://{vault_ip}:{VAULT_PORT}/v1/sys/health; echo exit=$?"
    )

    result = world.shell(workspace, script)

    exits = re.findall(r"exit=(\d+)", result.stdout)
    assert len(exits) == 3, describe(result)
    assert exits[0] != "0", f"https://example.com was reachable:\n{describe(result)}"
    assert exits[1] != "0", f"a direct IP connection worked:\n{describe(result)}"
    assert "code=200" not in result.stdout, f"IP through the proxy:\n{describe(result)}"


def test_p06_helper_token_and_clone(world: World) -> None:
    workspace = require_running(world)
    script = (
        "printf 'protocol=http\\nhost=git.internal\\n\\n' | git credential fill; "
        "rm -rf /home/dev/clone && "
        "git clone -q http://git.internal/repo.git /home/dev/clone && "
        "cat /home/dev/clone/README"
    )

    result = world.shell(workspace, script)

    fields = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if "=" in line
    )
    token = fields.get("password", "")
    assert token, f"the credential helper returned no password:\n{describe(result)}"
    assert world.vault_lookup(token) == 200, "the helper's token is not valid in Vault"
    assert token != world.vault_token
    assert "served by git.internal" in result.stdout, describe(result)
    assert '"user"' in world.git_log.read_text(), "git.internal accepted no request"
    world.state["git_token"] = token


# Reads the token from stdin, so it is in no environment or command line here,
# and reports which process environments and files contain it.
TOKEN_SCAN = r"""
read -r TOKEN
if [ "$(cat /run/aibox/credentials/vault-token 2>/dev/null)" = "$TOKEN" ]; then
    echo handoff=same
fi
for file in /proc/[0-9]*/environ; do
    pid=${file#/proc/}
    pid=${pid%/environ}
    echo "pid=$pid"
    if content=$( (tr '\0' '\n' < "$file") 2>/dev/null ); then
        echo "read=$pid"
        case "$content" in *"$TOKEN"*) echo "env-hit=$pid" ;; esac
    fi
done
grep -rlsF -- "$TOKEN" /home/dev /workspace /tmp /var/tmp /opt/toolpacks /etc \
    | sed 's/^/file-hit=/'
echo done
"""


def _scan_values(output: str, key: str) -> set[str]:
    prefix = f"{key}="
    lines = output.splitlines()
    return {line[len(prefix) :] for line in lines if line.startswith(prefix)}


def test_p06_token_only_in_handoff_file(world: World) -> None:
    workspace = require_running(world)
    token = world.state.get("git_token")
    assert token, "no token was obtained in the previous check"
    name = world.container_name(workspace)
    # The developer (uid 1000) and the LLM proxy (uid 1001) each scan what they
    # can read. The helper reads /run/aibox/credentials/vault-token as uid 1000
    # by design, so that hand-off file is the one place the token may be.
    as_developer = world.aibox(
        "shell", "--workspace", str(workspace), "--", "bash", "-c", TOKEN_SCAN,
        input_text=token + "\n",
    )  # fmt: skip
    as_proxy = world.as_user(
        ["podman", "exec", "--interactive", "--user", "1001:1001", name,
         "bash", "-c", TOKEN_SCAN],
        input_text=token + "\n",
        timeout=120,
    )  # fmt: skip

    for scan in (as_developer, as_proxy):
        assert scan.stdout.rstrip().endswith("done"), describe(scan)
        assert not _scan_values(scan.stdout, "env-hit"), describe(scan)
        assert not _scan_values(scan.stdout, "file-hit"), describe(scan)
    assert "handoff=same" in as_developer.stdout.split(), describe(as_developer)
    listed = _scan_values(as_developer.stdout, "pid") & _scan_values(
        as_proxy.stdout, "pid"
    )
    read = _scan_values(as_developer.stdout, "read") | _scan_values(
        as_proxy.stdout, "read"
    )
    assert listed, describe(as_developer)
    assert listed <= read, f"environments of pids {sorted(listed - read)} not read"
    inspected = world.podman("container", "inspect", name)
    assert inspected.returncode == 0, describe(inspected)
    assert token not in inspected.stdout, "podman inspect shows the token"


def test_p07_llm_proxy_serves_sdk_client(world: World) -> None:
    workspace = require_running(world)
    client = (
        "import anthropic\n"
        "client = anthropic.Anthropic(api_key='sk-client-must-not-pass')\n"
        "reply = client.messages.create(model='claude-e2e', max_tokens=32,"
        " messages=[{'role': 'user', 'content': 'e2e ping'}])\n"
        "print(reply.content[0].text)\n"
    )

    result = world.shell(workspace, f'/opt/aibox/venv/bin/python -c "{client}"')

    assert result.returncode == 0, describe(result)
    assert "Hello from the stand-in gateway." in result.stdout, describe(result)
    records = [
        json.loads(line) for line in world.upstream_record.read_text().splitlines()
    ]
    messages = [record for record in records if record["path"] == "/v1/messages"]
    assert messages, "no request reached foundry.internal"
    headers = {key.lower(): value for key, value in messages[-1]["headers"].items()}
    assert headers.get("x-api-key") == world.llm_key, "the injected key is missing"
    assert "sk-client-must-not-pass" not in json.dumps(headers)
    assert headers.get("x-aibox-user") == world.user
    assert headers.get("x-aibox-sandbox-id") == world.container_name(workspace)
    # The proxy writes the log into a host directory mounted per sandbox.
    payload_log = (
        world.log_dir / "llm" / world.container_name(workspace) / "llm-payloads.jsonl"
    )
    assert payload_log.is_file(), f"no payload log at {payload_log}"
    text = payload_log.read_text()
    assert "e2e ping" in text, f"the request is not in the payload log:\n{text}"
    assert "stand-in gateway" in text, f"the reply is not in the payload log:\n{text}"
    assert world.llm_key not in text, "the payload log contains the API key"


def test_p10_seccomp_blocks_dangerous_syscalls(world: World) -> None:
    workspace = require_running(world)
    numbers = json.dumps({name: SYSCALL_NUMBERS[name] for name in BLOCKED_SYSCALLS})

    result = world.aibox(
        "shell", "--workspace", str(workspace), "--",
        "python3", "-c", SYSCALL_PROBE, numbers,
    )  # fmt: skip

    assert result.returncode == 0, describe(result)
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(errors) == set(BLOCKED_SYSCALLS)
    wrong = {name: code for name, code in errors.items() if code != "EPERM"}
    assert not wrong, f"not EPERM: {wrong}"


def test_p08_stop_removes_container_keeps_volumes(world: World) -> None:
    workspace = require_running(world)
    marker = world.shell(workspace, "echo kept-across-stop > /home/dev/e2e-marker")
    assert marker.returncode == 0, describe(marker)
    volumes = world.volumes()

    result = world.aibox("stop", "--workspace", str(workspace))

    assert result.returncode == 0, describe(result)
    assert world.inspect(workspace) is None, "the container still exists after stop"
    assert world.volumes() == volumes


def test_p06_token_revoked_after_stop(world: World) -> None:
    token = world.state.get("git_token")
    assert token, "no token was obtained while the sandbox ran"
    assert world.inspect(main_workspace(world)) is None, "the sandbox was not stopped"

    assert world.vault_lookup(token) == 403


def test_p08_home_file_survives_restart(world: World) -> None:
    workspace = main_workspace(world)
    started = world.aibox("start", "--workspace", str(workspace))
    assert started.returncode == 0, describe(started)

    result = world.shell(workspace, "cat /home/dev/e2e-marker")

    assert result.stdout.strip() == "kept-across-stop", describe(result)
    stopped = world.aibox("stop", "--workspace", str(workspace))
    assert stopped.returncode == 0, describe(stopped)


def _records(world: World) -> list[dict[str, Any]]:
    path = world.log_dir / "decisions.jsonl"
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_p09_decision_log_records_and_verifies(world: World) -> None:
    path = world.log_dir / "decisions.jsonl"
    assert path.is_file(), f"no decision log at {path}"
    records = _records(world)  # every line must parse as JSON
    workspace = str(main_workspace(world).resolve())
    mine = [record for record in records if record.get("workspace") == workspace]
    kinds = [record["kind"] for record in mine]
    assert "container_start" in kinds, kinds
    assert "container_stop" in kinds, kinds
    for record in mine:
        if record["kind"] in ("container_start", "container_stop"):
            assert record["user"] == world.user
            assert record["image"], record
            assert record["policy_hash"] == world.state.get("policy_hash"), record

    verified = world.aibox("policy", "verify-log")
    assert verified.returncode == 0, describe(verified)


def test_p09_explain_first_start(world: World) -> None:
    records = _records(world)
    starts = [record for record in records if record["kind"] == "container_start"]
    assert starts, "the decision log has no container_start record"
    entry = str(starts[0]["seq"])

    result = world.aibox("policy", "explain", "--log-entry", entry)

    assert result.returncode == 0, describe(result)
    assert f"Record {entry} (container_start)" in result.stdout, describe(result)
    assert f"workspace {starts[0]['workspace']}" in result.stdout, describe(result)
    assert starts[0]["policy_hash"] in result.stdout, describe(result)
    assert "allow" in result.stdout.lower(), describe(result)


def test_p09_edited_line_fails_verification(world: World) -> None:
    path = world.log_dir / "decisions.jsonl"
    original = path.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    record = json.loads(lines[0])
    record["reason"] = f"{record.get('reason')} (edited)"
    lines[0] = json.dumps(record) + "\n"
    path.write_text("".join(lines))
    try:
        result = world.aibox("policy", "verify-log")
    finally:
        path.write_bytes(original)

    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr


def test_every_point_has_a_test() -> None:
    sources = "".join(
        path.read_text() for path in Path(__file__).parent.glob("test_e2e_*.py")
    )
    names = {int(match) for match in re.findall(r"def test_p(\d\d)_", sources)}
    assert names == set(POINTS)
