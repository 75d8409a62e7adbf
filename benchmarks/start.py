"""Time ``aibox start`` against bare Podman with the same image and flags.

Cold start: no container and no volumes (aibox creates eight volumes, the bare run
lets ``podman run`` create them). Warm start: a stopped sandbox started again
(``podman start`` with the same runtime flags for the baseline). The sandbox runs
with gVisor and no network; the network, credential and LLM proxy steps are
replaced by no-ops, so the numbers show what the sandbox lifecycle itself adds.
Run as root on a host where ``aibox setup --system`` and ``aibox setup`` were done:

    /opt/aibox/venv/bin/python benchmarks/start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aibox.config import Config
from aibox.sandbox import lifecycle, security
from aibox.sandbox.podman import Podman


def stub_other_areas() -> None:
    lifecycle.enforcement.check_host_enforcement = lambda *args: None  # type: ignore[assignment]
    lifecycle.enforcement.container_network_args = lambda *args: ["--network", "none"]  # type: ignore[assignment]
    lifecycle.credentials.prepare_sandbox_credentials = lambda *args, **kwargs: []  # type: ignore[assignment]
    lifecycle.credentials.revoke_sandbox_credentials = lambda *args: None  # type: ignore[assignment]
    lifecycle.llm_proxy.start_llm_proxy = lambda *args: None  # type: ignore[assignment]
    lifecycle.llm_proxy.payload_log_mount_args = lambda *args: []  # type: ignore[assignment]


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def remove_all(podman: Podman, user: str) -> None:
    names = podman.run(["ps", "-a", "--format", "{{.Names}}"]).stdout.split()
    for name in names:
        if name.startswith(f"aibox-{user}-") or name.startswith(f"bare-{user}"):
            podman.remove_container(name, timeout_seconds=0)
    for volume in podman.run(["volume", "ls", "--format", "{{.Name}}"]).stdout.split():
        if volume.startswith(f"aibox-{user}-"):
            podman.remove_volume(volume)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    runs = parser.parse_args().runs

    stub_other_areas()
    user = f"aiboxbench{secrets.token_hex(2)}"
    os.environ["USER"] = os.environ["LOGNAME"] = user
    config = Config()
    podman = Podman.locate("podman")
    workspace = Path(tempfile.mkdtemp(prefix="aibox-bench-"))
    workspace.chmod(0o777)
    sandbox = lifecycle.Sandbox.for_workspace(workspace)
    results: dict[str, list[float]] = {
        key: [] for key in ("aibox cold", "bare cold", "aibox warm", "bare warm")
    }

    try:
        # The exact arguments aibox used, reused for the bare baseline.
        lifecycle.start(config, workspace, lambda message: None)
        data = podman.inspect_container(sandbox.name)
        assert data is not None
        bare_args = [
            arg if arg != sandbox.name else f"bare-{user}"
            for arg in data["Config"]["CreateCommand"][1:]
        ]
        bare_restart = [*security.start_args(data)[:-1], f"bare-{user}"]
        remove_all(podman, user)

        for _ in range(runs):
            results["aibox cold"].append(
                timed(lambda: lifecycle.start(config, workspace, lambda m: None))
            )
            podman.run(["stop", "--time", "0", sandbox.name])
            results["aibox warm"].append(
                timed(lambda: lifecycle.start(config, workspace, lambda m: None))
            )
            remove_all(podman, user)

            results["bare cold"].append(timed(lambda: podman.run(bare_args)))
            podman.run(["stop", "--time", "0", f"bare-{user}"])
            results["bare warm"].append(timed(lambda: podman.run(bare_restart)))
            remove_all(podman, user)
    finally:
        remove_all(podman, user)

    medians = {key: statistics.median(values) for key, values in results.items()}
    print(f"runs per measurement: {runs} (median seconds)")
    for key, value in medians.items():
        print(f"  {key:<11} {value:6.3f} s")
    print(f"cold ratio aibox/bare: {medians['aibox cold'] / medians['bare cold']:.2f}")
    print(f"warm ratio aibox/bare: {medians['aibox warm'] / medians['bare warm']:.2f}")


if __name__ == "__main__":
    main()
