"""The only module that runs the container engine.

Commands are argument lists run against a resolved executable, with a timeout and an
explicit environment. A failed command raises :class:`PodmanError`, which carries the
command, the exit code and stderr.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aibox.errors import ExternalToolError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0

# Variables the engine needs to find its storage, config and runtime directory.
# Anything else in the caller's environment stays out of the child.
_PASSED_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "DBUS_SESSION_BUS_ADDRESS",
)


class PodmanError(ExternalToolError):
    """A container engine command failed; keeps the command, exit code and stderr."""

    def __init__(
        self,
        command: Sequence[str],
        returncode: int,
        stderr: str,
        hint: str | None = None,
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr.strip()
        last_line = _last_meaningful_line(self.stderr) or "no error output"
        super().__init__(
            f"'{' '.join(self.command)}' failed with exit code {returncode}: "
            f"{last_line}",
            hint=hint or "Run the command by hand to see the full output.",
        )


def _last_meaningful_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "level=warning" not in line]
    return (errors or lines or [""])[-1].strip()


def child_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the allowlisted subset of ``source`` (default: ``os.environ``)."""
    origin = os.environ if source is None else source
    env = {name: origin[name] for name in _PASSED_VARIABLES if name in origin}
    env.setdefault(
        "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    return env


@dataclass(frozen=True)
class Podman:
    """A resolved container engine executable and how to call it."""

    executable: str
    rootless: bool = field(default_factory=lambda: os.geteuid() != 0)
    env: Mapping[str, str] = field(default_factory=child_environment)

    @property
    def name(self) -> str:
        return os.path.basename(self.executable)

    @classmethod
    def locate(
        cls, engine: str = "auto", env: Mapping[str, str] | None = None
    ) -> Podman:
        """Find the engine: ``podman``, ``docker``, or ``auto`` (Podman preferred).

        Raises ExternalToolError when no engine is installed.
        """
        environment = child_environment(env)
        candidates = ["podman", "docker"] if engine == "auto" else [engine]
        for candidate in candidates:
            path = shutil.which(candidate, path=environment["PATH"])
            if path:
                return cls(executable=path, env=environment)
        raise ExternalToolError(
            f"container engine not found: {' or '.join(candidates)}",
            hint="Install Podman with 'bash scripts/install-deps.sh' (as root).",
        )

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the engine with ``args`` and return the finished process."""
        command = [self.executable, *args]
        log.debug("running %s", " ".join(command))
        try:
            result = subprocess.run(
                command,
                input=input_text,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(self.env),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExternalToolError(
                f"'{' '.join(command)}' timed out after {timeout:.0f} s",
                hint="Check 'podman ps' and the system load, then retry.",
            ) from None
        except OSError as exc:
            raise ExternalToolError(
                f"cannot run {self.executable}: {exc.strerror}",
                hint="Reinstall Podman with 'bash scripts/install-deps.sh'.",
            ) from None
        if check and result.returncode != 0:
            raise PodmanError(command, result.returncode, result.stderr)
        return result

    def run_interactive(self, args: Sequence[str]) -> int:
        """Run the engine attached to this terminal and return its exit code."""
        command = [self.executable, *args]
        log.debug("running %s", " ".join(command))
        return subprocess.call(command, env=dict(self.env))

    def version(self) -> str:
        result = self.run(["version", "--format", "{{.Client.Version}}"], timeout=30)
        return result.stdout.strip()

    def _exists(self, kind: str, name: str) -> bool:
        result = self.run([kind, "exists", name], check=False, timeout=30)
        if result.returncode not in (0, 1):
            raise PodmanError(
                [self.executable, kind, "exists", name],
                result.returncode,
                result.stderr,
            )
        return result.returncode == 0

    def container_exists(self, name: str) -> bool:
        return self._exists("container", name)

    def volume_exists(self, name: str) -> bool:
        return self._exists("volume", name)

    def image_exists(self, name: str) -> bool:
        return self._exists("image", name)

    def inspect_container(self, name: str) -> dict[str, Any] | None:
        """Return ``podman container inspect`` data, or None when it does not exist."""
        result = self.run(["container", "inspect", name], check=False, timeout=30)
        if result.returncode != 0:
            if "no such container" in result.stderr.lower():
                return None
            raise PodmanError(
                [self.executable, "container", "inspect", name],
                result.returncode,
                result.stderr,
            )
        data = json.loads(result.stdout)
        return data[0] if data else None

    def inspect_image(self, name: str) -> dict[str, Any] | None:
        result = self.run(["image", "inspect", name], check=False, timeout=30)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)
        return data[0] if data else None

    def list_volumes(self) -> set[str]:
        result = self.run(["volume", "ls", "--format", "{{.Name}}"], timeout=60)
        return set(result.stdout.split())

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        args = ["volume", "create"]
        for key, value in sorted(labels.items()):
            args += ["--label", f"{key}={value}"]
        self.run([*args, name], timeout=60)

    def remove_volume(self, name: str) -> None:
        self.run(["volume", "rm", "--force", name], timeout=60)

    def remove_container(self, name: str, timeout_seconds: int = 5) -> None:
        """Stop and remove ``name``; a container that is already gone is fine."""
        self.run(
            ["rm", "--force", "--ignore", "--time", str(timeout_seconds), name],
            timeout=timeout_seconds + 60,
        )

    def info(self, template: str) -> str:
        return self.run(["info", "--format", template], timeout=60).stdout.strip()
