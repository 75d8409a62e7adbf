"""A real sandbox container, checked from inside, with gVisor and with runc."""

from __future__ import annotations

import pytest

from aibox.sandbox import lifecycle

from .conftest import SandboxHarness, host_kernel

pytestmark = [pytest.mark.integration, pytest.mark.root]

# Calls the sandbox must reject with EPERM; ctypes reaches the system calls directly
# so the shell tools' own uid checks cannot hide the result.
SYSCALL_PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(result):
    return "ok" if result == 0 else errno.errorcode[ctypes.get_errno()]
print("unshare", errno_of(libc.unshare(0x10000000)))
print("mount", errno_of(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
print("clone3", errno_of(libc.syscall(435, None, 0)))
"""


def start(harness: SandboxHarness, runtime: str) -> lifecycle.StartResult:
    return lifecycle.start(harness.config(runtime), harness.workspace, lambda m: None)


def lines_of(output: str) -> dict[str, str]:
    return dict(
        line.split(" ", 1) for line in output.strip().splitlines() if " " in line
    )


@pytest.mark.parametrize("runtime", ["runsc", "runc"])
def test_controls_seen_from_inside(harness: SandboxHarness, runtime: str) -> None:
    result = start(harness, runtime)
    assert result.action == "created"
    assert result.runtime == runtime

    identity = harness.exec("id -u; id -g; grep CapEff /proc/self/status")
    assert identity.returncode == 0, identity.stderr
    uid, gid, capabilities = identity.stdout.strip().splitlines()
    assert uid == "1000"
    assert gid == "1000"
    assert capabilities.split()[1] == "0000000000000000"

    root_write = harness.exec("touch /escape")
    assert root_write.returncode != 0
    assert "denied" in root_write.stderr or "Read-only" in root_write.stderr

    workspace_write = harness.exec("echo from-sandbox > /workspace/proof.txt")
    assert workspace_write.returncode == 0, workspace_write.stderr
    assert (harness.workspace / "proof.txt").read_text() == "from-sandbox\n"

    noexec = harness.exec("cp /bin/true /tmp/t && chmod +x /tmp/t && /tmp/t")
    assert noexec.returncode != 0
    assert "Permission denied" in noexec.stderr

    probe = harness.exec(f"python3 -c '{SYSCALL_PROBE}'")
    assert probe.returncode == 0, probe.stderr
    calls = lines_of(probe.stdout)
    assert calls["unshare"] == "EPERM"
    assert calls["mount"] == "EPERM"
    assert calls["clone3"] == "ENOSYS"


def test_gvisor_kernel_and_seccomp_applied(harness: SandboxHarness) -> None:
    start(harness, "runsc")
    kernel = harness.exec("uname -r; uname -v")
    assert kernel.returncode == 0, kernel.stderr
    release, version = kernel.stdout.strip().splitlines()
    assert release != host_kernel()
    assert release == "4.4.0"  # the Linux version gVisor's sentry reports
    assert version.startswith("#1 SMP Sun Jan 10 15:06:54 PST 2016")

    # gVisor implements syslog(2), so dmesg shows its boot log unless the seccomp
    # profile, which does not allow syslog, is really applied inside gVisor.
    dmesg = harness.exec("dmesg")
    assert dmesg.returncode != 0
    assert "Operation not permitted" in dmesg.stderr

    threads = harness.exec(
        "python3 -c 'import threading; t = threading.Thread(target=print, args=(7,));"
        " t.start(); t.join()'"
    )
    assert threads.stdout.strip() == "7", threads.stderr


def test_runc_shares_host_kernel(harness: SandboxHarness) -> None:
    start(harness, "runc")
    kernel = harness.exec("uname -r")
    assert kernel.stdout.strip() == host_kernel()


def test_development_tools_work(harness: SandboxHarness) -> None:
    start(harness, "runsc")
    script = (
        "set -e; cd /workspace; git init -q repo; cd repo;"
        " git -c user.name=dev -c user.email=dev@example.invalid"
        " commit -q --allow-empty -m x;"
        " git log --oneline | wc -l; ls -l /workspace >/dev/null;"
        " stat /workspace >/dev/null;"
        " git config --system credential.helper; test -x /opt/aibox/venv/bin/python;"
        " test ! -w /opt/aibox/venv; echo done"
    )
    result = harness.exec(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "1",
        "/opt/aibox/venv/bin/aibox-credential-helper",
        "done",
    ]


def test_no_setuid_files_in_image(harness: SandboxHarness) -> None:
    start(harness, "runc")
    found = harness.exec("find / -xdev -perm /6000 -type f 2>/dev/null | head -n 5")
    assert found.stdout.strip() == ""
