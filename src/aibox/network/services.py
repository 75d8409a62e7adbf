"""Start, reload, stop and probe the host's Squid and CoreDNS.

Without systemd (PID 1 is another program, as in containers and CI), Squid runs as
its own daemon, whose master process restarts a crashed worker, and CoreDNS runs
under ``aibox.network.supervisor``. Both keep pid files in the run directory and
logs in the log directory. CoreDNS drops to ``nobody`` with only the capability
to bind port 53.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aibox.errors import ExternalToolError
from aibox.network import dnswire, systemd
from aibox.network.settings import NetworkSettings
from aibox.network.tools import find_tool, run_tool

log = logging.getLogger(__name__)

PROXY_USER = "proxy"
START_TIMEOUT = 15.0
_PROBE_HOST = "aibox-health.invalid"


def squid_pidfile(settings: NetworkSettings) -> Path:
    return settings.run_dir / f"{settings.instance}-squid.pid"


def coredns_pidfile(settings: NetworkSettings) -> Path:
    return settings.run_dir / f"{settings.instance}-coredns.pid"


def read_pid(pidfile: Path) -> int | None:
    """Return the pid in ``pidfile`` when that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    if _is_zombie(pid):
        # kill(pid, 0) succeeds for a killed daemon whose parent never reaps it.
        return None
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _remove_stale_pidfile(pidfile: Path) -> None:
    """Delete ``pidfile`` when its process is gone, so a new daemon can start."""
    if read_pid(pidfile) is None:
        pidfile.unlink(missing_ok=True)


def proxy_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Return True when an HTTP proxy at ``address:port`` replies to a request.

    The request names a host under ``.invalid``, which the allowlist never
    contains, so Squid denies it without any lookup or upstream traffic.
    """
    request = (
        f"GET http://{_PROBE_HOST}/ HTTP/1.1\r\nHost: {_PROBE_HOST}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(request)
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.")


def dns_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Return True when a DNS server at ``address:port`` sends NXDOMAIN for a
    name outside the allowlist."""
    try:
        reply = dnswire.query(address, _PROBE_HOST, port=port, timeout=timeout)
    except (OSError, ValueError):
        return False
    return reply.rcode == "NXDOMAIN"


def _wait(check: object, what: str, log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise ExternalToolError(
        f"{what} did not respond within {START_TIMEOUT:.0f} s: {_tail(log_file)}",
        hint=f"See {log_file}; then run 'sudo aibox setup --system' again.",
    )


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return "no log output"
    errors = [line for line in lines[-40:] if "FATAL" in line or "ERROR" in line]
    return (errors or lines or ["no log output"])[-1].strip()


def prepare_log_files(settings: NetworkSettings) -> None:
    """Create the log directory and the proxy logs, writable by Squid's user."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    proxy = pwd.getpwnam(PROXY_USER)
    for path in (settings.proxy_access_log, settings.proxy_cache_log):
        path.touch(exist_ok=True)
        os.chown(path, proxy.pw_uid, proxy.pw_gid)
        path.chmod(0o640)
    settings.dns_query_log.touch(exist_ok=True)
    settings.dns_query_log.chmod(0o640)


def squid_running(settings: NetworkSettings) -> bool:
    if systemd_running():
        return systemd.is_active(systemd.squid_unit_name(settings))
    return read_pid(squid_pidfile(settings)) is not None


def start_squid(settings: NetworkSettings) -> None:
    """Start Squid and wait until it responds on the loopback listener."""
    if systemd_running():
        systemd.start(systemd.squid_unit_name(settings))
    else:
        _start_squid_daemon(settings)
    _wait(
        lambda: proxy_answers(settings.loopback, settings.proxy_port),
        "Squid",
        settings.proxy_cache_log,
    )


def _start_squid_daemon(settings: NetworkSettings) -> None:
    _remove_stale_pidfile(squid_pidfile(settings))
    run_tool(
        ["squid", "-f", str(settings.squid_conf), "-n", settings.squid_service],
        hint=f"See {settings.proxy_cache_log}.",
    )


def reload_squid(settings: NetworkSettings) -> None:
    """Ask the running Squid to re-read its configuration and wait for it."""
    if systemd_running():
        systemd.reload(systemd.squid_unit_name(settings))
    else:
        run_tool(
            [
                "squid",
                "-k",
                "reconfigure",
                "-f",
                str(settings.squid_conf),
                "-n",
                settings.squid_service,
            ]
        )
    time.sleep(0.5)
    _wait(
        lambda: (
            squid_running(settings)
            and proxy_answers(settings.loopback, settings.proxy_port)
        ),
        "Squid after reconfigure",
        settings.proxy_cache_log,
    )


def stop_squid(settings: NetworkSettings) -> None:
    if systemd_running():
        run_tool(["systemctl", "stop", systemd.squid_unit_name(settings)], check=False)
        return
    pid = read_pid(squid_pidfile(settings))
    if pid is None:
        return
    run_tool(
        [
            "squid",
            "-k",
            "shutdown",
            "-f",
            str(settings.squid_conf),
            "-n",
            settings.squid_service,
        ],
        check=False,
    )
    _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def coredns_running(settings: NetworkSettings) -> bool:
    if systemd_running():
        return systemd.is_active(systemd.coredns_unit_name(settings))
    return read_pid(coredns_pidfile(settings)) is not None


def coredns_command(settings: NetworkSettings) -> list[str]:
    """Return CoreDNS's command line: as ``nobody``, allowed to bind port 53 only."""
    caps = "-all,+net_bind_service"
    return [
        find_tool("setpriv"),
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        f"--inh-caps={caps}",
        f"--ambient-caps={caps}",
        f"--bounding-set={caps}",
        "--no-new-privs",
        find_tool("coredns"),
        "-conf",
        str(settings.corefile),
    ]


def start_coredns(settings: NetworkSettings) -> None:
    """Start CoreDNS (its unit, or under the supervisor) and wait until it answers."""
    if systemd_running():
        systemd.start(systemd.coredns_unit_name(settings))
    else:
        _start_supervised_coredns(settings)

    def healthy() -> bool:
        return coredns_running(settings) and dns_answers(
            settings.loopback, settings.dns_port, timeout=0.5
        )

    _wait(healthy, "CoreDNS", settings.dns_query_log)


def restart_coredns(settings: NetworkSettings) -> None:
    """Restart CoreDNS so it reads a changed Corefile, and wait until it answers."""
    if systemd_running():
        systemd.restart(systemd.coredns_unit_name(settings))
    else:
        stop_coredns(settings)
    start_coredns(settings)


def _start_supervised_coredns(settings: NetworkSettings) -> None:
    pidfile = coredns_pidfile(settings)
    _remove_stale_pidfile(pidfile)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "aibox.network.supervisor",
            "--detach",
            "--pidfile",
            str(pidfile),
            "--log",
            str(settings.dns_query_log),
            "--",
            *coredns_command(settings),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
        timeout=30,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(sys.path),
        },
    )


def stop_coredns(settings: NetworkSettings) -> None:
    if systemd_running():
        run_tool(
            ["systemctl", "stop", systemd.coredns_unit_name(settings)], check=False
        )
        return
    pid = read_pid(coredns_pidfile(settings))
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()
