"""Helpers shared by the command modules: context object, output, config access."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from aibox.config import Config, load_config

log = logging.getLogger("aibox")


@dataclass
class AppContext:
    """State shared by all commands of one invocation."""

    config_path: Path | None = None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_app = click.make_pass_decorator(AppContext, ensure=True)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print a warning to stderr; the log gets it at debug level only, so the
    default stderr handler does not print it twice."""
    log.debug("warning: %s", message)
    err.print(f"[yellow]Warning:[/yellow] {message}", markup=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, without Rich markup."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _workspace_path(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    if value == "":
        raise click.BadParameter(
            "an empty path is not a workspace; pass a directory, or leave the "
            "option out to use the current directory",
            ctx=ctx,
            param=param,
        )
    return Path(value)


def workspace_option(function: Any) -> Any:
    """Add ``--workspace DIR`` (default: the current directory) to a command."""
    return click.option(
        "--workspace",
        "-w",
        type=click.Path(file_okay=True, dir_okay=True),
        default=".",
        callback=_workspace_path,
        show_default="current directory",
        help="Workspace directory mounted at /workspace.",
    )(function)


def printable(text: str) -> str:
    """Escape control characters so text from a command line cannot drive the
    terminal that shows it."""
    return "".join(
        char if char in "\n\t" or char.isprintable() else f"\\x{ord(char):02x}"
        for char in text
    )
