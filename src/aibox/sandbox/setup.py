"""Host setup as a sequence of idempotent steps.

``aibox setup --system`` (root, once per machine) runs :data:`SYSTEM_STEPS`;
``aibox setup`` (any user) runs :data:`USER_STEPS`. Each step returns one line that
says what it did or found, and may be run again safely. Another area adds its own
system step by appending to :data:`SYSTEM_STEPS`.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aibox import paths
from aibox.config import Config, default_config_yaml
from aibox.errors import AiboxError, UsageError
from aibox.network.host import network_setup_step
from aibox.policy.hierarchy import install_default_org_policy, org_policy_path
from aibox.sandbox import apparmor, image, seccomp, security
from aibox.sandbox.podman import Podman
from aibox.sandbox.runtime import RUNSC_CONF, find_runtime
from aibox.sandbox.workspace import current_user

Notify = Callable[[str], None]


@dataclass
class SetupContext:
    """The state shared by the steps: config, progress output and warnings."""

    config: Config
    notify: Notify
    warnings: list[str] = field(default_factory=list)


Step = tuple[str, Callable[[SetupContext], str]]


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text("utf-8") == text:
        path.chmod(mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, "utf-8")
    temporary.chmod(mode)
    temporary.replace(path)
    return True


def install_profiles(context: SetupContext) -> str:
    """Install the seccomp profiles and the AppArmor profile into /etc/aibox."""
    directory = paths.system_dir()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    profile = seccomp.load_profile()
    seccomp.validate_profile(profile)
    changed = _write_if_changed(
        directory / seccomp.PROFILE_NAME, seccomp.render(profile)
    )
    changed |= _write_if_changed(
        directory / seccomp.GVISOR_PROFILE_NAME,
        seccomp.render(seccomp.gvisor_variant(profile)),
    )
    apparmor_file = directory / "apparmor" / apparmor.PROFILE_NAME
    changed |= _write_if_changed(apparmor_file, apparmor.profile_text())
    outcome = apparmor.load_profile(apparmor_file)
    verb = "installed" if changed else "up to date"
    return f"profiles {verb} in {directory}; AppArmor: {outcome}"


def register_runsc(context: SetupContext) -> str:
    """Register runsc as a Podman runtime named ``runsc`` for every user."""
    path = find_runtime("runsc")
    text = (
        f'# Written by aibox setup --system.\n[engine.runtimes]\nrunsc = ["{path}"]\n'
    )
    changed = _write_if_changed(RUNSC_CONF, text)
    return f"runsc {'registered' if changed else 'already registered'} in {RUNSC_CONF}"


def create_group(context: SetupContext) -> str:
    try:
        grp.getgrnam(paths.AIBOX_GROUP)
        return f"group {paths.AIBOX_GROUP} exists"
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", paths.AIBOX_GROUP], check=True, timeout=60)
    return f"group {paths.AIBOX_GROUP} created"


def create_log_dir(context: SetupContext) -> str:
    """Make the log directory setgid and writable by the aibox group (mode 2775)."""
    directory = paths.log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    gid = grp.getgrnam(paths.AIBOX_GROUP).gr_gid
    os.chown(directory, 0, gid)
    directory.chmod(0o2775)
    # The shared decision log and its lock must be group-writable, or other group
    # members fall back to a per-user log and the shared chain is split.
    for name in ("decisions.jsonl", "decisions.jsonl.lock"):
        path = directory / name
        path.touch(exist_ok=True)
        os.chown(path, 0, gid)
        path.chmod(0o660)
    # Per-sandbox LLM payload logs: any group member may add a directory, and
    # the sticky bit keeps members from removing each other's.
    payloads = directory / "llm"
    payloads.mkdir(exist_ok=True)
    os.chown(payloads, 0, gid)
    payloads.chmod(0o3775)
    return f"{directory} is mode 2775, group {paths.AIBOX_GROUP}"


def install_org_policy(context: SetupContext) -> str:
    """Install the packaged org baseline unless the organization has its own."""
    path = org_policy_path()
    if install_default_org_policy():
        return f"default org policy written to {path}"
    return f"org policy {path} exists and is kept"


def _has_subordinate_ids(user: str, database: Path) -> bool:
    try:
        lines = database.read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":")[0] == user for line in lines)


def grant_subordinate_ids(user: str) -> bool:
    """Give ``user`` 65536 subordinate uids and gids for rootless Podman.

    Returns True when entries were added. The range starts after the highest range
    already allocated, so it never overlaps another user's.
    """
    if _has_subordinate_ids(user, Path("/etc/subuid")) and _has_subordinate_ids(
        user, Path("/etc/subgid")
    ):
        return False
    start = 100000
    for database in (Path("/etc/subuid"), Path("/etc/subgid")):
        if database.exists():
            for line in database.read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    start = max(start, int(fields[1]) + int(fields[2]))
    end = start + 65535
    subprocess.run(
        [
            "usermod",
            "--add-subuids",
            f"{start}-{end}",
            "--add-subgids",
            f"{start}-{end}",
            user,
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return True


def prepare_rootless(context: SetupContext) -> str:
    """Let members of the aibox group run rootless Podman.

    They need subordinate uid and gid ranges, and slirp4netns needs ``/dev/net/tun``
    to be usable by them (mode 0666).
    """
    members = grp.getgrnam(paths.AIBOX_GROUP).gr_mem
    granted = [member for member in members if grant_subordinate_ids(member)]
    tun = Path("/dev/net/tun")
    if tun.exists():
        # NOTE: device modes reset at boot; a udev rule would make this permanent.
        tun.chmod(0o666)
    added = f"added ranges for {', '.join(granted)}" if granted else "ranges present"
    return f"rootless Podman for {len(members)} aibox group member(s): {added}"


def build_image_cache(context: SetupContext) -> str:
    tarball = image.build_rootfs(context.notify)
    return f"image root filesystem cached at {tarball}"


SYSTEM_STEPS: list[Step] = [
    ("profiles", install_profiles),
    ("runsc", register_runsc),
    ("group", create_group),
    ("log directory", create_log_dir),
    ("rootless", prepare_rootless),
    ("org policy", install_org_policy),
    ("network", network_setup_step),
    ("image cache", build_image_cache),
]


def write_default_config(context: SetupContext) -> str:
    path = paths.user_config_file()
    if path.exists():
        return f"config {path} exists"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_config_yaml(), "utf-8")
    return f"default config written to {path}"


def check_system_setup(context: SetupContext) -> str:
    missing = system_setup_missing()
    if missing:
        warning = (
            f"system setup has not been done ({', '.join(missing)} missing); "
            "run 'sudo aibox setup --system'"
        )
        context.warnings.append(warning)
        return warning
    return "system setup found"


def system_setup_missing() -> list[str]:
    """Return what ``aibox setup --system`` installs but is absent."""
    missing = []
    for name in (seccomp.PROFILE_NAME, seccomp.GVISOR_PROFILE_NAME):
        if not (paths.system_dir() / name).is_file():
            missing.append(str(paths.system_dir() / name))
    if not RUNSC_CONF.is_file():
        missing.append(str(RUNSC_CONF))
    try:
        grp.getgrnam(paths.AIBOX_GROUP)
    except KeyError:
        missing.append(f"group {paths.AIBOX_GROUP}")
    return missing


def import_image(context: SetupContext) -> str:
    podman = Podman.locate(context.config.runtime)
    result = image.ensure_image(podman, context.config.image, context.notify)
    return f"image {result.image} ready (recipe {result.recipe})"


def create_volumes(context: SetupContext) -> str:
    podman = Podman.locate(context.config.runtime)
    user = current_user()
    created = []
    for volume, _ in security.volume_mounts(user, context.config.caches):
        if not podman.volume_exists(volume):
            podman.create_volume(volume, {f"{security.LABEL_PREFIX}.user": user})
            created.append(volume)
    return f"created volumes {', '.join(created)}" if created else "volumes exist"


USER_STEPS: list[Step] = [
    ("system setup", check_system_setup),
    ("config", write_default_config),
    ("image", import_image),
    ("volumes", create_volumes),
]


def run_steps(steps: list[Step], context: SetupContext) -> list[tuple[str, str]]:
    """Run ``steps`` in order and return (name, outcome) pairs."""
    results = []
    for name, step in steps:
        context.notify(f"{name}: running")
        try:
            outcome = step(context)
        except subprocess.CalledProcessError as exc:
            raise AiboxError(
                f"setup step '{name}' failed: {' '.join(map(str, exc.cmd))} "
                f"exited with {exc.returncode}",
                hint="Fix the cause shown above and run the setup again.",
            ) from None
        except OSError as exc:
            raise AiboxError(
                f"setup step '{name}' failed: {exc}",
                hint="Fix the cause and run the setup again; it is idempotent.",
            ) from None
        results.append((name, outcome))
    return results


def require_root_for_system() -> None:
    if os.geteuid() != 0:
        raise UsageError(
            "aibox setup --system must run as root",
            hint="Run 'sudo aibox setup --system'.",
        )


def user_in_group(user: str) -> bool:
    try:
        group = grp.getgrnam(paths.AIBOX_GROUP)
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    return user in group.gr_mem or entry.pw_gid == group.gr_gid
