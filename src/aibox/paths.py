"""Well-known file locations, resolved from the environment at call time."""

from __future__ import annotations

import os
from pathlib import Path

AIBOX_GROUP = "aibox"


def system_dir() -> Path:
    """Return the directory for host-wide config (``/etc/aibox`` by default)."""
    return Path(os.environ.get("AIBOX_SYSTEM_DIR", "/etc/aibox"))


def log_dir() -> Path:
    """Return the shared log directory (``/var/log/aibox`` by default)."""
    return Path(os.environ.get("AIBOX_LOG_DIR", "/var/log/aibox"))


def run_dir() -> Path:
    """Return the runtime directory for pid files and sockets."""
    return Path(os.environ.get("AIBOX_RUN_DIR", "/run/aibox"))


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")


def user_config_file() -> Path:
    """Return the config path: ``AIBOX_CONFIG`` or the XDG location."""
    override = os.environ.get("AIBOX_CONFIG")
    if override:
        return Path(override)
    return config_home() / "aibox" / "config.yaml"


def user_state_dir() -> Path:
    return state_home() / "aibox"
