"""The simulated world of the acceptance suite, and the per-point summary.

One session builds a temporary system, log and run directory for aibox. It
creates an unprivileged user in the ``aibox`` group with a tmpfs runtime
directory. A network namespace contains ``vault.internal`` (an OpenBao dev server),
``git.internal`` (smart-HTTP git that accepts only live Vault tokens) and
``foundry.internal`` (an LLM gateway stand-in that records what reaches it).
Everything is removed again at the end of the session.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.netns import Namespace, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPOSITORY = Path(__file__).resolve().parents[2]
VENV = Path("/opt/aibox/venv")
AIBOX = str(VENV / "bin" / "aibox")
PYTHON = str(VENV / "bin" / "python")
BAO = str(VENV / "bin" / "bao")
PREFIX = "abxe2e"
USER_PREFIX = "aiboxe2e"
RUNSC_CONF = Path("/etc/containers/containers.conf.d/aibox-runsc.conf")
GROUP = "aibox"
# Simulated hosts live in 198.51.100.160/28, and the host end of the veth is .161.
HOSTS_SUBNET = "198.51.100.160/28"
SANDBOX_NETWORK = {
    "podman_network": PREFIX,
    "subnet": "10.213.240.0/24",
    "bridge": f"{PREFIX}0",
}
VAULT_PORT = 8200
SERVICE_PORT = 80

POINTS = {
    1: "full pytest run green and 'opa test policies/' passes >= 34 tests",
    2: "'aibox setup --system' and 'aibox setup' succeed and are idempotent",
    3: "rootless start with gVisor and seccomp; require_apparmor refuses cleanly",
    4: "policy validated at start: loosening refused, valid one labels the hash",
    5: "DNS and egress only through CoreDNS and Squid to allowlisted hosts",
    6: "Vault token for git.internal, clone works, hidden, revoked after stop",
    7: "LLM proxy serves the SDK, injects key and identity, logs the payload",
    8: "'aibox stop' removes the container and keeps the volumes",
    9: "decision log records start and stop, verifies, detects an edit, explains",
    10: "seccomp blocks 14 dangerous syscalls with EPERM inside gVisor",
}

_outcomes: dict[int, list[str]] = {}
_POINT_TEST = re.compile(r"::test_p(\d\d)_")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    match = _POINT_TEST.search(report.nodeid)
    if match is None:
        return
    if report.when == "call" or report.outcome != "passed":
        _outcomes.setdefault(int(match.group(1)), []).append(report.outcome)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print one line per acceptance point after the run."""
    if not _outcomes:
        return
    stats = terminalreporter.stats
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    terminalreporter.section("acceptance points")
    for number, what in POINTS.items():
        outcomes = _outcomes.get(number)
        if not outcomes:
            status = "NOT RUN"
        elif all(outcome == "passed" for outcome in outcomes):
            status = "PASS"
        else:
            status = "FAIL"
        if number == 1:
            if status == "PASS" and (failed or skipped):
                status = "FAIL"
            what = f"{what} (session: {failed} failed, {skipped} skipped)"
        terminalreporter.write_line(f"e2e point {number}: {status}  {what}")


