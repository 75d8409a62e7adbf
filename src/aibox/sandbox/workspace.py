"""Workspace validation and the names derived from a workspace and a user."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from aibox.errors import UsageError

# Filesystems whose permission and locking semantics break a bind-mounted workspace:
# 9p (WSL and VM shares), drvfs (WSL's Windows drives) and the NTFS drivers.
UNSUPPORTED_FILESYSTEMS = frozenset({"9p", "drvfs", "ntfs", "ntfs3", "fuseblk", "lxfs"})

CACHE_MOUNTS = {
    "maven": "/home/dev/.m2/repository",
    "gradle": "/home/dev/.gradle/caches",
    "npm": "/home/dev/.npm",
    "pip": "/home/dev/.cache/pip",
    "nuget": "/home/dev/.nuget/packages",
    "bazel": "/home/dev/.cache/bazel",
}


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/mounts``."""

    mount_point: str
    fs_type: str
    device: str


def current_user() -> str:
    """Return a container-name-safe form of the invoking user's name."""
    name = getpass.getuser()
    return re.sub(r"[^a-z0-9_.-]", "-", name.lower()) or str(os.getuid())


def container_name(workspace: Path, user: str) -> str:
    """Return ``aibox-<user>-<first 8 hex of sha256 of the real path>``."""
    digest = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:8]
    return f"aibox-{user}-{digest}"


def home_volume(user: str) -> str:
    return f"aibox-{user}-home"


def toolpacks_volume(user: str) -> str:
    return f"aibox-{user}-toolpacks"


def cache_volume(user: str, cache: str) -> str:
    return f"aibox-{user}-cache-{cache}"


def parse_mounts(text: str) -> list[MountEntry]:
    """Parse ``/proc/mounts`` text, decoding the octal escapes in paths."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        entries.append(
            MountEntry(mount_point=point, fs_type=fields[2], device=fields[0])
        )
    return entries


def filesystem_of(path: Path, mounts: list[MountEntry]) -> MountEntry | None:
    """Return the mount that contains ``path``: the longest matching mount point."""
    best: MountEntry | None = None
    text = str(path)
    for entry in mounts:
        point = entry.mount_point.rstrip("/") or "/"
        inside = text == point or text.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/"))):
            best = entry
    return best


# Directories whose contents are the host's own state, devices or kernel views.
# Mounting one writable into the sandbox would hand the agent the host's files.
SYSTEM_DIRECTORIES = tuple(
    Path(path)
    for path in (
        "/proc",
        "/sys",
        "/dev",
        "/etc",
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/boot",
        "/run",
        "/var/log",
        "/var/lib",
        "/var/cache",
        "/var/run",
        "/opt/aibox",
    )
)


def validate_workspace(
    workspace: Path, home: Path | None = None, mounts_file: Path = Path("/proc/mounts")
) -> Path:
    """Return the real path of ``workspace``; raise UsageError when it is unusable."""
    if not workspace.exists():
        raise UsageError(
            f"workspace not found: {workspace}",
            hint="Create the directory or pass an existing one with --workspace.",
        )
    real = workspace.resolve()
    if not real.is_dir():
        raise UsageError(
            f"workspace is not a directory: {workspace}",
            hint="Pass the project directory, not a file, with --workspace.",
        )
    if real == Path("/"):
        raise UsageError(
            "workspace must not be the root directory: /",
            hint="Pass a project directory with --workspace.",
        )
    home_path = (home or Path.home()).resolve()
    if real == home_path:
        raise UsageError(
            f"workspace must not be the home directory: {real}",
            hint="Pass a project directory inside it with --workspace.",
        )
    if real in home_path.parents:
        raise UsageError(
            f"workspace must not contain the home directory: {real}",
            hint="Pass a project directory inside your home with --workspace.",
        )
    system = next(
        (top for top in SYSTEM_DIRECTORIES if real == top or top in real.parents),
        None,
    )
    if system is not None:
        raise UsageError(
            f"workspace {real} is a system directory (under {system})",
            hint="Pass a project directory, for example one under your home.",
        )
    try:
        mounts = parse_mounts(mounts_file.read_text("utf-8", errors="replace"))
    except OSError:
        mounts = []
    entry = filesystem_of(real, mounts)
    if entry is not None and entry.fs_type in UNSUPPORTED_FILESYSTEMS:
        raise UsageError(
            f"workspace {real} is on an unsupported {entry.fs_type} filesystem "
            f"(mounted at {entry.mount_point})",
            hint="Move the project to a Linux filesystem such as ext4 or xfs.",
        )
    return real
