"""`aibox network` commands: probe a sandbox, check the host, show the allowlist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from aibox.cli.common import AppContext, out, pass_app, print_json, workspace_option
from aibox.errors import UsageError
from aibox.network.allowlist import allowlist_from_policy
from aibox.network.checks import Check, host_checks
from aibox.network.probes import ProbeResult, run_probes, sandbox_probes
from aibox.network.settings import network_settings


@click.group()
def network() -> None:
    """Inspect and test egress enforcement."""


def _sandbox_container(workspace: Path, container: str | None) -> str:
    if container:
        return container
    from aibox.sandbox.lifecycle import Sandbox

    return Sandbox.for_workspace(workspace).name


def _print_rows(rows: list[tuple[bool, str, str, str | None]]) -> None:
    for ok, name, detail, fix in rows:
        mark = "[green]pass[/green]" if ok else "[red]FAIL[/red]"
        out.print(f"{mark} {name}: {detail}", markup=True, highlight=False)
        if fix:
            out.print(f"     fix: {fix}", markup=False, highlight=False)


@network.command("test")
@workspace_option
@click.option(
    "--container",
    default=None,
    help="Container to probe instead of the workspace's sandbox.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_app
def test_command(
    app: AppContext, workspace: Path, container: str | None, as_json: bool
) -> int:
    """Run the egress probes inside the running sandbox.

    Each allowlisted service must resolve and be reachable through the proxy; a
    name outside the list must get NXDOMAIN; a direct connection, another
    resolver and DNS over TLS must fail. Exits 1 when any probe fails.
    """
    from aibox.policy.effective import compute_effective_policy
    from aibox.sandbox.podman import Podman

    config = app.config
    policy = compute_effective_policy(config, workspace)
    allowlist = allowlist_from_policy(policy, config)
    engine = Podman.locate(config.runtime)
    name = _sandbox_container(workspace, container)
    state = engine.inspect_container(name)
    if state is None or not state["State"]["Running"]:
        raise UsageError(
            f"sandbox {name} is not running",
            hint="Start it with 'aibox start', then run 'aibox network test' again.",
        )
    probes = sandbox_probes(allowlist, network_settings(config), engine.rootless)
    results = run_probes(probes, name, podman=(engine.executable,))
    return _report_probes(results, name, as_json)


def _report_probes(results: list[ProbeResult], name: str, as_json: bool) -> int:
    failed = [result for result in results if not result.ok]
    if as_json:
        print_json(
            {
                "container": name,
                "ok": not failed,
                "probes": [result.to_json() for result in results],
            }
        )
    else:
        _print_rows(
            [
                (
                    result.ok,
                    result.name,
                    f"{result.output} (expected {result.expected})",
                    result.fix,
                )
                for result in results
            ]
        )
        out.print(f"{len(results) - len(failed)} of {len(results)} probes passed")
    return 1 if failed else 0


@network.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_app
def check_command(app: AppContext, as_json: bool) -> int:
    """Check the host side: files match the policy, ruleset loaded, services respond.

    Listing the nftables ruleset needs root; without it that check is skipped.
    Exits 1 when any check fails.
    """
    checks: list[Check] = host_checks(app.config)
    failed = [check for check in checks if not check.ok]
    if as_json:
        print_json({"ok": not failed, "checks": [check.to_json() for check in checks]})
    else:
        _print_rows(
            [(check.ok, check.name, check.detail, check.hint) for check in checks]
        )
    return 1 if failed else 0


@network.command("allowlist")
@click.option("--json", "as_json", is_flag=True, help="Print the allowlist as JSON.")
@pass_app
def allowlist_command(app: AppContext, as_json: bool) -> int:
    """Show the org-level allowlist and how each name resolves."""
    from aibox.network.host import org_policy

    allowlist = allowlist_from_policy(org_policy(app.config), app.config)
    data: dict[str, Any] = allowlist.to_json()
    if as_json:
        print_json({**data, "sha256": allowlist.digest()})
        return 0
    for entry in allowlist.entries:
        ports = ", ".join(str(port) for port in entry.ports)
        out.print(f"{entry.id}: {' '.join(entry.hosts)} (ports {ports})", markup=False)
    for name in allowlist.names:
        resolution = allowlist.resolution(name)
        how = {
            "static": f"static address {resolution.address}",
            "forward": f"forwarded to {resolution.upstream} (zone {resolution.zone})",
            "none": "not resolvable: no static address or upstream resolver",
        }[resolution.kind]
        out.print(f"  {name}: {how}", markup=False)
    if os.geteuid() != 0:
        out.print("Apply changes with 'sudo aibox setup --system'.", markup=False)
    return 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(network)
