"""`aibox auth`: add, list and remove the credentials aibox hands to sandboxes."""

from __future__ import annotations

import contextlib
import sys

import click

from aibox.cli.common import AppContext, out, pass_app, print_json
from aibox.credentials.broker import CredentialStore, open_store
from aibox.credentials.envstore import EnvironmentStore
from aibox.credentials.secret import SECRET_NAMES, Secret, check_secret_name
from aibox.errors import UsageError

_NAME_HELP = f"One of: {', '.join(SECRET_NAMES)}."


def _read_value(name: str, from_stdin: bool) -> Secret:
    if from_stdin or not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = click.prompt(f"Value for {name}", hide_input=True, err=True)
    if not value.strip():
        raise UsageError(
            f"empty value for {name}",
            hint="Type the value at the prompt or pipe it on stdin.",
        )
    if "\n" in value or "\0" in value:
        raise UsageError(
            f"the value for {name} contains a newline or NUL byte",
            hint="Pipe only the token, on one line.",
        )
    return Secret(value)


@click.group("auth")
def auth_group() -> None:
    """Manage the git token, LLM API key and mirror token."""


@auth_group.command("add")
@click.argument("name")
@click.argument("extra", nargs=-1, metavar="")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from stdin.")
@pass_app
def add_command(
    app: AppContext, name: str, extra: tuple[str, ...], from_stdin: bool
) -> int:
    """Store credential NAME, read from a hidden prompt or stdin.

    The value is never taken from an argument, so it stays out of shell history.
    """
    if extra:
        # Click would echo an unexpected argument, which may be the secret itself.
        raise UsageError(
            f"aibox auth add takes only the credential name ({name}), but "
            f"{len(extra)} more argument(s) were given; nothing was stored",
            hint=f"Run 'aibox auth add {name}' and type the value at the prompt, "
            "or pipe it with --stdin.",
        )
    check_secret_name(name)
    value = _read_value(name, from_stdin)
    with contextlib.closing(open_store(app.config)) as store:
        store.set(name, value)
        out.print(f"Stored {name} in {store.describe()}.", markup=False)
    return 0


def _list_rows(store: CredentialStore) -> list[dict[str, str | None]]:
    stored = set(store.names())
    from_environment = set(EnvironmentStore().names()) if store.name != "env" else set()
    rows: list[dict[str, str | None]] = []
    for name in SECRET_NAMES:
        if name in stored:
            source: str | None = store.name
        elif name in from_environment:
            source = "env"
        else:
            source = None
        rows.append({"name": name, "source": source})
    return rows


@auth_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_command(app: AppContext, as_json: bool) -> int:
    """List the stored credential names (never their values)."""
    with contextlib.closing(open_store(app.config)) as store:
        rows = _list_rows(store)
        location = store.describe()
        backend = store.name
    if as_json:
        print_json({"backend": backend, "location": location, "credentials": rows})
        return 0
    out.print(f"Backend: {location}", markup=False)
    for row in rows:
        out.print(f"  {row['name']:<14} {row['source'] or 'not set'}", markup=False)
    return 0


@auth_group.command("remove")
@click.argument("name")
@pass_app
def remove_command(app: AppContext, name: str) -> int:
    """Remove credential NAME from the configured store."""
    check_secret_name(name)
    with contextlib.closing(open_store(app.config)) as store:
        removed = store.delete(name)
        location = store.describe()
    if not removed:
        out.print(f"{name} was not stored in {location}.", markup=False)
        return 0
    out.print(f"Removed {name} from {location}.", markup=False)
    return 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(auth_group)
