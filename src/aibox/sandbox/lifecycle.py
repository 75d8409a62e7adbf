"""Start, stop and enter a sandbox around a workspace.

``start`` calls the other areas in a fixed order: effective policy (before anything
is created), host network enforcement, credentials, the container itself, then the
LLM proxy inside it. Anything this start created is removed again when a later step
fails, and credentials it issued are revoked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aibox import paths
from aibox.config import Config, parse_bytes
from aibox.credentials import sandbox as credentials
from aibox.errors import AiboxError, UsageError
from aibox.llm_proxy import sandbox as llm_proxy
from aibox.network import enforcement
from aibox.policy.effective import EffectivePolicy, compute_effective_policy
from aibox.policy.errors import PolicyViolationError
from aibox.sandbox import apparmor, image, seccomp, security
from aibox.sandbox import workspace as ws
from aibox.sandbox.podman import Podman, PodmanError
from aibox.sandbox.runtime import runtime_settings, select_runtime

log = logging.getLogger(__name__)

Notify = Callable[[str], None]

CGROUP_V2_CONTROLLERS = Path("/sys/fs/cgroup/cgroup.controllers")


@dataclass(frozen=True)
class Sandbox:
    """The identity of one sandbox: its workspace, owner and container name."""

    workspace: Path
    user: str
    name: str

    @classmethod
    def for_workspace(cls, workspace: Path, user: str | None = None) -> Sandbox:
        real = ws.validate_workspace(workspace)
        owner = user or ws.current_user()
        return cls(workspace=real, user=owner, name=ws.container_name(real, owner))


@dataclass
class StartResult:
    """The outcome of ``start``: ``created``, ``restarted`` or ``already-running``."""

    sandbox: Sandbox
    action: str
    runtime: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Created:
    """The resources one start created, so a failure removes exactly those."""

    volumes: list[str] = field(default_factory=list)
    container: str | None = None
    credentials_issued: bool = False


def lock_path(name: str) -> Path:
    return paths.user_state_dir() / "locks" / f"{name}.lock"


STOP_WAIT_SECONDS = 180.0


@contextlib.contextmanager
def start_lock(name: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the start lock for ``name``.

    With ``wait_seconds`` 0 a held lock raises AiboxError at once. Otherwise the
    caller waits up to that long for the other process. ``stop`` waits, so a stop
    issued during a start removes the sandbox that start creates.
    """
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AiboxError(
                        f"sandbox {name} is already being started by another "
                        f"aibox process (lock {path})",
                        hint="Wait for that start to finish, then run 'aibox status'.",
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_denied_paths(workspace: Path, policy_data: Mapping[str, Any]) -> None:
    """Raise UsageError when ``workspace`` is a path the policy's filesystem denies.

    ``~`` in a deny entry is the invoking user's home directory.
    """
    section = policy_data.get("filesystem") or {}
    for entry in section.get("deny") or []:
        denied = Path(os.path.expanduser(str(entry))).resolve()
        if workspace == denied or denied in workspace.parents:
            raise UsageError(
                f"workspace {workspace} is inside {entry}, which the effective "
                "policy's filesystem.deny lists",
                hint="Pass a project directory outside the denied paths.",
            )


def effective_resources(
    config: Config, policy_data: Mapping[str, Any]
) -> security.Resources:
    """Combine config resources with the policy's, keeping the lower of each."""
    section = policy_data.get("resources") or {}
    if not isinstance(section, Mapping):
        raise UsageError("effective policy: 'resources' must be a mapping")
    security.check_requested_controls(section, "effective policy 'resources'")
    cpus = config.resources.cpus
    memory = config.resources.memory_bytes
    pids = config.resources.pids
    try:
        if "cpu" in section:
            cpus = min(cpus, float(section["cpu"]))
        if "memory" in section:
            memory = min(memory, parse_bytes(section["memory"]))
        if "pids" in section:
            pids = min(pids, int(section["pids"]))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"effective policy: invalid resources value: {exc}",
            hint="Use a number for cpu and pids and a size such as 8Gi for memory.",
        ) from None
    # NOTE: resources.disk is validated and merged but not enforced, because
    # Podman's size quota needs overlay on XFS with project quotas.
    return security.Resources(cpus=cpus, memory_bytes=memory, pids=pids)


def _labels_match(
    data: Mapping[str, Any], policy: EffectivePolicy, image_name: str
) -> bool:
    labels = (data.get("Config") or {}).get("Labels") or {}
    from aibox import __version__

    return (
        labels.get(f"{security.LABEL_PREFIX}.policy-hash") == policy.hash
        and labels.get(f"{security.LABEL_PREFIX}.version") == __version__
        and labels.get(f"{security.LABEL_PREFIX}.image") == image_name
    )


