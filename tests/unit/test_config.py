"""Config model, loading and error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aibox.cli.main import main
from aibox.config import Config, load_config, parse_bytes
from aibox.errors import ConfigError, UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8Gi", 8 * 1024**3),  # binary unit
        ("512Mi", 512 * 1024**2),
        ("2G", 2 * 1000**3),  # decimal unit
        ("1.5Gi", int(1.5 * 1024**3)),
        ("1024", 1024),  # plain bytes
        (4096, 4096),
    ],
)
def test_parse_bytes_units(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["8 GB", "eight", "-1Gi", "1Pi", ""])
def test_parse_bytes_rejects_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_bytes(text)


def test_defaults_without_file() -> None:
    config = load_config()
    assert config == Config()
    assert config.gvisor.enabled is True
    assert config.gvisor.require_apparmor is False
    assert "vault.internal" in config.network.allowed_services
    assert config.network.gateway == "10.213.0.1"


def test_unknown_key_names_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("gvisor:\n  enabeld: true\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "gvisor.enabeld" in excinfo.value.message
    assert "unknown key" in excinfo.value.message


def test_bad_value_names_value_and_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("resources:\n  memory: lots\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "'lots'" in excinfo.value.message
    assert "resources.memory" in excinfo.value.message


def test_unknown_runtime_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("runtime: lxc\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "'lxc'" in excinfo.value.message
    assert "podman" in excinfo.value.message


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("image: ok\nresources: [unclosed\n")
    with pytest.raises(UsageError) as excinfo:
        load_config(path)
    assert "line 3" in excinfo.value.message or "line 2" in excinfo.value.message


def test_explicit_missing_file_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_aibox_config_variable_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("image: localhost/custom:1\n")
    monkeypatch.setenv("AIBOX_CONFIG", str(path))
    assert load_config().image == "localhost/custom:1"


def test_xdg_config_home_is_used(hermetic_home: Path) -> None:
    target = Path(os.environ["XDG_CONFIG_HOME"]) / "aibox" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("team: platform\n")
    assert load_config().team == "platform"


def test_real_user_config_cannot_leak(tmp_path: Path) -> None:
    # Run one test of this module in a child pytest whose "real" home holds a
    # config that would change the result; the hermetic fixture must hide it.
    real_home = tmp_path / "real-home"
    poisoned = real_home / ".config" / "aibox" / "config.yaml"
    poisoned.parent.mkdir(parents=True)
    poisoned.write_text("gvisor:\n  enabled: false\nimage: localhost/evil:1\n")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(real_home),
        "XDG_CONFIG_HOME": str(real_home / ".config"),
        "AIBOX_CONFIG": str(poisoned),
    }
    target = f"{Path(__file__)}::test_defaults_without_file"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_cli_help_needs_no_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("runtime: lxc\n")
    assert main(["--config", str(path), "--help"]) == 0
