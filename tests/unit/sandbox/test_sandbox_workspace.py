"""Workspace validation and naming."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aibox.errors import UsageError
from aibox.sandbox import workspace as ws


def test_container_name_hashes_real_path(tmp_path: Path) -> None:
    target = tmp_path / "project"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:8]
    assert ws.container_name(target, "alice") == f"aibox-alice-{digest}"
    assert ws.container_name(link, "alice") == f"aibox-alice-{digest}"


def test_missing_workspace_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="workspace not found") as info:
        ws.validate_workspace(tmp_path / "absent")
    assert info.value.exit_code == 2


def test_file_workspace_rejected(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        ws.validate_workspace(path)


def test_root_and_home_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="root directory"):
        ws.validate_workspace(Path("/"))
    with pytest.raises(UsageError, match="home directory"):
        ws.validate_workspace(tmp_path, home=tmp_path)


@pytest.mark.parametrize("fs_type", ["9p", "drvfs", "ntfs", "ntfs3", "fuseblk"])
def test_unsupported_filesystem_rejected(tmp_path: Path, fs_type: str) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nshare {tmp_path} {fs_type} rw 0 0\n")
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(UsageError, match=f"unsupported {fs_type} filesystem"):
        ws.validate_workspace(project, mounts_file=mounts)


def test_ext4_workspace_accepted(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nshare /mnt/c 9p rw 0 0\n")
    assert ws.validate_workspace(tmp_path, mounts_file=mounts) == tmp_path.resolve()


def test_mount_points_with_escaped_spaces() -> None:
    entries = ws.parse_mounts("C: /mnt/my\\040drive 9p rw 0 0\n")
    assert entries[0].mount_point == "/mnt/my drive"
    found = ws.filesystem_of(Path("/mnt/my drive/x"), entries)
    assert found is not None
    assert found.fs_type == "9p"


def test_longest_mount_point_wins() -> None:
    entries = ws.parse_mounts(
        "a / ext4 rw 0 0\nb /mnt 9p rw 0 0\nc /mnt/ok xfs rw 0 0\n"
    )
    assert ws.filesystem_of(Path("/mnt/ok/p"), entries).fs_type == "xfs"  # type: ignore[union-attr]
    assert ws.filesystem_of(Path("/mnt/other"), entries).fs_type == "9p"  # type: ignore[union-attr]
    assert ws.filesystem_of(Path("/mntx"), entries).fs_type == "ext4"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "directory",
    ["/proc", "/dev", "/etc", "/usr/share", "/run", "/var/log", "/var/lib"],
)
def test_system_directories_rejected(directory: str) -> None:
    with pytest.raises(UsageError, match="system directory"):
        ws.validate_workspace(Path(directory), home=Path("/nonexistent-home"))


def test_ancestor_of_home_rejected(tmp_path: Path) -> None:
    home = tmp_path / "home" / "dev"
    home.mkdir(parents=True)
    with pytest.raises(UsageError, match="must not contain the home directory"):
        ws.validate_workspace(tmp_path / "home", home=home)


def test_denied_path_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aibox.sandbox.lifecycle import check_denied_paths

    monkeypatch.setenv("HOME", str(tmp_path))
    secrets_dir = tmp_path / ".ssh" / "project"
    secrets_dir.mkdir(parents=True)
    policy = {"filesystem": {"deny": ["~/.ssh", "/var/run/docker.sock"]}}
    with pytest.raises(UsageError, match=r"filesystem\.deny"):
        check_denied_paths(secrets_dir.resolve(), policy)
    check_denied_paths((tmp_path / "elsewhere").resolve(), policy)
