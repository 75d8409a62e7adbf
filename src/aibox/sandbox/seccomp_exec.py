"""Load an OCI seccomp profile into the current process, then exec a command.

Runs inside the sandbox with the image's own Python and only the standard library,
so it imports nothing from aibox. gVisor (runsc 2024-07-29) applies the container's
OCI seccomp profile to the container's first process and its children only:
processes started with ``podman exec`` run without it. ``aibox shell`` therefore
starts every command through this script, which installs the same profile with
libseccomp before ``execvp``. It fails closed: no filter, no command.

Usage: python3 seccomp_exec.py PROFILE.json -- COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

_ACT_ALLOW = 0x7FFF0000
_ACT_LOG = 0x7FFC0000
_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_ERRNO = 0x00050000

# enum scmp_compare from seccomp.h (libseccomp 2.5).
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_EACCES = 13


class _ArgCompare(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _action(name: str, errno_value: int | None, default_errno: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if name == "SCMP_ACT_LOG":
        return _ACT_LOG
    if name == "SCMP_ACT_ERRNO":
        value = default_errno if errno_value is None else errno_value
        return _ACT_ERRNO | (value & 0xFFFF)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return _ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return _ACT_KILL_PROCESS
    raise ValueError(f"unsupported seccomp action {name}")


def load_filter(profile: dict[str, Any]) -> None:
    """Compile ``profile`` with libseccomp and load it into this process."""
    library = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCompare),
    ]
    library.seccomp_load.argtypes = [ctypes.c_void_p]

    default_errno = int(profile.get("defaultErrnoRet", 1))
    default = _action(profile["defaultAction"], None, default_errno)
    context = library.seccomp_init(default)
    if not context:
        raise OSError("seccomp_init failed")
    for rule in profile.get("syscalls", []):
        action = _action(rule["action"], rule.get("errnoRet"), default_errno)
        conditions = rule.get("args") or []
        array = (_ArgCompare * max(len(conditions), 1))()
        for index, condition in enumerate(conditions):
            array[index].arg = int(condition["index"])
            array[index].op = _OPERATORS[condition["op"]]
            array[index].datum_a = int(condition["value"])
            array[index].datum_b = int(condition.get("valueTwo", 0))
        for name in rule.get("names", []):
            number = library.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue  # not a system call on this architecture
            status = library.seccomp_rule_add_array(
                context, action, number, len(conditions), array
            )
            if status < 0 and -status != _EACCES:
                raise OSError(-status, f"seccomp_rule_add failed for {name}")
    status = library.seccomp_load(context)
    if status < 0:
        raise OSError(-status, "seccomp_load failed")


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: seccomp_exec.py PROFILE.json -- COMMAND [ARG...]\n")
        return 2
    try:
        with open(argv[1], encoding="utf-8") as handle:
            profile = json.load(handle)
        load_filter(profile)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"aibox: cannot apply the seccomp profile {argv[1]}: {exc}\n")
        return 126
    try:
        os.execvp(argv[3], argv[3:])  # noqa: S606 (replaces this process on purpose)
    except OSError as exc:
        sys.stderr.write(f"aibox: cannot run {argv[3]}: {exc.strerror}\n")
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
