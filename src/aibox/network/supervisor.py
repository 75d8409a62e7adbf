"""Keep one host service running where systemd does not: ``python -m
aibox.network.supervisor --pidfile FILE --log FILE -- COMMAND...``.

The supervisor writes its own pid to ``--pidfile`` and appends the child's output
and its own messages to ``--log``. It forwards SIGHUP and SIGUSR1 and restarts
the child when it exits unexpectedly, at most 5 times a minute. On SIGTERM or
SIGINT it stops the child, removes the pid file and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


class _Supervisor:
    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def note(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with self.log_path.open("a") as log:
            log.write(f"{stamp} aibox-supervisor: {message}\n")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.child = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.note(f"started {self.command[0]} as pid {self.child.pid}")

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self.forward(signal.SIGTERM, None)

    def run(self) -> int:
        restarts: list[float] = []
        self.start()
        while True:
            assert self.child is not None
            code = self.child.wait()
            if self.stopping:
                self.note(f"stopped {self.command[0]} (exit code {code})")
                return 0
            now = time.monotonic()
            restarts = [moment for moment in restarts if now - moment < RESTART_WINDOW]
            if len(restarts) >= MAX_RESTARTS:
                self.note(
                    f"{self.command[0]} exited with code {code} {MAX_RESTARTS} times "
                    "within a minute; giving up"
                )
                return 1
            restarts.append(now)
            self.note(f"{self.command[0]} exited with code {code}; restarting in 1 s")
            time.sleep(1)
            if not self.stopping:
                self.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aibox-supervisor")
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument(
        "--detach", action="store_true", help="fork into the background first"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to supervise is required after --")
    if args.detach:
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
    supervisor = _Supervisor(command, args.log)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGHUP, supervisor.forward)
    signal.signal(signal.SIGUSR1, supervisor.forward)
    args.pidfile.write_text(f"{os.getpid()}\n")
    try:
        return supervisor.run()
    finally:
        args.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
