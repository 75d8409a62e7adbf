"""`aibox setup` and `aibox setup --system`."""

from __future__ import annotations

import click

from aibox.cli.common import AppContext, err, out, pass_app, warn
from aibox.sandbox import setup as host_setup


@click.command()
@click.option(
    "--system",
    "system",
    is_flag=True,
    help="Set up the machine (root, once): profiles, runsc, group, logs, image cache.",
)
@pass_app
def setup(app: AppContext, system: bool) -> int:
    """Prepare this machine (--system, as root) or your account for aibox."""
    if system:
        host_setup.require_root_for_system()
        steps = host_setup.SYSTEM_STEPS
    else:
        steps = host_setup.USER_STEPS
    with err.status("setting up", spinner="dots") as spinner:
        context = host_setup.SetupContext(
            config=app.config, notify=lambda message: spinner.update(message)
        )
        results = host_setup.run_steps(steps, context)
    for name, outcome in results:
        out.print(f"[green]ok[/green] {name}: {outcome}", markup=True, highlight=False)
    for message in context.warnings:
        warn(message)
    return 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(setup)
