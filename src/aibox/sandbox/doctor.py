"""Host checks for ``aibox doctor``: each returns a result with the fix when failed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibox.config import Config, load_config
from aibox.errors import AiboxError
from aibox.sandbox import apparmor, image, seccomp, security
from aibox.sandbox.podman import Podman
from aibox.sandbox.runtime import RUNSC_CONF, find_runtime
from aibox.sandbox.setup import system_setup_missing

MIN_FREE_BYTES = 2 * 1024**3

ROOTLESS_GVISOR_LIMIT = (
    "rootless gVisor runs, but runsc 2024-07-29 ignores Podman's keep-id and --uidmap "
    "mappings and POSIX ACLs on bind mounts, so /workspace is writable for the sandbox "
    "user only when the directory's mode lets others write"
)


@dataclass(frozen=True)
class CheckResult:
    """One doctor check: ``ok``, ``warn`` (informational) or ``fail``."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


Check = Callable[["DoctorContext"], CheckResult]


@dataclass
class DoctorContext:
    config_path: Path | None
    config: Config | None = None
    podman: Podman | None = None


def check_config(context: DoctorContext) -> CheckResult:
    try:
        context.config = load_config(context.config_path)
    except AiboxError as exc:
        context.config = Config()
        return CheckResult("config", "fail", exc.message, exc.hint)
    return CheckResult("config", "ok", "config is valid")


def check_podman(context: DoctorContext) -> CheckResult:
    config = context.config or Config()
    try:
        context.podman = Podman.locate(config.runtime)
        version = context.podman.version()
    except AiboxError as exc:
        return CheckResult("podman", "fail", exc.message, exc.hint)
    mode = "rootless" if context.podman.rootless else "root"
    return CheckResult(
        "podman", "ok", f"{context.podman.executable} {version} ({mode})"
    )


def check_runtime(context: DoctorContext) -> CheckResult:
    config = context.config or Config()
    if context.podman is None:
        return CheckResult("runtime", "fail", "skipped: no container engine", None)
    name = "runsc" if config.gvisor.enabled else "runc"
    try:
        path = find_runtime(name)
    except AiboxError as exc:
        return CheckResult("runtime", "fail", exc.message, exc.hint)
    if name == "runsc" and not RUNSC_CONF.is_file():
        return CheckResult(
            "runtime", "fail", f"runsc is not registered in {RUNSC_CONF}",
            "Run 'sudo aibox setup --system'.",
        )  # fmt: skip
    if not context.podman.image_exists(config.image):
        return CheckResult(
            "runtime", "fail", f"cannot test {name}: image {config.image} is missing",
            "Run 'aibox setup' to import the image.",
        )  # fmt: skip
    args = ["run", "--rm", "--pull=never", "--network", "none", "--runtime", path]
    if name == "runsc":
        args += ["--runtime-flag", "network=none"]
        if context.podman.rootless:
            args += ["--runtime-flag", "ignore-cgroups"]
    if not context.podman.rootless:
        for limit in security.ROOT_ULIMITS:
            args += ["--ulimit", limit]
    result = context.podman.run([*args, config.image, "true"], check=False, timeout=120)
    if result.returncode != 0:
        return CheckResult(
            "runtime", "fail", f"{name} could not start a container: "
            f"{result.stderr.strip().splitlines()[-1:] or 'no output'}",
            "Reinstall runsc with 'bash scripts/install-deps.sh' and rerun setup.",
        )  # fmt: skip
    if name == "runsc" and context.podman.rootless:
        return CheckResult("runtime", "warn", ROOTLESS_GVISOR_LIMIT, None)
    return CheckResult("runtime", "ok", f"{name} ({path}) started a container")


def check_seccomp(context: DoctorContext) -> CheckResult:
    try:
        for gvisor in (False, True):
            seccomp.validate_profile(seccomp.load_profile(seccomp.profile_path(gvisor)))
    except AiboxError as exc:
        return CheckResult("seccomp", "fail", exc.message, exc.hint)
    return CheckResult(
        "seccomp", "ok", "profiles deny by default and permit no escape call"
    )


def check_apparmor(context: DoctorContext) -> CheckResult:
    state = apparmor.detect()
    if state.active:
        return CheckResult(
            "apparmor", "ok", f"profile {apparmor.PROFILE_NAME} enforced"
        )
    detail = f"degraded: {state.reason}; gVisor and seccomp compensate"
    return CheckResult("apparmor", "warn", detail, None)


def check_system_setup(context: DoctorContext) -> CheckResult:
    missing = system_setup_missing()
    if missing:
        return CheckResult(
            "system setup", "fail", f"missing: {', '.join(missing)}",
            "Run 'sudo aibox setup --system'.",
        )  # fmt: skip
    return CheckResult(
        "system setup", "ok", "profiles, runsc registration and group found"
    )


def check_image(context: DoctorContext) -> CheckResult:
    config = context.config or Config()
    if context.podman is None:
        return CheckResult("image", "fail", "skipped: no container engine", None)
    status = image.image_status(context.podman, config.image)
    if not status.present:
        return CheckResult(
            "image", "fail", f"image {config.image} not found", "Run 'aibox setup'."
        )
    if config.image == image.DEFAULT_IMAGE and not status.current:
        return CheckResult(
            "image", "fail", f"image {config.image} is from an older recipe",
            "Run 'aibox image build'.",
        )  # fmt: skip
    return CheckResult("image", "ok", f"{config.image} (recipe {status.recipe})")


def check_disk(context: DoctorContext) -> CheckResult:
    root = "/"
    if context.podman is not None:
        try:
            root = context.podman.info("{{.Store.GraphRoot}}") or "/"
        except AiboxError:
            root = "/"
    target = Path(root)
    while not target.exists():
        target = target.parent
    free = shutil.disk_usage(target).free
    detail = f"{free / 1024**3:.1f} GiB free under {root}"
    if free < MIN_FREE_BYTES:
        return CheckResult("disk", "fail", detail, "Free at least 2 GiB for images.")
    return CheckResult("disk", "ok", detail)


CHECKS: list[Check] = [
    check_config,
    check_podman,
    check_system_setup,
    check_runtime,
    check_seccomp,
    check_apparmor,
    check_image,
    check_disk,
]


def network_results(context: DoctorContext) -> list[CheckResult]:
    """Run the host-side egress checks: ruleset, rendered files, Squid, CoreDNS."""
    from aibox.network.checks import host_checks

    if context.config is None:
        return [CheckResult("network", "fail", "skipped: the config is invalid")]
    try:
        checks = host_checks(context.config)
    except AiboxError as exc:
        return [CheckResult("network", "fail", exc.message, exc.hint)]
    return [
        CheckResult(
            f"network: {check.name}",
            "ok" if check.ok else "fail",
            check.detail,
            check.hint,
        )
        for check in checks
    ]


def run_checks(config_path: Path | None) -> list[CheckResult]:
    context = DoctorContext(config_path=config_path)
    results = [check(context) for check in CHECKS]
    return results + network_results(context)
