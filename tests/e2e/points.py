"""Helpers shared by the acceptance modules."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import RUNSC_CONF, World, run

BLOCKED_SYSCALLS = (
    "ptrace", "mount", "umount2", "pivot_root", "chroot", "bpf", "userfaultfd",
    "unshare", "setns", "init_module", "finit_module", "kexec_load", "keyctl",
    "add_key",
)  # fmt: skip

# x86-64 syscall numbers; the probe passes harmless arguments, because the filter
# must reject the call before the kernel (gVisor's Sentry) looks at them.
SYSCALL_NUMBERS = {
    "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "bpf": 321, "userfaultfd": 323, "unshare": 272, "setns": 308,
    "init_module": 175, "finit_module": 313, "kexec_load": 246, "keyctl": 250,
    "add_key": 248,
}  # fmt: skip

SYSCALL_PROBE = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
results = {}
for name, number in json.loads(sys.argv[1]).items():
    ctypes.set_errno(0)
    value = libc.syscall(ctypes.c_long(number), 0, 0, 0, 0, 0)
    code = ctypes.get_errno()
    results[name] = errno.errorcode.get(code, str(code)) if value == -1 else "ok"
print(json.dumps(results))
"""


def main_workspace(world: World) -> Path:
    return world.workspace("main")


def require_running(world: World) -> Path:
    workspace = main_workspace(world)
    data = world.inspect(workspace)
    assert data is not None and data["State"]["Running"], (
        f"the sandbox for {workspace} is not running, so this point cannot be "
        "checked; see the first failing point above"
    )
    return workspace


def snapshot_system(world: World) -> dict[str, Any]:
    """Return what 'aibox setup --system' manages: files, services and the ruleset."""
    files = {}
    for path in sorted(world.system_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files[str(path.relative_to(world.root))] = (digest, stat.st_mtime_ns)
    stat = RUNSC_CONF.stat()
    files[str(RUNSC_CONF)] = (RUNSC_CONF.read_text(), stat.st_mtime_ns)
    pids = {
        str(path.name): path.read_text().strip()
        for path in sorted(world.run_dir.glob("*.pid"))
    }
    ruleset = run(["nft", "list", "table", "inet", "abxe2e"]).stdout
    return {"files": files, "pids": pids, "ruleset": ruleset}


def snapshot_user(world: World) -> dict[str, Any]:
    config = world.user_config.read_text() if world.user_config.exists() else None
    images = world.podman("images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
    return {"config": config, "volumes": world.volumes(), "images": images.stdout}


def write_user_config(world: World) -> None:
    """Add the simulated services to the config 'aibox setup' wrote."""
    data = yaml.safe_load(world.user_config.read_text()) or {}
    data.update(world.user_settings())
    world.user_config.write_text(yaml.safe_dump(data, sort_keys=False))
