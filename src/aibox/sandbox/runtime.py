"""Choosing the OCI runtime (gVisor ``runsc`` or ``runc``) and its flags."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aibox.config import Config
from aibox.errors import ExternalToolError, UsageError
from aibox.sandbox.security import RuntimeChoice, check_requested_controls

RUNSC_CONF = Path("/etc/containers/containers.conf.d/aibox-runsc.conf")

# Policy keys under ``runtime`` that this module reads; see runtime_settings().
_POLICY_KEYS = frozenset({"gvisor", "require_gvisor", "allow_runc_fallback"})


def runtime_settings(policy_data: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``runtime`` section of the effective policy, validated.

    Accepted keys: ``engine`` (``gvisor`` makes gVisor mandatory, ``runc`` allows
    the rootless runc fallback), ``gvisor`` or ``require_gvisor`` (bool: gVisor is
    mandatory) and ``allow_runc_fallback`` (bool: rootless sandboxes may use runc
    when gVisor cannot run rootless). Keys that would remove a control are rejected.
    """
    section = policy_data.get("runtime") or {}
    if not isinstance(section, Mapping):
        raise UsageError(
            "effective policy: 'runtime' must be a mapping, "
            f"not {type(section).__name__}",
            hint="Fix the runtime section of the policy files.",
        )
    check_requested_controls(section, "effective policy 'runtime'")
    settings = {key: section[key] for key in section if key in _POLICY_KEYS}
    # The policy schema names the engine: gvisor makes gVisor mandatory, and only
    # an explicit runc lets a rootless sandbox fall back to runc.
    engine = section.get("engine")
    if engine == "gvisor":
        settings["require_gvisor"] = True
    elif engine == "runc":
        settings.setdefault("allow_runc_fallback", True)
    return settings


def gvisor_required(policy_data: Mapping[str, Any]) -> bool:
    settings = runtime_settings(policy_data)
    return bool(settings.get("gvisor") or settings.get("require_gvisor"))


def workspace_writable_under_rootless_gvisor(workspace: Path) -> bool:
    """Return whether rootless runsc lets the sandbox user write ``workspace``.

    runsc 2024-07-29 ignores Podman's keep-id and ``--uidmap`` mappings and POSIX
    ACLs on bind mounts, so the sandbox user (a subordinate uid on the host) can
    write only when the directory's mode lets others write.
    """
    return bool(workspace.stat().st_mode & stat.S_IWOTH)


def runc_fallback_needed(
    policy_data: Mapping[str, Any], workspace: Path | None
) -> bool:
    """Return whether a rootless sandbox should use runc instead of gVisor.

    Only when gVisor cannot give a writable workspace, the policy allows the
    fallback (``runtime.allow_runc_fallback``) and does not require gVisor.
    """
    if workspace is None or workspace_writable_under_rootless_gvisor(workspace):
        return False
    settings = runtime_settings(policy_data)
    return bool(settings.get("allow_runc_fallback")) and not gvisor_required(
        policy_data
    )


def find_runtime(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ExternalToolError(
        f"OCI runtime not found: {name}",
        hint="Install it with 'bash scripts/install-deps.sh' (as root).",
    )


def gvisor_flags(network_args: Sequence[str], rootless: bool) -> tuple[str, ...]:
    """Return runsc flags: honour the OCI seccomp profile and pick a network mode.

    runsc ignores the OCI seccomp profile unless told ``oci-seccomp``. Its own
    network stack refuses to start in a Podman-made network namespace, so with a
    network it uses the container's namespace through host sockets (``network=host``,
    which is still the container's namespace, not the host's). A rootless sandbox
    runs with ``--network none`` but still needs ``network=host``, because its relay
    serves the proxy and DNS on ``lo`` of that namespace, which has no other link.
    """
    flags = ["oci-seccomp"]
    no_network = "none" in _network_modes(network_args) and not rootless
    flags.append("network=none" if no_network else "network=host")
    if rootless:
        flags.append("ignore-cgroups")
    return tuple(flags)


def _network_modes(args: Sequence[str]) -> list[str]:
    modes = []
    for index, arg in enumerate(args):
        if arg in ("--network", "--net") and index + 1 < len(args):
            modes.append(args[index + 1])
        elif arg.startswith(("--network=", "--net=")):
            modes.append(arg.split("=", 1)[1])
    return modes


def select_runtime(
    config: Config,
    policy_data: Mapping[str, Any],
    rootless: bool,
    network_args: Sequence[str],
    workspace: Path | None = None,
) -> RuntimeChoice:
    """Pick runsc when gVisor is enabled (or the policy requires it), else runc.

    Rootless sandboxes fall back to runc only as :func:`runc_fallback_needed` says.
    """
    required = gvisor_required(policy_data)
    if not config.gvisor.enabled and required:
        raise UsageError(
            "gvisor.enabled is false but the effective policy requires gVisor",
            hint="Set gvisor.enabled: true in the config.",
        )
    if (
        config.gvisor.enabled
        and rootless
        and runc_fallback_needed(policy_data, workspace)
    ):
        return RuntimeChoice("runc", find_runtime("runc"))
    if config.gvisor.enabled:
        return RuntimeChoice(
            "runsc", find_runtime("runsc"), gvisor_flags(network_args, rootless)
        )
    return RuntimeChoice("runc", find_runtime("runc"))