def _record_decision(
    action: str, sandbox: Sandbox, policy_hash: str, **details: Any
) -> None:
    """Append a container_start or container_stop record to the decision log."""
    from aibox.policy.decisions import record_sandbox_event

    record_sandbox_event(
        action,
        sandbox_id=sandbox.name,
        user=sandbox.user,
        workspace=str(sandbox.workspace),
        policy_hash=policy_hash,
        details=details,
    )


def start(
    config: Config,
    workspace: Path,
    notify: Notify,
    podman: Podman | None = None,
) -> StartResult:
    """Start the sandbox for ``workspace``: create, restart, or leave it running."""
    sandbox = Sandbox.for_workspace(workspace)
    try:
        policy = compute_effective_policy(config, sandbox.workspace)
    except PolicyViolationError as exc:
        _record_denial(sandbox, config.image, "policy.effective", exc, "")
        raise
    check_denied_paths(sandbox.workspace, policy.data)
    resources = effective_resources(config, policy.data)
    runtime_settings(policy.data)
    engine = podman or Podman.locate(config.runtime)
    warnings = []
    state = apparmor.detect()
    try:
        warning = apparmor.enforce_requirement(
            state,
            config.gvisor.require_apparmor or policy.require_apparmor,
            engine.rootless,
        )
    except AiboxError as exc:
        _record_denial(
            sandbox, config.image, "runtime.require_apparmor", exc, policy.hash
        )
        raise
    if warning:
        warnings.append(warning)
    if engine.rootless and not CGROUP_V2_CONTROLLERS.exists():
        # NOTE: rootless Podman can only apply limits through a delegated
        # cgroup v2 tree; on cgroup v1 hosts the limits are silently dropped.
        warnings.append(
            "this host has no cgroup v2, so rootless Podman cannot apply the CPU, "
            "memory and pids limits; the sandbox runs without them"
        )
    if policy.rootless and not engine.rootless:
        # NOTE: root-run sandboxes stay allowed for administrators and CI; the
        # policy's rootless requirement is reported, not enforced, for them.
        warnings.append(
            "the effective policy requires rootless sandboxes, but this one runs "
            "under root-run Podman; developers should run aibox as themselves"
        )

    with start_lock(sandbox.name):
        existing = engine.inspect_container(sandbox.name)
        if existing is not None and not _labels_match(existing, policy, config.image):
            notify(f"recreating {sandbox.name}: policy, image or aibox version changed")
            engine.remove_container(sandbox.name)
            existing = None
        if existing is not None:
            if existing["State"]["Running"]:
                return StartResult(
                    sandbox, "already-running", _runtime_of(existing), warnings
                )
            enforcement.check_host_enforcement(config, policy, engine.rootless)
            engine.run(security.start_args(existing), timeout=120)
            enforcement.attach_sandbox_network(config, sandbox.name, engine.rootless)
            _note(
                warnings,
                llm_proxy.start_llm_proxy(
                    config, policy, sandbox.name, engine.rootless
                ),
            )
            _record_decision(
                "container_start",
                sandbox,
                policy.hash,
                warm=True,
                image=config.image,
                sources=list(policy.sources),
                runtime=policy.data.get("runtime"),
            )
            return StartResult(sandbox, "restarted", _runtime_of(existing), warnings)
        runtime_name = _create(
            config, sandbox, policy, resources, engine, state, notify, warnings
        )
    _record_decision(
        "container_start",
        sandbox,
        policy.hash,
        warm=False,
        image=config.image,
        sources=list(policy.sources),
        runtime=policy.data.get("runtime"),
    )
    return StartResult(sandbox, "created", runtime_name, warnings)


def _record_denial(
    sandbox: Sandbox, image_name: str, rule: str, error: AiboxError, policy_hash: str
) -> None:
    """Record a refused start; a log failure must not hide the refusal itself."""
    from aibox.policy.decisions import record_decision

    violations = getattr(error, "violations", None) or [error.message]
    try:
        record_decision(
            "container_start",
            user=sandbox.user,
            workspace=sandbox.workspace,
            sandbox_id=sandbox.name,
            image=image_name,
            policy_hash=policy_hash or None,
            input={"violations": violations},
            decision="deny",
            rule=rule,
            reason=f"start refused: {'; '.join(violations)}",
        )
    except (AiboxError, OSError) as exc:
        log.error("failed to record the refused start of %s: %s", sandbox.name, exc)


