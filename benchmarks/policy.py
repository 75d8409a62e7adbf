"""Benchmark the policy engine against baselines measured in the same run.

1. Effective policy for a three-level hierarchy (load and parse three YAML files,
   merge tighten-only, one ``opa eval`` of the org rules) against a bare
   ``opa eval`` of the same rules on the same input, started the same way.
2. One tool decision (the pure matcher over the packaged org rules) against
   ``shlex.split`` of the same command line, the least work any check must do.

Run: /opt/aibox/venv/bin/python benchmarks/policy.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from aibox.config import Config
from aibox.policy import opa
from aibox.policy.effective import build_effective, check_policy, rego_input
from aibox.policy.hierarchy import load_levels, packaged_org_text
from aibox.policy.tools import decide

COMMANDS = [
    "git status",
    "git push origin main",
    "curl -sS https://paste.example/upload",
    "bash -c 'make test && curl x'",
    "python -m pytest -q tests/unit",
    "timeout 30 wget http://foo",
]


def median_seconds(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], runs: int
) -> tuple[float, float]:
    """Time two actions alternately, so drift on the machine hits both alike."""
    first_samples, second_samples = [], []
    for _ in range(runs):
        for action, samples in ((first, first_samples), (second, second_samples)):
            start = time.perf_counter()
            action()
            samples.append(time.perf_counter() - start)
    return statistics.median(first_samples), statistics.median(second_samples)


def write_hierarchy(root: Path) -> tuple[Config, Path]:
    system = root / "etc"
    workspace = root / "workspace"
    (system / "teams" / "payments").mkdir(parents=True)
    (workspace / "aibox").mkdir(parents=True)
    (system / "org-policy.yaml").write_text(packaged_org_text())
    team = {
        "version": 1,
        "classification": "confidential",
        "credentials": {"ttl": "4h"},
    }
    project = {
        "version": 1,
        "network": {"allow": [{"id": "foundry"}, {"id": "git"}, {"id": "nexus"}]},
        "resources": {"memory": "4Gi"},
        "tools": {"rules": [{"match": ["git", "push"], "allow": False}]},
    }
    (system / "teams" / "payments" / "policy.yaml").write_text(yaml.safe_dump(team))
    (workspace / "aibox" / "policy.yaml").write_text(yaml.safe_dump(project))
    os.environ["AIBOX_SYSTEM_DIR"] = str(system)
    return Config(team="payments"), workspace


def bench_effective(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config, workspace = write_hierarchy(Path(folder))
        levels = load_levels(config, workspace)
        effective, _ = build_effective(levels)
        payload = json.dumps(rego_input(effective))
        command = [opa.find_opa(), "eval", "--format", "json", "--stdin-input"]
        for path in opa.rego_files():
            command += ["--data", str(path)]
        command.append(opa.DENY_QUERY)

        def bare_eval() -> None:
            subprocess.run(
                command, input=payload, text=True, capture_output=True, check=True
            )

        report = check_policy(config, workspace)
        assert not report.violations, report.violations
        bare_eval()
        full, bare = interleaved_medians(
            lambda: check_policy(config, workspace), bare_eval, runs
        )
        merge_only = median_seconds(
            lambda: build_effective(load_levels(config, workspace)), runs * 5
        )
    print(f"effective policy, 3 levels + opa eval: {full * 1000:8.2f} ms (median)")
    print(f"bare opa eval, same rules and input:   {bare * 1000:8.2f} ms (median)")
    print(f"load + parse + merge only, in-process: {merge_only * 1000:8.2f} ms")
    print(f"ratio effective / bare opa eval:       {full / bare:8.2f}")


def bench_tool_decision(loops: int) -> None:
    org = yaml.safe_load(packaged_org_text())
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "etc").mkdir()
        (root / "etc" / "org-policy.yaml").write_text(yaml.safe_dump(org))
        os.environ["AIBOX_SYSTEM_DIR"] = str(root / "etc")
        effective, _ = build_effective(load_levels(Config(), root))
    rules = effective.policy.tools.rules or ()
    default = effective.policy.tools.default or "review-required"
    argvs = [shlex.split(line) for line in COMMANDS]

    def decide_all() -> None:
        for argv in argvs:
            decide(rules, default, argv)

    def split_all() -> None:
        for line in COMMANDS:
            shlex.split(line)

    per_decision = median_seconds(decide_all, loops) / len(argvs)
    per_split = median_seconds(split_all, loops) / len(COMMANDS)
    print(
        f"tool decision ({len(rules)} rules), in-process: {per_decision * 1e6:8.2f} us"
    )
    print(f"baseline shlex.split of the command:        {per_split * 1e6:8.2f} us")
    print(
        f"ratio decision / shlex.split:               {per_decision / per_split:8.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="opa runs per measurement")
    parser.add_argument("--loops", type=int, default=2000, help="tool decision loops")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_effective(args.runs)
    bench_tool_decision(args.loops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
