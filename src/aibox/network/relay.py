"""Proxy and DNS relay for rootless sandboxes, which have no network interface.

A rootless sandbox runs with ``--network none``: its network namespace holds only
``lo``, so nothing it sends can leave, whatever the host firewall allows for the
developer's account. This relay gives it exactly two ways out:

- ``127.0.0.1:<proxy port>`` inside the sandbox, relayed to Squid on the host;
- ``127.0.0.1:<dns port>`` (UDP and TCP) inside the sandbox, relayed to CoreDNS.

How: a short-lived child joins the sandbox's user and network namespaces, binds
the three listening sockets there and passes them back over a Unix socket pair
(SCM_RIGHTS). A socket stays in the namespace it was created in, so the parent,
still in the host's namespaces, accepts inside the sandbox and connects on the
host. The relay exits when the sandbox's init process is gone.

Run as ``python -m aibox.network.relay --pid PID ...``; :func:`start_relay`
starts it detached and waits until its sockets are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import cast

from aibox.errors import EnforcementError

log = logging.getLogger("aibox.network.relay")

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
SANDBOX_ADDRESS = "127.0.0.1"
READY_TIMEOUT = 10.0


def _setns(path: str, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, nstype) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


def _same_namespace(pid: int, kind: str) -> bool:
    return (
        os.stat(f"/proc/self/ns/{kind}").st_ino
        == os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    )


def _bring_up_loopback() -> None:
    """Set ``lo`` up in the current network namespace (runsc leaves it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(
                sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP)
            )


def _bind_in_sandbox(pid: int, proxy_port: int, dns_port: int) -> list[socket.socket]:
    """Return listening sockets created inside ``pid``'s network namespace.

    Runs the namespace switch in a forked child, because a process can only
    enter a user namespace while it has a single thread, and the switch is
    permanent for the process that makes it.
    """
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            parent_end.close()
            if not _same_namespace(pid, "user"):
                _setns(f"/proc/{pid}/ns/user", CLONE_NEWUSER)
            _setns(f"/proc/{pid}/ns/net", CLONE_NEWNET)
            _bring_up_loopback()
            proxy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            proxy.bind((SANDBOX_ADDRESS, proxy_port))
            proxy.listen(128)
            dns_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dns_udp.bind((SANDBOX_ADDRESS, dns_port))
            dns_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            dns_tcp.bind((SANDBOX_ADDRESS, dns_port))
            dns_tcp.listen(64)
            fds = [proxy.fileno(), dns_udp.fileno(), dns_tcp.fileno()]
            socket.send_fds(child_end, [b"ok"], fds)
        except OSError as exc:
            child_end.send(f"error: {exc}".encode())
            code = 1
        os._exit(code)
    child_end.close()
    try:
        message, fds, _, _ = socket.recv_fds(parent_end, 1024, 3)
    finally:
        parent_end.close()
        os.waitpid(child, 0)
    if message != b"ok" or len(fds) != 3:
        raise OSError(message.decode(errors="replace") or "relay child failed")
    kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_STREAM]
    return [
        socket.socket(socket.AF_INET, kind, fileno=fd)
        for kind, fd in zip(kinds, fds, strict=True)
    ]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _stream_relay(host: str, port: int) -> object:
    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            # Squid admits clients from the sandbox subnet and this loopback
            # address only, so the relay connects from the address it targets.
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host, port, local_addr=(host, 0)
            )
        except OSError as exc:
            log.error("relay to %s:%d failed: %s", host, port, exc)
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
        )

    return handle


class _DnsRelay(asyncio.DatagramProtocol):
    """Forward each DNS datagram from the sandbox to CoreDNS and relay the reply."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(
            self._forward(data, addr), name=f"dns-relay-{addr[1]}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.setblocking(False)
            try:
                await loop.sock_connect(upstream, self.upstream)
                await loop.sock_sendall(upstream, data)
                reply = await asyncio.wait_for(loop.sock_recv(upstream, 65535), 5)
            except (OSError, TimeoutError) as exc:
                log.error("DNS relay to %s:%d failed: %s", *self.upstream, exc)
                return
        if self.transport is not None:
            self.transport.sendto(reply, addr)


def _process_alive(pid: int, start_time: str) -> bool:
    try:
        return _start_time(pid) == start_time
    except OSError:
        return False


def _start_time(pid: int) -> str:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[19]


async def _serve(
    sockets: list[socket.socket],
    pid: int,
    upstream: str,
    proxy_port: int,
    dns_port: int,
) -> None:
    proxy, dns_udp, dns_tcp = sockets
    start_time = _start_time(pid)
    loop = asyncio.get_running_loop()
    servers = [
        await asyncio.start_server(_stream_relay(upstream, proxy_port), sock=proxy),  # type: ignore[arg-type]
        await asyncio.start_server(_stream_relay(upstream, dns_port), sock=dns_tcp),  # type: ignore[arg-type]
    ]
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DnsRelay((upstream, dns_port)), sock=dns_udp
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set() and _process_alive(pid, start_time):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    log.info("sandbox process %d is gone or a stop was requested; relay exits", pid)
    transport.close()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aibox-network-relay")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="host address of Squid and CoreDNS"
    )
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--dns-port", type=int, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(levelname)s: %(message)s"
    )

    try:
        sockets = _bind_in_sandbox(args.pid, args.proxy_port, args.dns_port)
    except OSError as exc:
        log.error(
            "cannot bind the relay inside process %d's namespaces: %s", args.pid, exc
        )
        return 1

    # The caller waits for this process: it exits once the sockets are bound and
    # leaves the relay itself running in a new session.
    daemon = os.fork()
    if daemon > 0:
        args.pidfile.write_text(f"{daemon}\n")
        return 0

    os.setsid()
    log.info("relaying for process %d to %s", args.pid, args.upstream)
    try:
        asyncio.run(
            _serve(sockets, args.pid, args.upstream, args.proxy_port, args.dns_port)
        )
    finally:
        args.pidfile.unlink(missing_ok=True)
    return 0


def start_relay(
    pid: int,
    upstream: str,
    proxy_port: int,
    dns_port: int,
    pidfile: Path,
    log_file: Path,
) -> int:
    """Start a detached relay for the sandbox whose init process is ``pid``.

    Returns the relay's pid once its sockets are bound. Raises EnforcementError
    when it fails to start; the sandbox then has no network at all.
    """
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    with log_file.open("a") as output:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "aibox.network.relay",
                "--pid",
                str(pid),
                "--upstream",
                upstream,
                "--proxy-port",
                str(proxy_port),
                "--dns-port",
                str(dns_port),
                "--pidfile",
                str(pidfile),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            timeout=READY_TIMEOUT,
            check=False,
        )
    if result.returncode == 0 and pidfile.exists():
        return int(pidfile.read_text().split()[0])
    raise EnforcementError(
        f"the network relay for sandbox process {pid} did not start; see {log_file}",
        hint="Check that Squid and CoreDNS run ('aibox doctor'), then restart "
        "the sandbox.",
    )


def stop_relay(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
