"""Run the host tools of the network layer: nft, squid, coredns, ip, podman.

Commands are argument lists with a timeout and a fixed environment. A failure
raises ExternalToolError holding the command, the exit code and the last line of
stderr.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from aibox.errors import ExternalToolError

log = logging.getLogger(__name__)

COREDNS_PATHS = ("/opt/aibox/bin/coredns", "/usr/local/bin/coredns")
SYSTEM_PATH = (
    "/opt/aibox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
_INSTALL_HINT = "Install it with 'sudo bash scripts/install-deps.sh'."


def tool_environment() -> dict[str, str]:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    for name in ("HOME", "XDG_RUNTIME_DIR", "CONTAINERS_CONF"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def find_tool(name: str) -> str:
    """Return the path of ``name``; raise ExternalToolError when it is missing."""
    if name == "coredns":
        for candidate in COREDNS_PATHS:
            if Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return candidate
    path = shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        raise ExternalToolError(f"{name} not found on this host", hint=_INSTALL_HINT)
    return path


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if "FATAL" in line or "Error" in line]
    return (fatal or lines or ["no error output"])[-1]


def run_tool(
    args: Sequence[str],
    *,
    timeout: float = 30.0,
    check: bool = True,
    input_text: str | None = None,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (its first item resolved with find_tool) and return the result."""
    command = [find_tool(args[0]), *args[1:]]
    log.debug("running %s", " ".join(command))
    try:
        result = subprocess.run(
            command,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=tool_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExternalToolError(
            f"'{' '.join(command)}' timed out after {timeout:.0f} s",
            hint=hint or "Check the system load and retry.",
        ) from None
    if check and result.returncode != 0:
        raise ExternalToolError(
            f"'{' '.join(command)}' failed with exit code {result.returncode}: "
            f"{last_line(result.stderr + result.stdout)}",
            hint=hint or "Run the command by hand to see the full output.",
        )
    return result