def _note(warnings: list[str], warning: str | None) -> None:
    if warning:
        warnings.append(warning)


def _runtime_of(data: Mapping[str, Any]) -> str:
    labels = (data.get("Config") or {}).get("Labels") or {}
    return str(
        labels.get(f"{security.LABEL_PREFIX}.runtime", data.get("OCIRuntime", ""))
    )


def _create(
    config: Config,
    sandbox: Sandbox,
    policy: EffectivePolicy,
    resources: security.Resources,
    engine: Podman,
    state: apparmor.AppArmorState,
    notify: Notify,
    warnings: list[str],
) -> str:
    """Create and run a new container; undo everything on failure."""
    enforcement.check_host_enforcement(config, policy, engine.rootless)
    network_args = enforcement.container_network_args(config, engine.rootless)
    runtime = select_runtime(
        config, policy.data, engine.rootless, network_args, sandbox.workspace
    )
    profile = seccomp.profile_path(gvisor=runtime.is_gvisor)
    created = _Created()
    wanted = {
        volume for volume, _ in security.volume_mounts(sandbox.user, config.caches)
    }
    # podman run creates missing named volumes itself; what it created is the
    # difference between the volume lists before and after.
    existing_volumes = engine.list_volumes()
    # No container exists, so credentials recorded for this sandbox are left over
    # from a start that crashed or a container removed behind aibox's back.
    if credentials.has_credential_record(sandbox.name):
        credentials.revoke_sandbox_credentials(config, sandbox.name)
    try:
        # Rootless runc runs with keep-id, which changes who uid 1000 is on the
        # host, and the credential files must be owned accordingly.
        extra_args = credentials.prepare_sandbox_credentials(
            config,
            policy,
            sandbox.name,
            sandbox.user,
            engine.rootless,
            keep_id=engine.rootless and not runtime.is_gvisor,
        )
        created.credentials_issued = True
        extra_args += llm_proxy.payload_log_mount_args(sandbox.name, engine.rootless)
        spec = security.SandboxSpec(
            name=sandbox.name,
            user=sandbox.user,
            workspace=sandbox.workspace,
            image=config.image,
            runtime=runtime,
            seccomp_profile=profile,
            confine_profile=seccomp.profile_path(gvisor=False)
            if runtime.is_gvisor
            else None,
            resources=resources,
            rootless=engine.rootless,
            apparmor=state.active,
            caches=config.caches,
            policy_hash=policy.hash,
            network_args=tuple(network_args),
            extra_args=tuple(extra_args),
            environment=llm_proxy.llm_environment(config),
        )
        created.container = sandbox.name
        _run_container(engine, security.build_run_args(spec), config.image, notify)
        enforcement.attach_sandbox_network(config, sandbox.name, engine.rootless)
        _note(
            warnings,
            llm_proxy.start_llm_proxy(config, policy, sandbox.name, engine.rootless),
        )
    except BaseException:
        try:
            created.volumes = sorted(
                (engine.list_volumes() & wanted) - existing_volumes
            )
        except AiboxError as exc:
            log.error("cleanup after failed start: cannot list volumes: %s", exc)
        _undo(config, engine, sandbox, created)
        raise
    return runtime.name


def _run_container(
    engine: Podman, args: list[str], image_name: str, notify: Notify
) -> None:
    """Run the container; import or build the image first only when it is missing.

    Checking the image only after ``podman run`` reports it missing saves a Podman
    call on every start. ``aibox doctor`` reports an image from an older recipe.
    """
    try:
        engine.run(args, timeout=180)
    except PodmanError as exc:
        if "image not known" not in exc.stderr and "no such image" not in exc.stderr:
            raise
        engine.remove_container(args[args.index("--name") + 1])
        image.ensure_image(engine, image_name, notify)
        engine.run(args, timeout=180)


def _undo(config: Config, engine: Podman, sandbox: Sandbox, created: _Created) -> None:
    """Remove what one failed start created; keep going past cleanup errors."""
    steps: list[tuple[str, Callable[[], None]]] = []
    if created.container:
        steps.append(
            (f"container {sandbox.name}", lambda: engine.remove_container(sandbox.name))
        )
    for volume in created.volumes:
        steps.append((f"volume {volume}", lambda v=volume: engine.remove_volume(v)))  # type: ignore[misc]
    if created.credentials_issued:
        steps.append(
            (
                "credentials",
                lambda: credentials.revoke_sandbox_credentials(config, sandbox.name),
            )
        )
    for what, step in steps:
        try:
            step()
        except AiboxError as exc:
            log.error("cleanup after failed start: cannot remove %s: %s", what, exc)


