"""The mandatory controls of a sandbox container, built in one place.

Every ``podman run`` for a sandbox gets its flags from :func:`build_run_args`. Config
and policy choose values (image, resources, caches, runtime) but cannot remove a
control: :func:`check_requested_controls` rejects settings that ask for one to go,
and :func:`check_extra_args` rejects such flags coming from other modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aibox import __version__
from aibox.errors import UsageError
from aibox.sandbox import workspace as ws

SANDBOX_UID = 1000
SANDBOX_GID = 1000
VENV_PATH = "/opt/aibox/venv"

# Under gVisor, ``podman exec`` processes escape the container's seccomp profile,
# so each exec'd command first loads the profile itself through this launcher.
CONFINE_DIR = "/run/aibox-sandbox"
CONFINE_SCRIPT = f"{CONFINE_DIR}/seccomp_exec.py"
CONFINE_PROFILE = f"{CONFINE_DIR}/seccomp.json"
CONFINE_PREFIX = ("/usr/bin/python3", "-I", CONFINE_SCRIPT, CONFINE_PROFILE, "--")
APPARMOR_PROFILE = "aibox-sandbox"

# The open-files and process limits root-run Podman must lower: without CAP_SYS_RESOURCE
# the default (inherited, higher) limits make the OCI runtime fail in setrlimit.
ROOT_ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")

LABEL_PREFIX = "io.aibox"

# Flags that would remove or weaken a mandatory control if another module (network,
# credentials) or a setting passed them through.
_FORBIDDEN_FLAGS = (
    "--privileged",
    "--cap-add",
    "--security-opt",
    "--read-only=false",
    "--user",
    "-u",
    "--userns",
    "--pid",
    "--ipc",
    "--uts",
    "--cgroupns",
    "--device",
    "--runtime",
    "--runtime-flag",
    "--systemd",
)

# Keys that config or policy sections may never set, with what the sandbox enforces.
_FORBIDDEN_SETTINGS = {
    "privileged": "containers never run privileged",
    "cap_add": "all capabilities are dropped",
    "capabilities": "all capabilities are dropped",
    "read_only": "the root filesystem is always read-only",
    "writable_root": "the root filesystem is always read-only",
    "seccomp": "the shipped seccomp allowlist always applies",
    "security_opt": "security options are fixed by aibox",
    "no_new_privileges": "no-new-privileges is always set",
    "user": "the sandbox user is always 1000:1000",
    "devices": "no host devices are passed in",
    "extra_args": "podman arguments are built by aibox only",
    "extra_run_args": "podman arguments are built by aibox only",
}


@dataclass(frozen=True)
class RuntimeChoice:
    """The OCI runtime for a sandbox and the runtime flags it needs."""

    name: str
    path: str
    flags: tuple[str, ...] = ()

    @property
    def is_gvisor(self) -> bool:
        return self.name == "runsc"


@dataclass(frozen=True)
class Resources:
    cpus: float
    memory_bytes: int
    pids: int


@dataclass(frozen=True)
class SandboxSpec:
    """Everything that varies between sandboxes; the controls themselves do not."""

    name: str
    user: str
    workspace: Path
    image: str
    runtime: RuntimeChoice
    seccomp_profile: Path
    confine_profile: Path | None
    resources: Resources
    rootless: bool
    apparmor: bool
    caches: tuple[str, ...]
    policy_hash: str
    network_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)


def check_requested_controls(settings: Mapping[str, Any], source: str) -> None:
    """Raise UsageError when ``settings`` asks to remove a mandatory control."""
    for key, value in settings.items():
        normalized = key.replace("-", "_").lower()
        if normalized in _FORBIDDEN_SETTINGS:
            raise UsageError(
                f"{source}: {key}={value!r} is not allowed: "
                f"{_FORBIDDEN_SETTINGS[normalized]}",
                hint=f"Remove '{key}' from {source}.",
            )


def check_extra_args(args: Sequence[str], source: str) -> None:
    """Raise UsageError when ``args`` contains a flag that weakens the sandbox."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if arg in _FORBIDDEN_FLAGS or flag in _FORBIDDEN_FLAGS:
            raise UsageError(
                f"{source} passed the podman argument {arg!r}, which aibox reserves",
                hint="Security flags are built by aibox.sandbox.security only.",
            )
        if arg in ("--network=host", "--net=host") or arg.startswith("--volume=/:"):
            raise UsageError(
                f"{source} passed the podman argument {arg!r}, "
                "which would expose the host"
            )


def _check_mount_source(path: Path) -> None:
    # Podman's -v syntax splits on ':' and ',' so such paths cannot be expressed.
    if any(char in str(path) for char in ":,\n"):
        raise UsageError(
            f"mount source path contains ':' ',' or a newline: {path}",
            hint="Rename the directory; Podman's volume syntax cannot carry these.",
        )


def labels(spec: SandboxSpec) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.workspace": str(spec.workspace),
        f"{LABEL_PREFIX}.user": spec.user,
        f"{LABEL_PREFIX}.runtime": spec.runtime.name,
        f"{LABEL_PREFIX}.runtime-flags": ",".join(spec.runtime.flags),
        f"{LABEL_PREFIX}.policy-hash": spec.policy_hash,
        f"{LABEL_PREFIX}.image": spec.image,
    }


