"""AppArmor detection and the one designed degradation of the sandbox.

When the kernel has no AppArmor, or the ``aibox-sandbox`` profile is not loaded,
the sandbox still runs under gVisor and the seccomp allowlist. ``require_apparmor``
turns that degradation into a refusal.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aibox.errors import AiboxError

log = logging.getLogger(__name__)

PROFILE_NAME = "aibox-sandbox"
PROFILE_FILE = "apparmor-aibox-sandbox"
_ENABLED_PARAMETER = Path("/sys/module/apparmor/parameters/enabled")
_PROFILES_LIST = Path("/sys/kernel/security/apparmor/profiles")

DEGRADED_WARNING = (
    "AppArmor profile {profile} is not active ({reason}); the sandbox relies on its "
    "compensating controls, gVisor and the seccomp allowlist"
)


@dataclass(frozen=True)
class AppArmorState:
    """Whether the kernel has AppArmor and whether the sandbox profile is loaded."""

    kernel_enabled: bool
    profile_loaded: bool

    @property
    def active(self) -> bool:
        return self.kernel_enabled and self.profile_loaded

    @property
    def reason(self) -> str:
        if not self.kernel_enabled:
            return "the kernel has no AppArmor"
        if not self.profile_loaded:
            return f"profile {PROFILE_NAME} is not loaded"
        return "active"

    def as_dict(self) -> dict[str, object]:
        return {
            "kernel_enabled": self.kernel_enabled,
            "profile_loaded": self.profile_loaded,
            "state": "enforced" if self.active else "degraded",
            "reason": self.reason,
        }


def detect(
    enabled_file: Path = _ENABLED_PARAMETER, profiles_file: Path = _PROFILES_LIST
) -> AppArmorState:
    """Read the AppArmor state from sysfs and securityfs."""
    try:
        enabled = enabled_file.read_text().strip().upper().startswith("Y")
    except OSError:
        enabled = False
    loaded = False
    if enabled:
        try:
            names = [
                line.split(" (")[0] for line in profiles_file.read_text().splitlines()
            ]
            loaded = PROFILE_NAME in names
        except OSError:
            loaded = False
    return AppArmorState(kernel_enabled=enabled, profile_loaded=loaded)


def enforce_requirement(
    state: AppArmorState, require: bool, rootless: bool
) -> str | None:
    """Apply ``gvisor.require_apparmor`` to ``state``.

    Returns the warning to show when the sandbox runs without AppArmor, or None when
    the profile is enforced. Raises AiboxError when AppArmor is required but absent.
    """
    if state.active and not rootless:
        return None
    reason = "rootless Podman does not apply AppArmor" if rootless else state.reason
    if require:
        raise AiboxError(
            f"AppArmor is required by gvisor.require_apparmor but not active: {reason}",
            hint="Boot a kernel with AppArmor and run 'sudo aibox setup --system' to "
            "load the profile, or set gvisor.require_apparmor: false.",
        )
    return DEGRADED_WARNING.format(profile=PROFILE_NAME, reason=reason)


def profile_text() -> str:
    return resources.files("aibox").joinpath("data", PROFILE_FILE).read_text("utf-8")


def load_profile(path: Path) -> str:
    """Load the profile at ``path`` into the kernel; return what happened.

    On a kernel without AppArmor only the syntax is checked, because loading fails.
    """
    parser = shutil.which("apparmor_parser")
    if parser is None:
        return "apparmor_parser is not installed; profile installed but not loaded"
    state = detect()
    args = (
        [parser, "-r", str(path)]
        if state.kernel_enabled
        else [parser, "-QTK", str(path)]
    )
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AiboxError(
            f"apparmor_parser rejected {path}: {result.stderr.strip()}",
            hint="Reinstall aibox; the shipped profile should always parse.",
        )
    if state.kernel_enabled:
        return f"profile {PROFILE_NAME} loaded"
    return "the kernel has no AppArmor; profile syntax checked, not loaded"
