"""Mandatory container flags and the rejection of settings that remove them."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibox.config import Config
from aibox.errors import UsageError
from aibox.sandbox import runtime, security


def make_spec(tmp_path: Path, **overrides: object) -> security.SandboxSpec:
    values: dict[str, object] = {
        "name": "aibox-tester-0123abcd",
        "user": "tester",
        "workspace": tmp_path,
        "image": "localhost/aibox-sandbox:latest",
        "runtime": security.RuntimeChoice(
            "runsc", "/usr/bin/runsc", ("oci-seccomp", "network=none")
        ),
        "seccomp_profile": Path("/etc/aibox/seccomp-gvisor.json"),
        "confine_profile": Path("/etc/aibox/seccomp.json"),
        "resources": security.Resources(cpus=2, memory_bytes=8 * 1024**3, pids=4096),
        "rootless": False,
        "apparmor": False,
        "caches": ("maven", "pip"),
        "policy_hash": "f" * 64,
        "network_args": ("--network", "none"),
    }
    values.update(overrides)
    return security.SandboxSpec(**values)  # type: ignore[arg-type]


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_run_args_carry_every_control(tmp_path: Path) -> None:
    args = security.build_run_args(make_spec(tmp_path))
    assert "--cap-drop=ALL" in args
    assert "--read-only" in args
    assert pairs(args, "--user") == ["1000:1000"]
    assert "no-new-privileges" in pairs(args, "--security-opt")
    assert "seccomp=/etc/aibox/seccomp-gvisor.json" in pairs(args, "--security-opt")
    assert pairs(args, "--runtime") == ["/usr/bin/runsc"]
    assert pairs(args, "--runtime-flag") == ["oci-seccomp", "network=none"]
    tmpfs = pairs(args, "--tmpfs")
    assert "/tmp:rw,noexec,nosuid,nodev,size=2g" in tmpfs
    assert "/var/tmp:rw,noexec,nosuid,nodev,size=1g" in tmpfs
    assert pairs(args, "--ulimit") == ["nofile=1024:1024", "nproc=1024:1024"]
    assert args[-3:] == ["localhost/aibox-sandbox:latest", "sleep", "infinity"]


def test_run_args_mount_workspace_venv_and_volumes(tmp_path: Path) -> None:
    volumes = pairs(security.build_run_args(make_spec(tmp_path)), "--volume")
    launcher = Path(security.__file__).with_name("seccomp_exec.py")
    source = security.development_source_dir()
    development = [f"{source}:{source}:ro,nosuid,nodev"] if source else []
    assert volumes == [
        f"{tmp_path}:/workspace:rw,nosuid,nodev",
        "/opt/aibox/venv:/opt/aibox/venv:ro,nosuid,nodev",
        *development,
        f"{launcher}:/run/aibox-sandbox/seccomp_exec.py:ro,nosuid,nodev",
        "/etc/aibox/seccomp.json:/run/aibox-sandbox/seccomp.json:ro,nosuid,nodev",
        "aibox-tester-home:/home/dev:rw,nosuid,nodev",
        "aibox-tester-toolpacks:/opt/toolpacks:rw,nosuid,nodev",
        "aibox-tester-cache-maven:/home/dev/.m2/repository:rw,nosuid,nodev",
        "aibox-tester-cache-pip:/home/dev/.cache/pip:rw,nosuid,nodev",
    ]


def test_run_args_label_version_workspace_policy(tmp_path: Path) -> None:
    labels = pairs(security.build_run_args(make_spec(tmp_path)), "--label")
    assert "io.aibox.version=0.1.0" in labels
    assert f"io.aibox.workspace={tmp_path}" in labels
    assert "io.aibox.policy-hash=" + "f" * 64 in labels


def test_apparmor_flag_only_when_active_and_root(tmp_path: Path) -> None:
    enforced = security.build_run_args(make_spec(tmp_path, apparmor=True))
    assert "apparmor=aibox-sandbox" in pairs(enforced, "--security-opt")
    rootless = security.build_run_args(
        make_spec(tmp_path, apparmor=True, rootless=True)
    )
    assert "apparmor=aibox-sandbox" not in pairs(rootless, "--security-opt")
    assert pairs(rootless, "--ulimit") == []


@pytest.mark.parametrize(
    "extra",
    [
        ["--privileged"],
        ["--cap-add", "SYS_ADMIN"],
        ["--cap-add=NET_ADMIN"],
        ["--security-opt", "seccomp=unconfined"],
        ["--read-only=false"],
        ["--user", "0"],
        ["--userns=host"],
        ["--pid=host"],
        ["--network=host"],
        ["--device", "/dev/kvm"],
    ],
)
def test_weakening_args_from_other_modules_rejected(
    tmp_path: Path, extra: list[str]
) -> None:
    with pytest.raises(UsageError, match=r"reserves|expose"):
        security.build_run_args(make_spec(tmp_path, extra_args=tuple(extra)))


@pytest.mark.parametrize(
    "settings",
    [
        {"privileged": True},
        {"cap_add": ["SYS_ADMIN"]},
        {"cap-add": ["NET_RAW"]},
        {"read_only": False},
        {"writable_root": True},
        {"seccomp": "unconfined"},
    ],
)
def test_policy_runtime_cannot_remove_control(settings: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="not allowed"):
        runtime.runtime_settings({"runtime": settings})


@pytest.mark.parametrize(
    "yaml_text",
    [
        "privileged: true\n",
        "cap_add: [SYS_ADMIN]\n",
        "read_only: false\n",
        "gvisor:\n  privileged: true\n",
    ],
)
def test_config_cannot_remove_control(tmp_path: Path, yaml_text: str) -> None:
    from aibox.config import load_config
    from aibox.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)


def test_workspace_path_with_colon_rejected(tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(UsageError, match="':'"):
        security.build_run_args(make_spec(odd))


def test_unknown_cache_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown cache 'cargo'"):
        security.build_run_args(make_spec(tmp_path, caches=("cargo",)))


def test_gvisor_network_flags() -> None:
    assert runtime.gvisor_flags(["--network", "none"], rootless=False) == (
        "oci-seccomp",
        "network=none",
    )
    assert runtime.gvisor_flags(["--network=aibox"], rootless=True) == (
        "oci-seccomp",
        "network=host",
        "ignore-cgroups",
    )
    # The rootless relay listens on the namespace's loopback, which gVisor's
    # own network stack (network=none) would hide from the sandbox.
    assert runtime.gvisor_flags(["--network", "none"], rootless=True) == (
        "oci-seccomp",
        "network=host",
        "ignore-cgroups",
    )


def test_runtime_disabled_gvisor_uses_runc() -> None:
    config = Config.model_validate({"gvisor": {"enabled": False}})
    choice = runtime.select_runtime(config, {}, rootless=False, network_args=[])
    assert choice.name == "runc"
    assert choice.flags == ()


def test_policy_requiring_gvisor_beats_config() -> None:
    config = Config.model_validate({"gvisor": {"enabled": False}})
    with pytest.raises(UsageError, match="requires gVisor"):
        runtime.select_runtime(config, {"runtime": {"gvisor": True}}, False, [])


def test_runc_sandbox_has_no_launcher_mount(tmp_path: Path) -> None:
    runc = security.RuntimeChoice("runc", "/usr/sbin/runc")
    spec = make_spec(tmp_path, runtime=runc, confine_profile=None)
    volumes = pairs(security.build_run_args(spec), "--volume")
    assert not [volume for volume in volumes if "/run/aibox-sandbox" in volume]


def test_exec_args_confine_gvisor_commands(tmp_path: Path) -> None:
    from aibox.sandbox.lifecycle import Sandbox, exec_args

    sandbox = Sandbox(workspace=tmp_path, user="tester", name="aibox-tester-1")
    confined = exec_args(sandbox, ["id"], tty=False, env={"A": "1"}, gvisor=True)
    assert confined[-6:] == [*security.CONFINE_PREFIX, "id"]
    assert "--tty" not in confined
    assert confined[confined.index("--user") + 1] == "1000:1000"
    plain = exec_args(sandbox, [], tty=True, env={}, gvisor=False)
    assert plain[-3:] == ["aibox-tester-1", "bash", "-l"]
    assert "--tty" in plain


def test_start_args_repeat_runtime_flags(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    container = {"Name": spec.name, "Config": {"Labels": security.labels(spec)}}
    assert security.start_args(container) == [
        "--runtime-flag",
        "oci-seccomp",
        "--runtime-flag",
        "network=none",
        "start",
        spec.name,
    ]
