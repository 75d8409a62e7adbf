"""Running ``aibox-llm-proxy`` inside a sandbox.

The proxy runs as its own process under uid 1001 (``llmproxy``), started with
``podman exec``. It reads the key from the credential tmpfs file, which is mode
0400 and owned by uid 1001, so the developer's uid 1000 can read neither the file
nor the proxy's ``/proc/<pid>/environ``. The key is never in an environment
variable or on the command line.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aibox import paths
from aibox.config import Config
from aibox.errors import AiboxError
from aibox.policy.effective import EffectivePolicy
from aibox.sandbox.podman import Podman
from aibox.sandbox.security import CONFINE_PREFIX, LABEL_PREFIX

PROXY_UID = 1001
PROXY_EXECUTABLE = "/opt/aibox/venv/bin/aibox-llm-proxy"
PROXY_PYTHON = "/opt/aibox/venv/bin/python"
KEY_FILE = "/run/aibox/credentials/llm-api-key"
PAYLOAD_LOG_DIR = "/var/log/aibox"
PAYLOAD_LOG = f"{PAYLOAD_LOG_DIR}/llm-payloads.jsonl"
READY_TIMEOUT_SECONDS = 15.0

# Probes /healthz from inside the container and exits 0 when it returns 200.
_HEALTH_PROBE = """
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
"""


def llm_environment(config: Config) -> dict[str, str]:
    """Return the environment variables that point SDKs at the in-sandbox proxy."""
    base = f"http://{config.llm.listen}"
    return {"ANTHROPIC_BASE_URL": base, "OPENAI_BASE_URL": f"{base}/v1"}


def _hosts_of(config: Config) -> set[str]:
    hosts = set()
    for url in (config.llm.anthropic_upstream, config.llm.openai_upstream):
        host = urlsplit(url).hostname
        if host:
            hosts.add(host.lower())
    return hosts


def policy_limits(
    policy_data: Mapping[str, Any], upstream_hosts: set[str]
) -> dict[str, int]:
    """Return the proxy's limits from the effective policy's JSON form.

    Rate limits come from every ``network.allow`` entry that lists an upstream
    host; when several do, the lowest value of each limit applies, because the
    proxy has one set of buckets. ``max_request_bytes`` comes from ``llm``.
    """
    limits: dict[str, int] = {}
    network = policy_data.get("network") or {}
    for entry in network.get("allow") or []:
        hosts = {str(host).lower() for host in entry.get("hosts") or []}
        rate_limit = entry.get("rate_limit") or {}
        if not hosts & upstream_hosts:
            continue
        for name in ("requests_per_min", "tokens_per_min"):
            value = rate_limit.get(name)
            if isinstance(value, int) and value > 0:
                limits[name] = min(value, limits.get(name, value))
    llm = policy_data.get("llm") or {}
    max_bytes = llm.get("max_request_bytes")
    if isinstance(max_bytes, int) and max_bytes > 0:
        limits["max_request_bytes"] = max_bytes
    return limits


def proxy_command(
    config: Config,
    policy_data: Mapping[str, Any],
    sandbox_id: str,
    user: str,
    rootless: bool = False,
) -> list[str]:
    """Return the in-container command line of the proxy (it carries no secret).

    A rootless sandbox has no network interface; its relay serves the egress
    proxy on the sandbox's loopback instead of the bridge gateway.
    """
    proxy_host = "127.0.0.1" if rootless else config.network.gateway
    upstream_proxy = f"http://{proxy_host}:{config.network.proxy_port}"
    command = [
        PROXY_EXECUTABLE,
        "--listen",
        config.llm.listen,
        "--anthropic-upstream",
        config.llm.anthropic_upstream,
        "--openai-upstream",
        config.llm.openai_upstream,
        "--upstream-proxy",
        upstream_proxy,
        "--key-file",
        KEY_FILE,
        "--sandbox-id",
        sandbox_id,
        "--user",
        user,
        "--payload-log",
        PAYLOAD_LOG,
    ]
    limits = policy_limits(policy_data, _hosts_of(config))
    for name, value in sorted(limits.items()):
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def payload_log_dir(sandbox_id: str, rootless: bool = True) -> Path:
    """Return the host directory that contains one sandbox's LLM payload log.

    Root-run sandboxes write theirs below a root-only directory, because their
    uid 1001 is whichever host account has that number.
    """
    if rootless:
        return paths.log_dir() / "llm" / sandbox_id
    return paths.log_dir() / "llm" / "root-run" / sandbox_id


def payload_log_mount_args(sandbox_id: str, rootless: bool) -> list[str]:
    """Create the sandbox's payload log directory and return its mount arguments.

    The directory belongs to uid 1001 inside the sandbox, so the proxy can write
    the log and the developer's uid 1000 can neither read nor change it.
    """
    directory = payload_log_dir(sandbox_id, rootless)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not rootless:
            os.chown(directory.parent, 0, 0)
            os.chmod(directory.parent, 0o700)
        if rootless:
            # A directory that an earlier start handed to uid 1001 already has
            # its mode and group, and only the user namespace may change it.
            if directory.stat().st_uid == os.getuid():
                # NOTE: rootless runsc ignores the user namespace mapping on bind
                # mounts, so uid 1001 is "other" there and needs write and search
                # permission. uid 1000 can then append to the log but not list it.
                os.chmod(directory, 0o733)  # noqa: S103 - see the NOTE above
                # The setgid log directory hands down the aibox group, which is
                # not mapped in the user namespace; chown there needs a mapped
                # group.
                os.chown(directory, -1, os.getgid())
            engine = Podman.locate("podman")
            engine.run(
                ["unshare", "chown", f"{PROXY_UID}:{PROXY_UID}", str(directory)],
                timeout=30,
            )
        else:
            os.chown(directory, PROXY_UID, PROXY_UID)
            os.chmod(directory, 0o700)
    except OSError as exc:
        raise AiboxError(
            f"cannot prepare the LLM payload log directory {directory}: {exc.strerror}",
            hint="Run 'sudo aibox setup --system' so the log directory is "
            "writable by the aibox group.",
        ) from None
    return ["--volume", f"{directory}:{PAYLOAD_LOG_DIR}:rw,nosuid,nodev,noexec"]


def _sandbox_user(engine: Podman, container: str) -> str:
    data = engine.inspect_container(container) or {}
    labels = (data.get("Config") or {}).get("Labels") or {}
    return str(labels.get(f"{LABEL_PREFIX}.user") or getpass.getuser())


def _key_provisioned(engine: Podman, container: str) -> bool:
    result = engine.run(
        [
            "exec",
            "--user",
            f"{PROXY_UID}:{PROXY_UID}",
            container,
            "test",
            "-r",
            KEY_FILE,
        ],
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def _healthy(engine: Podman, container: str, url: str) -> bool:
    probe = [PROXY_PYTHON, "-c", _HEALTH_PROBE, url]
    result = engine.run(
        ["exec", "--user", f"{PROXY_UID}:{PROXY_UID}", container, *probe],
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def start_llm_proxy(
    config: Config, policy: EffectivePolicy, container: str, rootless: bool
) -> str | None:
    """Start the proxy as its own process inside the running ``container``.

    Returns None once ``/healthz`` responds, or a warning when no LLM API key was
    provisioned (the proxy then does not run, and SDK calls fail to connect).
    Raises AiboxError when the proxy does not respond within
    ``READY_TIMEOUT_SECONDS``. ``rootless`` needs no change here, because
    ``podman exec`` maps uid 1001 through the container's own user namespace.
    """
    engine = Podman.locate(config.runtime)
    user = _sandbox_user(engine, container)
    command = proxy_command(config, policy.data, container, user, rootless)
    url = f"http://{config.llm.listen}/healthz"
    if _healthy(engine, container, url):
        return None
    if not _key_provisioned(engine, container):
        return (
            "no LLM API key is stored, so the LLM proxy is not running; store one "
            "with 'aibox auth add llm-api-key' (or in Vault) and restart the sandbox"
        )

    # Under gVisor, exec'd processes escape the container's seccomp profile
    # unless they load it themselves through the confinement launcher.
    data = engine.inspect_container(container) or {}
    if data.get("OCIRuntime") == "runsc":
        command = [*CONFINE_PREFIX, *command]
    # payload_log_mount_args mounts the payload log directory. Without it the
    # proxy exits at start and this function raises, so no sandbox runs
    # without a payload log.
    engine.run(
        ["exec", "--detach", "--user", f"{PROXY_UID}:{PROXY_UID}", container, *command],
        timeout=30,
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _healthy(engine, container, url):
            return None
        time.sleep(0.2)
    raise AiboxError(
        f"the LLM proxy in sandbox {container} did not answer {url} within "
        f"{READY_TIMEOUT_SECONDS:.0f} s",
        hint=f"Run 'podman exec --user {PROXY_UID} {container} {' '.join(command)}' "
        "to see its error; check the key file and the payload log directory.",
    )
