"""The ``aibox`` entry point: global options, command registration, error output."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from aibox import __version__
from aibox.cli.common import AppContext, err, log
from aibox.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, AiboxError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file to use instead of AIBOX_CONFIG or ~/.config/aibox/config.yaml.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="aibox")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Policy-enforced sandboxes for AI coding agents."""
    ctx.obj = AppContext(config_path=config_path, debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(name)s: %(levelname)s: %(message)s",
    )
    if ctx.invoked_subcommand is not None and not ctx.resilient_parsing:
        # Imported here so that commands which never touch credentials, and
        # --help, do not pay for loading the Vault client.
        from aibox.credentials.sandbox import retry_revocations_before_command

        app = ctx.obj
        retry_revocations_before_command(lambda: app.config)


def _register_commands() -> None:
    from aibox.cli import auth, doctor, image, network, policy, sandbox, setup

    for module in (sandbox, setup, doctor, image, policy, network, auth):
        module.register(cli)


_register_commands()


def _print_error(error: AiboxError) -> None:
    err.print(f"Error: {error.message}", markup=False)
    if error.hint:
        err.print(f"Hint: {error.hint}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; never let a traceback escape."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("AIBOX_DEBUG") == "1"
    try:
        result = cli.main(args=args, prog_name="aibox", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("Aborted.", markup=False)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except AiboxError as exc:
        if debug:
            raise
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("Interrupted.", markup=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: never show a traceback
        if debug:
            raise
        log.debug("unexpected error", exc_info=True)
        err.print(f"Error: unexpected {type(exc).__name__}: {exc}", markup=False)
        err.print("Hint: Run again with --debug for details.", markup=False)
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