def run(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Return the command, exit code and output, for assertion messages."""
    return (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


@dataclass
class World:
    """Paths, the test user and the simulated services of one session."""

    root: Path
    user: str
    namespace: Namespace
    vault_address: str
    vault_token: str
    addresses: dict[str, str]
    llm_key: str
    upstream_record: Path
    git_log: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def system_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def root_config(self) -> Path:
        return self.root / "root-config.yaml"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.user).pw_gid

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.user).pw_dir)

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    @property
    def user_config(self) -> Path:
        return self.home / ".config" / "aibox" / "config.yaml"

    @property
    def host_token_file(self) -> Path:
        return self.home / ".vault-host-token"

    def workspace(self, name: str) -> Path:
        path = self.root / "workspaces" / name
        if not path.exists():
            path.mkdir(parents=True)
            os.chown(path, self.uid, self.gid)
            # NOTE: rootless gVisor ignores the user namespace mapping on bind
            # mounts, so the sandbox's uid 1000 can write /workspace only when
            # the host directory is writable by everyone.
            path.chmod(0o777)
        return path

    def _paths_env(self) -> dict[str, str]:
        return {
            "AIBOX_SYSTEM_DIR": str(self.system_dir),
            "AIBOX_LOG_DIR": str(self.log_dir),
            "AIBOX_RUN_DIR": str(self.run_dir),
        }

    def root_env(self) -> dict[str, str]:
        env = {
            "PATH": f"{VENV}/bin:/opt/aibox/bin:/usr/local/sbin:/usr/local/bin:"
            "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.root / "root-home"),
            "LANG": "C.UTF-8",
            "AIBOX_CONFIG": str(self.root_config),
            **self._paths_env(),
        }
        return env

    def user_env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            **self._paths_env(),
        }

    def aibox_root(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([AIBOX, *args], env=self.root_env())

    def as_user(
        self, command: list[str], input_text: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env_args = [f"{key}={value}" for key, value in self.user_env().items()]
        return run(
            ["runuser", "-u", self.user, "--", "env", "-i", *env_args, *command],
            input_text=input_text,
            timeout=timeout,
        )

    def aibox(
        self, *args: str, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.as_user([AIBOX, *args], input_text=input_text)

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.as_user(["podman", *args], timeout=120)

    def shell(self, workspace: Path, script: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash inside the sandbox through ``aibox shell``."""
        return self.aibox(
            "shell", "--workspace", str(workspace), "--", "bash", "-c", script
        )

    def container_name(self, workspace: Path) -> str:
        import hashlib

        digest = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:8]
        return f"aibox-{self.user}-{digest}"

    def inspect(self, workspace: Path) -> dict[str, Any] | None:
        result = self.podman("container", "inspect", self.container_name(workspace))
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)
        return data[0] if data else None

    def volumes(self) -> list[str]:
        result = self.podman("volume", "ls", "--format", "{{.Name}}")
        assert result.returncode == 0, describe(result)
        return sorted(result.stdout.split())

    def containers(self) -> list[str]:
        result = self.podman("ps", "--all", "--format", "{{.Names}}")
        assert result.returncode == 0, describe(result)
        return sorted(result.stdout.split())

    def vault_lookup(self, token: str) -> int:
        """Return the HTTP status of Vault's lookup-self for ``token``."""
        request = urllib.request.Request(
            f"{self.vault_address}/v1/auth/token/lookup-self",
            headers={"X-Vault-Token": token},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    def network_config(self) -> dict[str, Any]:
        return {
            **SANDBOX_NETWORK,
            "static_addresses": {
                f"{name}.internal": address for name, address in self.addresses.items()
            },
        }

    def user_settings(self) -> dict[str, Any]:
        """The config sections the developer sets to use the simulated services."""
        return {
            "network": self.network_config(),
            "credentials": {
                "backend": "vault",
                "vault": {
                    "address": self.vault_address,
                    "token_file": str(self.host_token_file),
                    "sandbox_address": f"http://vault.internal:{VAULT_PORT}",
                },
            },
            "llm": {
                "anthropic_upstream": "http://foundry.internal",
                "openai_upstream": "http://foundry.internal",
            },
        }

    def write_org_policy(self, **runtime: Any) -> None:
        """Write the org policy: the packaged baseline with the test service ports."""
        source = REPOSITORY / "src" / "aibox" / "data" / "org-policy.yaml"
        policy = yaml.safe_load(source.read_text())
        for rule in policy["network"]["allow"]:
            if rule["id"] in ("git", "foundry"):
                rule["ports"] = sorted({*rule["ports"], SERVICE_PORT})
        policy["runtime"].update(runtime)
        self.system_dir.mkdir(parents=True, exist_ok=True)
        target = self.system_dir / "org-policy.yaml"
        target.write_text(yaml.safe_dump(policy, sort_keys=False))
        target.chmod(0o644)


def _start_vault(namespace: Namespace, address: str, token: str) -> str:
    namespace.spawn(
        [
            BAO,
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address={address}:{VAULT_PORT}",
        ],
        "vault.log",
        env={"PATH": "/usr/bin:/bin", "HOME": str(namespace.log_dir)},
    )
    url = f"http://{address}:{VAULT_PORT}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/v1/sys/health", timeout=1) as reply:
                return bool(reply.status == 200)
        except urllib.error.URLError:
            return False

    wait_for(healthy, f"OpenBao at {url}")
    return url


def _make_repository(root: Path) -> Path:
    projects = root / "git-projects"
    bare = projects / "repo.git"
    seed = root / "git-seed"
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"]
    commands = [
        ["git", "init", "-q", "--bare", "-b", "main", str(bare)],
        ["git", "init", "-q", "-b", "main", str(seed)],
    ]
    for command in commands:
        subprocess.run(command, check=True, timeout=60)
    (seed / "README").write_text("served by git.internal\n")
    subprocess.run([*git, "-C", str(seed), "add", "README"], check=True, timeout=60)
    subprocess.run(
        [*git, "-C", str(seed), "commit", "-q", "-m", "seed"], check=True, timeout=60
    )
    subprocess.run(
        [*git, "-C", str(seed), "push", "-q", str(bare), "main"], check=True, timeout=60
    )
    return projects


def _port_open(address: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) == 0


def _create_user(name: str) -> None:
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/bash", name],
        check=True,
        timeout=60,
    )