def stop(config: Config, workspace: Path, podman: Podman | None = None) -> bool:
    """Remove the sandbox container, keep its volumes; return False if none existed."""
    sandbox = Sandbox.for_workspace(workspace)
    return _stop(config, sandbox, podman or Podman.locate(config.runtime))


def stop_by_name(config: Config, name: str, podman: Podman | None = None) -> bool:
    """Stop the sandbox container ``name``, for a workspace that moved or is gone."""
    user = ws.current_user()
    if not name.startswith(f"aibox-{user}-"):
        raise UsageError(
            f"{name} is not one of your sandboxes (they are named aibox-{user}-...)",
            hint="List them with 'podman ps --filter label=io.aibox.version'.",
        )
    engine = podman or Podman.locate(config.runtime)
    data = engine.inspect_container(name)
    if data is None:
        return False
    labels = (data.get("Config") or {}).get("Labels") or {}
    workspace = Path(str(labels.get(f"{security.LABEL_PREFIX}.workspace", "/")))
    return _stop(config, Sandbox(workspace=workspace, user=user, name=name), engine)


def _stop(config: Config, sandbox: Sandbox, engine: Podman) -> bool:
    with start_lock(sandbox.name, wait_seconds=STOP_WAIT_SECONDS):
        data = engine.inspect_container(sandbox.name)
        if data is None:
            return False
        labels = (data.get("Config") or {}).get("Labels") or {}
        engine.remove_container(sandbox.name)
        enforcement.detach_sandbox_network(sandbox.name)
        credentials.revoke_sandbox_credentials(config, sandbox.name)
    _record_decision(
        "container_stop",
        sandbox,
        str(labels.get(f"{security.LABEL_PREFIX}.policy-hash", "")),
        image=labels.get(f"{security.LABEL_PREFIX}.image"),
    )
    return True


def user_volumes(config: Config, user: str) -> list[str]:
    return [volume for volume, _ in security.volume_mounts(user, config.caches)]


def purge_volumes(
    config: Config, workspace: Path, podman: Podman | None = None
) -> list[str]:
    """Remove the user's sandbox volumes unless another of their sandboxes exists."""
    sandbox = Sandbox.for_workspace(workspace)
    engine = podman or Podman.locate(config.runtime)
    others = engine.run(
        [
            "ps", "--all", "--format", "{{.Names}}",
            "--filter", f"label={security.LABEL_PREFIX}.user={sandbox.user}",
        ],
        timeout=60,
    ).stdout.split()  # fmt: skip
    if others:
        raise AiboxError(
            f"volumes are in use by other sandboxes: {', '.join(others)}",
            hint="Stop those sandboxes first with 'aibox stop --workspace DIR'.",
        )
    removed = []
    for volume in user_volumes(config, sandbox.user):
        if engine.volume_exists(volume):
            engine.remove_volume(volume)
            removed.append(volume)
    return removed


def exec_args(
    sandbox: Sandbox,
    command: list[str],
    tty: bool,
    env: Mapping[str, str],
    gvisor: bool = True,
) -> list[str]:
    """Return ``podman exec`` arguments that run ``command`` as dev in /workspace.

    Under gVisor the command starts through the seccomp launcher, because runsc
    applies the container's profile to its first process tree only.
    """
    args = ["exec", "--interactive"]
    if tty:
        args.append("--tty")
    args += ["--user", f"{security.SANDBOX_UID}:{security.SANDBOX_GID}"]
    args += ["--workdir", "/workspace"]
    for key, value in sorted(env.items()):
        args += ["--env", f"{key}={value}"]
    prefix = list(security.CONFINE_PREFIX) if gvisor else []
    return [*args, sandbox.name, *prefix, *(command or ["bash", "-l"])]


def shell(
    config: Config, workspace: Path, command: list[str], podman: Podman | None = None
) -> int:
    """Run ``command`` (default: a login bash) inside the running sandbox."""
    sandbox = Sandbox.for_workspace(workspace)
    engine = podman or Podman.locate(config.runtime)
    data = engine.inspect_container(sandbox.name)
    if data is None or not data["State"]["Running"]:
        raise AiboxError(
            f"sandbox for {sandbox.workspace} is not running",
            hint=f"Start it with 'aibox start --workspace {sandbox.workspace}'.",
        )
    env = llm_proxy.llm_environment(config)
    tty = os.isatty(0) and os.isatty(1)
    gvisor = _runtime_of(data) == "runsc"
    return engine.run_interactive(exec_args(sandbox, command, tty, env, gvisor))
