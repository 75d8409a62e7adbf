"""`aibox image build` and `aibox image status`."""

from __future__ import annotations

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from aibox.cli.common import AppContext, err, out, pass_app, print_json
from aibox.sandbox import image
from aibox.sandbox.podman import Podman


def build_with_progress(podman: Podman, name: str) -> image.ImageStatus:
    """Run :func:`image.ensure_image` behind a Rich spinner that shows each step."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("checking the sandbox image", total=None)

        def report(message: str) -> None:
            progress.update(task, description=message)

        result = image.ensure_image(podman, name, report)
        progress.update(task, description=f"image {name} ready")
    return result


@click.group(name="image")
def image_group() -> None:
    """Build and inspect the sandbox image."""


@image_group.command()
@pass_app
def build(app: AppContext) -> int:
    """Build the sandbox image from Debian packages, or reuse a current one."""
    podman = Podman.locate(app.config.runtime)
    result = build_with_progress(podman, app.config.image)
    out.print(f"Image {result.image} is ready (recipe {result.recipe}).")
    return 0


@image_group.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status_command(app: AppContext, as_json: bool) -> int:
    """Show whether the image exists and matches the current recipe."""
    podman = Podman.locate(app.config.runtime)
    result = image.image_status(podman, app.config.image)
    data = {
        "image": result.image,
        "present": result.present,
        "current": result.current,
        "recipe": result.recipe,
        "cached_rootfs": str(result.cached_rootfs) if result.cached_rootfs else None,
    }
    if as_json:
        print_json(data)
    else:
        for key, value in data.items():
            out.print(f"{key:<14} {value}", markup=False)
    return 0 if result.present else 1


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(image_group)
