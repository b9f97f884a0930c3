"""Output helpers shared by CLI commands: ``--format table|json``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="output format")


def client_of(ctx: click.Context, timeout: float | None = 60.0) -> Any:
    """The client of the daemon the root ``-H`` names, else the one the environment names
    (``dockyard.client.resolve_address``); a malformed address is a clean usage error."""
    from dockyard.client import Client

    obj = ctx.find_root().obj
    return run_api(lambda: Client(obj.get("host") if isinstance(obj, dict) else None, timeout=timeout))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def run_api(call: Callable[[], Any]) -> Any:
    """Run a client call; typed errors become a clean ``Error: ...`` and exit status 1."""
    from dockyard.errors import DockyardError

    try:
        return call()
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc
