"""The seccomp allowlist: loading, checking, and the variant gVisor needs.

The shipped profile (``aibox/data/seccomp.json``) denies by default with EPERM and
allows the system calls a development workload uses. ``clone3`` gets ENOSYS under
runc because its namespace flags sit behind a pointer that seccomp cannot inspect,
and ENOSYS makes glibc fall back to ``clone``, whose flags the profile does check.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from aibox import paths
from aibox.errors import AiboxError

PROFILE_NAME = "seccomp.json"
GVISOR_PROFILE_NAME = "seccomp-gvisor.json"

# System calls that let a process escape or inspect its sandbox; no rule of the
# profile may permit any of them, whatever its argument conditions.
FORBIDDEN_SYSCALLS = frozenset(
    {
        "ptrace",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "bpf",
        "userfaultfd",
        "unshare",
        "setns",
        "init_module",
        "finit_module",
        "kexec_load",
        "keyctl",
        "add_key",
    }
)

# Actions under which the kernel (or gVisor) runs the system call.
_PERMITTING_ACTIONS = frozenset(
    {"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY"}
)
_DENYING_DEFAULTS = frozenset(
    {"SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD"}
)


class SeccompProfileError(AiboxError):
    """The seccomp profile is unreadable or permits a forbidden system call."""


def shipped_profile_text() -> str:
    return resources.files("aibox").joinpath("data", PROFILE_NAME).read_text("utf-8")


def load_profile(path: Path | None = None) -> dict[str, Any]:
    """Parse the profile at ``path`` (default: the shipped one)."""
    try:
        text = path.read_text("utf-8") if path else shipped_profile_text()
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise SeccompProfileError(
            f"cannot read seccomp profile {path or PROFILE_NAME}: {exc}",
            hint="Reinstall it with 'sudo aibox setup --system'.",
        ) from None
    if not isinstance(data, dict):
        raise SeccompProfileError(f"seccomp profile {path} is not a JSON object")
    return data


def permitted_forbidden_syscalls(
    profile: dict[str, Any], forbidden: Iterable[str] = FORBIDDEN_SYSCALLS
) -> set[str]:
    """Return the ``forbidden`` system calls that some part of ``profile`` permits.

    A permissive default action permits all of them. A rule permits a name when its
    action runs the call, with or without argument conditions.
    """
    names = set(forbidden)
    if profile.get("defaultAction") not in _DENYING_DEFAULTS:
        return names
    permitted: set[str] = set()
    for rule in profile.get("syscalls", []):
        if rule.get("action") in _PERMITTING_ACTIONS:
            rule_names = set(rule.get("names", []))
            if "name" in rule:
                rule_names.add(rule["name"])
            permitted |= names & rule_names
    return permitted


def validate_profile(profile: dict[str, Any]) -> None:
    """Raise SeccompProfileError unless ``profile`` is a deny-by-default allowlist."""
    if profile.get("defaultAction") not in _DENYING_DEFAULTS:
        raise SeccompProfileError(
            f"seccomp profile default action {profile.get('defaultAction')!r} "
            "is not a deny action",
            hint="Use SCMP_ACT_ERRNO as defaultAction.",
        )
    leaked = permitted_forbidden_syscalls(profile)
    if leaked:
        raise SeccompProfileError(
            "seccomp profile permits forbidden system calls: "
            f"{', '.join(sorted(leaked))}",
            hint="Remove them from every rule with a permitting action.",
        )


def gvisor_variant(profile: dict[str, Any]) -> dict[str, Any]:
    """Return ``profile`` adapted to gVisor's ``oci-seccomp`` mode.

    gVisor (runsc 2024-07-29) returns EPERM for every filtered call whatever
    ``errnoRet`` says, so the ``clone3`` ENOSYS rule cannot work there and is
    dropped: ``clone3`` falls to the default EPERM. That profile covers only the
    container's first process (``sleep``), which starts no threads. Commands run
    with ``podman exec`` load the unchanged profile through ``seccomp_exec``, where
    gVisor's in-sandbox seccomp returns ENOSYS as written and glibc falls back to
    ``clone``. Allowing ``clone3`` instead would let its unchecked flags create
    namespaces, because gVisor implements ``clone3``.
    """
    variant = copy.deepcopy(profile)
    rules = [rule for rule in variant["syscalls"] if rule.get("names") != ["clone3"]]
    variant["syscalls"] = rules
    return variant


def render(profile: dict[str, Any]) -> str:
    return json.dumps(profile, indent=2, sort_keys=True) + "\n"


def profile_path(gvisor: bool) -> Path:
    """Return the profile file to pass to Podman, writing it when missing.

    Uses the copy ``aibox setup --system`` installed in the system directory when
    it matches the shipped profile; otherwise renders the shipped profile into the
    user's state directory under a name that carries its content hash.
    """
    name = GVISOR_PROFILE_NAME if gvisor else PROFILE_NAME
    profile = load_profile()
    validate_profile(profile)
    text = render(gvisor_variant(profile) if gvisor else profile)
    installed = paths.system_dir() / name
    if installed.is_file():
        validate_profile(load_profile(installed))
        if installed.read_text("utf-8") == text:
            return installed
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    target = paths.user_state_dir() / f"{name.removesuffix('.json')}-{digest}.json"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(text, "utf-8")
        temporary.replace(target)
    return target
