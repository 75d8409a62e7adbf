"""The shipped seccomp allowlist and its checker."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aibox.sandbox import seccomp

FORBIDDEN = sorted(seccomp.FORBIDDEN_SYSCALLS)

# System calls a shell, git, Python and a C compiler need; the allowlist must keep them.
DEVELOPMENT_SYSCALLS = [
    "execve", "openat", "read", "write", "mmap", "mprotect", "futex", "clone",
    "wait4", "pipe2", "dup2", "statx", "newfstatat", "getdents64", "rename",
    "fsync", "socket", "connect", "epoll_wait", "rt_sigaction", "prlimit64",
]  # fmt: skip


def shipped() -> dict[str, Any]:
    return json.loads(seccomp.shipped_profile_text())


def test_forbidden_list_matches_requirements() -> None:
    assert set(FORBIDDEN) == {
        "ptrace", "mount", "umount2", "pivot_root", "chroot", "bpf", "userfaultfd",
        "unshare", "setns", "init_module", "finit_module", "kexec_load", "keyctl",
        "add_key",
    }  # fmt: skip


@pytest.mark.parametrize("variant", ["runc", "gvisor"])
def test_shipped_profile_permits_no_forbidden_call(variant: str) -> None:
    profile = shipped()
    if variant == "gvisor":
        profile = seccomp.gvisor_variant(profile)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp.permitted_forbidden_syscalls(profile) == set()
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            assert not set(rule["names"]) & seccomp.FORBIDDEN_SYSCALLS, rule
    seccomp.validate_profile(profile)


def test_shipped_profile_allows_development_calls() -> None:
    allowed = {
        name
        for rule in shipped()["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW"
        for name in rule["names"]
    }
    missing = [name for name in DEVELOPMENT_SYSCALLS if name not in allowed]
    assert missing == []


@pytest.mark.parametrize("name", FORBIDDEN)
def test_checker_catches_unconditional_rule(name: str) -> None:
    profile = shipped()
    profile["syscalls"][0]["names"].append(name)
    assert seccomp.permitted_forbidden_syscalls(profile) == {name}
    with pytest.raises(seccomp.SeccompProfileError, match=name):
        seccomp.validate_profile(profile)


@pytest.mark.parametrize("name", FORBIDDEN)
@pytest.mark.parametrize(
    "action", ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"]
)
def test_checker_catches_conditional_rule(name: str, action: str) -> None:
    profile = shipped()
    profile["syscalls"].append(
        {
            "names": [name],
            "action": action,
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
        }
    )
    assert seccomp.permitted_forbidden_syscalls(profile) == {name}


def test_checker_catches_permissive_default() -> None:
    profile = shipped()
    profile["defaultAction"] = "SCMP_ACT_ALLOW"
    assert seccomp.permitted_forbidden_syscalls(profile) == set(FORBIDDEN)
    with pytest.raises(seccomp.SeccompProfileError, match="default action"):
        seccomp.validate_profile(profile)


def test_errno_rule_for_forbidden_call_is_fine() -> None:
    profile = shipped()
    profile["syscalls"].append({"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"})
    assert seccomp.permitted_forbidden_syscalls(profile) == set()


def test_clone_rule_masks_namespace_flags() -> None:
    rules = [rule for rule in shipped()["syscalls"] if "clone" in rule["names"]]
    assert len(rules) == 1
    (condition,) = rules[0]["args"]
    namespace_flags = (
        0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
    )
    assert condition["op"] == "SCMP_CMP_MASKED_EQ"
    assert condition["value"] == namespace_flags
    assert condition["valueTwo"] == 0


def test_gvisor_variant_drops_clone3_rule() -> None:
    profile = shipped()
    runc_rules = [rule for rule in profile["syscalls"] if "clone3" in rule["names"]]
    assert runc_rules == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]
    variant = seccomp.gvisor_variant(profile)
    gvisor_rules = [rule for rule in variant["syscalls"] if "clone3" in rule["names"]]
    assert gvisor_rules == []
    assert profile == shipped()


def test_profile_path_renders_into_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(tmp_path / "no-system"))
    path = seccomp.profile_path(gvisor=True)
    assert path.is_file()
    assert "seccomp-gvisor-" in path.name
    assert json.loads(path.read_text()) == seccomp.gvisor_variant(shipped())
    assert seccomp.profile_path(gvisor=True) == path


def test_profile_path_rejects_tampered_system_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(tmp_path))
    profile = copy.deepcopy(shipped())
    profile["syscalls"][0]["names"].append("mount")
    (tmp_path / seccomp.PROFILE_NAME).write_text(json.dumps(profile))
    with pytest.raises(seccomp.SeccompProfileError, match="mount"):
        seccomp.profile_path(gvisor=False)


def test_profile_path_prefers_current_system_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBOX_SYSTEM_DIR", str(tmp_path))
    current = tmp_path / seccomp.PROFILE_NAME
    current.write_text(seccomp.render(shipped()))
    assert seccomp.profile_path(gvisor=False) == current
    stale = tmp_path / seccomp.GVISOR_PROFILE_NAME
    stale.write_text(seccomp.render(shipped()))
    assert seccomp.profile_path(gvisor=True) != stale
