"""`aibox start`, `stop`, `shell` and `status`."""

from __future__ import annotations

from pathlib import Path

import click

from aibox.cli.common import (
    AppContext,
    err,
    out,
    pass_app,
    print_json,
    warn,
    workspace_option,
)
from aibox.errors import UsageError
from aibox.sandbox import lifecycle, status


def _progress(message: str) -> None:
    err.print(f"[dim]{message}[/dim]", markup=True)


@click.command()
@workspace_option
@pass_app
def start(app: AppContext, workspace: Path) -> int:
    """Start the sandbox for a workspace (or restart it when stopped)."""
    with err.status("starting sandbox", spinner="dots"):
        result = lifecycle.start(app.config, workspace, _progress)
    for message in result.warnings:
        warn(message)
    name = result.sandbox.name
    if result.action == "already-running":
        out.print(f"Sandbox {name} is already running.")
    elif result.action == "restarted":
        out.print(f"Sandbox {name} restarted ({result.runtime}).")
    else:
        out.print(f"Sandbox {name} started ({result.runtime}).")
    return 0


@click.command()
@workspace_option
@click.option(
    "--purge", is_flag=True, help="Also remove the home, toolpacks and cache volumes."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing volumes.")
@click.option(
    "--name",
    default=None,
    help="Stop the sandbox container NAME instead, for a moved or deleted workspace.",
)
@pass_app
def stop(
    app: AppContext, workspace: Path, purge: bool, yes: bool, name: str | None
) -> int:
    """Stop and remove the sandbox container; volumes are kept unless --purge."""
    if name is not None:
        if purge:
            raise UsageError(
                "--purge cannot be combined with --name",
                hint="Stop by name first, then purge from a workspace.",
            )
        stopped = lifecycle.stop_by_name(app.config, name)
        out.print(f"Sandbox {name} {'stopped' if stopped else 'not found'}.")
        return 0 if stopped else 1
    removed = lifecycle.stop(app.config, workspace)
    if removed:
        out.print(f"Sandbox for {workspace.resolve()} stopped.")
    else:
        out.print(
            f"No sandbox is running for {workspace.resolve()}. If its workspace "
            "moved, stop it with 'aibox stop --name NAME' (see 'podman ps')."
        )
    if purge:
        question = "Remove your aibox home, toolpacks and cache volumes?"
        if not yes and not click.confirm(question, default=False, err=True):
            out.print("Volumes kept.")
            return 0
        volumes = lifecycle.purge_volumes(app.config, workspace)
        out.print(f"Removed volumes: {', '.join(volumes) or 'none'}")
    return 0


@click.command(context_settings={"ignore_unknown_options": True})
@workspace_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_app
def shell(app: AppContext, workspace: Path, command: tuple[str, ...]) -> int:
    """Open bash as dev in /workspace, or run COMMAND (after --) there."""
    return lifecycle.shell(app.config, workspace, list(command))


@click.command(name="status")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status_command(app: AppContext, workspace: Path, as_json: bool) -> int:
    """Show state, runtime, image, workspace, AppArmor state and uptime."""
    report = status.describe(app.config, workspace)
    if as_json:
        print_json(report)
        return 0
    rows = [
        ("sandbox", report["name"]),
        ("state", report["state"]),
        ("runtime", report["runtime"] or "-"),
        ("image", report["image"]),
        ("workspace", report["workspace"]),
        ("apparmor", f"{report['apparmor']['state']} ({report['apparmor']['reason']})"),
        ("uptime", status.format_uptime(report["uptime_seconds"])),
    ]
    for key, value in rows:
        out.print(f"{key:<10} {value}", markup=False)
    for entry in report["pending_revocations"]:
        warn(
            f"the Vault token of sandbox {entry['sandbox_id']} is not revoked yet "
            f"({entry['attempts']} attempt(s), last error: {entry['last_error']}); "
            "the next aibox command retries it"
        )
    return 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    for command in (start, stop, shell, status_command):
        cli.add_command(command)
