"""The per-sandbox credential directory on a host tmpfs, bind-mounted read-only.

Secret files are mode 0400 and owned by the one in-sandbox user who needs them:
uid 1000 (the developer) for the git and Vault tokens, uid 1001 (``llmproxy``)
for the LLM API key. The directory lives on tmpfs so no token reaches a disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibox import paths
from aibox.credentials.errors import CredentialError
from aibox.credentials.secret import Secret
from aibox.errors import ExternalToolError

CONTAINER_DIR = "/run/aibox/credentials"
SANDBOX_UID = 1000
LLM_PROXY_UID = 1001
TMPFS_TYPES = frozenset({"tmpfs", "ramfs"})
_MOUNT_OPTIONS = "size=1m,mode=0755,nosuid,nodev,noexec"


def sandbox_root(sandbox_id: str, rootless: bool) -> Path:
    """Return the host directory that contains ``sandbox_id``'s runtime files."""
    if rootless:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime:
            raise CredentialError(
                "XDG_RUNTIME_DIR is not set, so there is no tmpfs for sandbox tokens",
                hint="Log in through a session that sets it (systemd-logind or pam).",
            )
        return Path(runtime) / "aibox" / "sandboxes" / sandbox_id
    return paths.run_dir() / "sandboxes" / sandbox_id


def filesystem_type(path: Path) -> str:
    """Return the type of the filesystem holding ``path`` from /proc/self/mountinfo."""
    target = path
    while not target.exists():
        target = target.parent
    resolved = str(target.resolve())
    best_mount, best_type = "", "unknown"
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields, _, rest = line.partition(" - ")
            mount_point = fields.split()[4].replace("\\040", " ")
            inside = resolved == mount_point or resolved.startswith(
                mount_point.rstrip("/") + "/"
            )
            if inside and len(mount_point) >= len(best_mount):
                best_mount, best_type = mount_point, rest.split()[0]
    return best_type


def _run(command: list[str]) -> None:
    executable = shutil.which(command[0])
    if executable is None:
        raise ExternalToolError(
            f"{command[0]} not found", hint=f"Install {command[0]} on the host."
        )
    result = subprocess.run(
        [executable, *command[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise ExternalToolError(
            f"{' '.join(command)} failed with exit code {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


@dataclass(frozen=True)
class HandoffDirectory:
    """The host directory of one sandbox's credential files."""

    root: Path
    rootless: bool
    mounted: bool
    keep_id: bool = False

    @property
    def path(self) -> Path:
        return self.root / "credentials"

    def podman_args(self) -> list[str]:
        return [
            "--mount",
            f"type=bind,source={self.path},destination={CONTAINER_DIR},ro=true",
        ]


def create_directory(
    sandbox_id: str, rootless: bool, keep_id: bool = False
) -> HandoffDirectory:
    """Create the credential directory on tmpfs, mounting one when running as root.

    Rootless runs use ``$XDG_RUNTIME_DIR`` and are rejected when it is not tmpfs.
    """
    root = sandbox_root(sandbox_id, rootless)
    if not rootless and os.geteuid() != 0:
        raise CredentialError(
            "a rootful sandbox needs root to hand over credentials",
            hint="Run aibox as root, or use rootless Podman.",
        )
    root.mkdir(parents=True, exist_ok=True, mode=0o755)
    if not rootless:
        # Root-run sandboxes share uids 1000 and 1001 with the host's accounts of
        # those numbers. A root-only parent keeps those accounts out, and the
        # runtime still mounts the directory because it runs as root.
        os.chown(root.parent, 0, 0)
        os.chmod(root.parent, 0o700)
    mounted = False
    if filesystem_type(root) not in TMPFS_TYPES:
        if rootless:
            with contextlib.suppress(OSError):
                root.rmdir()
            raise CredentialError(
                f"{root} is not on tmpfs, so tokens written there could reach a disk",
                hint="Make XDG_RUNTIME_DIR a tmpfs (systemd-logind does this).",
            )
        _run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                _MOUNT_OPTIONS,
                "aibox-credentials",
                str(root),
            ]
        )
        mounted = True
    # The sandbox users must traverse these directories. The files inside are
    # 0400 or 0444.
    os.chmod(root, 0o755)  # noqa: S103
    directory = HandoffDirectory(
        root=root, rootless=rootless, mounted=mounted, keep_id=keep_id
    )
    directory.path.mkdir(mode=0o755, exist_ok=True)
    os.chmod(directory.path, 0o755)  # noqa: S103
    return directory


def _set_owner(directory: HandoffDirectory, path: Path, uid: int) -> None:
    if directory.rootless:
        # With --userns=keep-id:uid=1000 the sandbox user 1000 is the host user,
        # who already owns the file. Every other uid maps the same way in both
        # namespaces, which is what ``podman unshare`` sees.
        if directory.keep_id and uid == SANDBOX_UID:
            return
        _run(["podman", "unshare", "chown", f"{uid}:{uid}", str(path)])
    else:
        os.chown(path, uid, uid)


def write_secret_file(
    directory: HandoffDirectory, name: str, value: Secret, uid: int
) -> None:
    """Write ``value`` to a new file readable only by ``uid`` inside the sandbox."""
    path = directory.path / name
    descriptor = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400
    )
    try:
        os.write(descriptor, value.reveal().encode())
    finally:
        os.close(descriptor)
    _set_owner(directory, path, uid)


def write_public_file(directory: HandoffDirectory, name: str, data: Any) -> None:
    """Write non-secret JSON that every sandbox user may read."""
    path = directory.path / name
    descriptor = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444
    )
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def remove_directory(root: Path, rootless: bool, mounted: bool) -> None:
    """Delete the files, unmount the tmpfs aibox mounted, and remove ``root``."""
    if rootless and root.exists():
        # Files chowned into the user namespace can only be removed from inside it.
        _run(["podman", "unshare", "rm", "-rf", "--", str(root / "credentials")])
    elif (root / "credentials").exists():
        shutil.rmtree(root / "credentials")
    if mounted and filesystem_type(root) in TMPFS_TYPES and os.path.ismount(root):
        _run(["umount", str(root)])
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