def start_args(container: Mapping[str, Any]) -> list[str]:
    """Return ``podman start`` arguments for a stopped sandbox.

    Podman 4.3 does not keep ``--runtime-flag`` values with the container, so they
    are read back from the label written at creation and passed again as global
    options. Without them runsc would drop the seccomp profile and network mode.
    """
    labels = (container.get("Config") or {}).get("Labels") or {}
    flags = [
        flag
        for flag in labels.get(f"{LABEL_PREFIX}.runtime-flags", "").split(",")
        if flag
    ]
    args: list[str] = []
    for flag in flags:
        args += ["--runtime-flag", flag]
    return [*args, "start", str(container.get("Name", container.get("Id")))]


def volume_mounts(user: str, caches: Sequence[str]) -> list[tuple[str, str]]:
    """Return (volume, destination) pairs for the home, toolpacks and cache volumes."""
    mounts = [
        (ws.home_volume(user), "/home/dev"),
        (ws.toolpacks_volume(user), "/opt/toolpacks"),
    ]
    for cache in caches:
        destination = ws.CACHE_MOUNTS.get(cache)
        if destination is None:
            raise UsageError(
                f"unknown cache {cache!r} in config key 'caches'",
                hint=f"Use some of: {', '.join(sorted(ws.CACHE_MOUNTS))}.",
            )
        mounts.append((ws.cache_volume(user, cache), destination))
    return mounts


def security_args(spec: SandboxSpec) -> list[str]:
    """Return the mandatory control flags for ``spec``."""
    args = ["--runtime", spec.runtime.path]
    for flag in spec.runtime.flags:
        args += ["--runtime-flag", flag]
    args += [
        "--cap-drop=ALL",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        f"seccomp={spec.seccomp_profile}",
        "--read-only",
        "--user",
        f"{SANDBOX_UID}:{SANDBOX_GID}",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,nodev,size=2g",  # noqa: S108 (a tmpfs inside the container)
        "--tmpfs",
        "/var/tmp:rw,noexec,nosuid,nodev,size=1g",  # noqa: S108
    ]
    if spec.rootless and not spec.runtime.is_gvisor:
        # Maps sandbox uid 1000 to the invoking user, so /workspace stays writable.
        args += ["--userns", f"keep-id:uid={SANDBOX_UID},gid={SANDBOX_GID}"]
    if spec.apparmor and not spec.rootless:
        args += ["--security-opt", f"apparmor={APPARMOR_PROFILE}"]
    if not spec.rootless:
        for limit in ROOT_ULIMITS:
            args += ["--ulimit", limit]
    return args


def development_source_dir() -> Path | None:
    """Return the source tree of an editable aibox install, or None.

    An editable install leaves the package outside the venv, so the in-sandbox
    tools could not import it from the venv mount alone.
    """
    package_root = Path(__file__).resolve().parents[1].parent
    if package_root.is_relative_to(VENV_PATH):
        return None
    return package_root


def mount_args(spec: SandboxSpec) -> list[str]:
    _check_mount_source(spec.workspace)
    args = ["--volume", f"{spec.workspace}:/workspace:rw,nosuid,nodev"]
    args += ["--volume", f"{VENV_PATH}:{VENV_PATH}:ro,nosuid,nodev"]
    source = development_source_dir()
    if source is not None:
        args += ["--volume", f"{source}:{source}:ro,nosuid,nodev"]
    if spec.runtime.is_gvisor:
        if spec.confine_profile is None:
            raise ValueError("a gVisor sandbox needs the profile for exec'd commands")
        launcher = Path(__file__).with_name("seccomp_exec.py")
        _check_mount_source(launcher)
        _check_mount_source(spec.confine_profile)
        args += ["--volume", f"{launcher}:{CONFINE_SCRIPT}:ro,nosuid,nodev"]
        args += [
            "--volume",
            f"{spec.confine_profile}:{CONFINE_PROFILE}:ro,nosuid,nodev",
        ]
    for volume, destination in volume_mounts(spec.user, spec.caches):
        args += ["--volume", f"{volume}:{destination}:rw,nosuid,nodev"]
    return args


def resource_args(resources: Resources) -> list[str]:
    return [
        "--cpus",
        f"{resources.cpus:g}",
        "--memory",
        str(resources.memory_bytes),
        "--pids-limit",
        str(resources.pids),
    ]


def build_run_args(spec: SandboxSpec) -> list[str]:
    """Return the full ``podman run`` argument list for ``spec``."""
    check_extra_args(spec.network_args, "network setup")
    check_extra_args(spec.extra_args, "credential setup")
    args = [
        "run",
        "--detach",
        "--name",
        spec.name,
        "--hostname",
        "aibox",
        "--pull=never",
    ]
    args += security_args(spec)
    args += mount_args(spec)
    args += resource_args(spec.resources)
    args += ["--workdir", "/workspace"]
    for key, value in sorted(labels(spec).items()):
        args += ["--label", f"{key}={value}"]
    env = {"HOME": "/home/dev", "USER": "dev", **spec.environment}
    for key, value in sorted(env.items()):
        args += ["--env", f"{key}={value}"]
    args += list(spec.network_args)
    args += list(spec.extra_args)
    args += [spec.image, "sleep", "infinity"]
    return args