def _mount_runtime_dir(world: World) -> None:
    """Give the user a tmpfs XDG_RUNTIME_DIR, as systemd-logind would."""
    directory = world.runtime_dir
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mount", "-t", "tmpfs",
            "-o", f"mode=700,uid={world.uid},gid={world.gid},size=64m",
            "tmpfs", str(directory),
        ],
        check=True,
        timeout=30,
    )  # fmt: skip


def _end_user_processes(uid: int) -> None:
    """End the processes left by the test user (its Podman pause process, relays)."""
    import psutil

    victims = [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _teardown_network(world: World) -> None:
    """Stop the suite's Squid and CoreDNS and remove its table, route and network."""
    saved = dict(os.environ)
    os.environ.update(world.root_env())
    try:
        from aibox.config import load_config
        from aibox.network.host import teardown_network

        teardown_network(load_config(world.root_config))
    except Exception as exc:
        print(f"e2e cleanup: network teardown failed: {exc}")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for pidfile in world.run_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
    subprocess.run(["nft", "delete", "table", "inet", PREFIX], capture_output=True)
    subprocess.run(
        ["ip", "route", "del", "blackhole", SANDBOX_NETWORK["subnet"]],
        capture_output=True,
    )
    subprocess.run(["podman", "network", "rm", "-f", PREFIX], capture_output=True)
    subprocess.run(["ip", "link", "del", f"{PREFIX}0"], capture_output=True)


def _remove_user(world: World) -> None:
    world.as_user(["podman", "rm", "--all", "--force", "--time", "0"], timeout=120)
    world.as_user(["podman", "volume", "rm", "--all", "--force"], timeout=120)
    world.as_user(["podman", "system", "reset", "--force"], timeout=120)
    uid = world.uid
    _end_user_processes(uid)
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = [line.split()[4] for line in handle]
    for mount_point in reversed(mounts):
        if mount_point == str(world.runtime_dir) or mount_point.startswith(
            f"{world.runtime_dir}/"
        ):
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
    with contextlib.suppress(OSError):
        world.runtime_dir.rmdir()
    subprocess.run(["userdel", "--remove", world.user], capture_output=True)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Build the simulated machine, network and services; remove them afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the acceptance suite needs root (run it through scripts/test)")
    for tool in ("podman", "runsc", "ip", "nft", "squid", "git", "runuser"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run scripts/install-deps.sh")
    tag = secrets.token_hex(3)
    root = Path(f"/tmp/{PREFIX}-{tag}")
    root.mkdir(mode=0o755)
    group_existed = _group_exists()
    runsc_conf_existed = RUNSC_CONF.exists()
    namespace = Namespace(f"{PREFIX}{tag}", HOSTS_SUBNET, root / "services")
    user = f"{USER_PREFIX}{tag}"
    world: World | None = None
    try:
        vault_ip, git_ip, foundry_ip = namespace.create(3)
        token = f"root-{secrets.token_hex(12)}"
        vault = _start_vault(namespace, vault_ip, token)
        projects = _make_repository(root)
        git_log = root / "services" / "git.log"
        namespace.spawn(
            [PYTHON, str(FIXTURES / "git_server.py"), git_ip, str(SERVICE_PORT),
             str(projects), vault],
            "git.log",
        )  # fmt: skip
        record = root / "services" / "upstream.jsonl"
        record.touch()
        namespace.spawn(
            [PYTHON, str(FIXTURES / "llm_upstream.py"), foundry_ip, str(SERVICE_PORT),
             str(record)],
            "foundry.log",
        )  # fmt: skip
        wait_for(lambda: _port_open(git_ip, SERVICE_PORT), "git.internal")
        wait_for(lambda: _port_open(foundry_ip, SERVICE_PORT), "foundry.internal")
        _create_user(user)
        world = World(
            root=root,
            user=user,
            namespace=namespace,
            vault_address=vault,
            vault_token=token,
            addresses={"vault": vault_ip, "git": git_ip, "foundry": foundry_ip},
            llm_key=f"sk-ant-e2e-{secrets.token_hex(16)}",
            upstream_record=record,
            git_log=git_log,
        )
        _mount_runtime_dir(world)
        world.host_token_file.write_text(token)
        os.chown(world.host_token_file, world.uid, world.gid)
        world.host_token_file.chmod(0o600)
        world.root_config.write_text(
            yaml.safe_dump({"network": world.network_config()}, sort_keys=False)
        )
        world.write_org_policy()
        yield world
    finally:
        if world is not None:
            _remove_user(world)
            _teardown_network(world)
        namespace.stop()
        namespace.delete()
        if not runsc_conf_existed:
            RUNSC_CONF.unlink(missing_ok=True)
        if not group_existed and _group_exists():
            subprocess.run(["groupdel", GROUP], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _group_exists() -> bool:
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        return False
    return True


def wait_until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)
