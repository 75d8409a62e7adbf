"""`aibox doctor`: check the host and say what to fix."""

from __future__ import annotations

import click

from aibox.cli.common import AppContext, out, pass_app, print_json
from aibox.sandbox import doctor

_MARKS = {
    "ok": "[green]ok  [/green]",
    "warn": "[yellow]warn[/yellow]",
    "fail": "[red]FAIL[/red]",
}


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_app
def doctor_command(app: AppContext, as_json: bool) -> int:
    """Check Podman, the runtime, profiles, AppArmor, image, disk and config."""
    results = doctor.run_checks(app.config_path)
    failed = any(result.status == "fail" for result in results)
    if as_json:
        print_json(
            {"ok": not failed, "checks": [result.as_dict() for result in results]}
        )
        return 1 if failed else 0
    for result in results:
        out.print(f"{_MARKS[result.status]} {result.name:<13}", markup=True, end="")
        out.print(f" {result.detail}", markup=False)
        if result.status == "fail" and result.fix:
            out.print(f"     fix: {result.fix}", markup=False)
    return 1 if failed else 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(doctor_command)
