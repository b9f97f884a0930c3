"""The click commands ``run`` and ``create`` (served through ``run``'s module ``__getattr__``):
their options come from ``run.RUN_OPTIONS``, and what ``run`` does after the create is
``run.run_created``, shared with the click-free fast path."""

from __future__ import annotations

from typing import Any

import click

from dockyard.cli.output import client_of, run_api
from dockyard_api_docker.cli.run import (
    CREATE_OPTIONS,
    RUN_ONLY_OPTIONS,
    BadValue,
    create_body,
    run_created,
)


def _option(decls: tuple[str, ...], kind: str, help_text: str | None) -> Any:
    if kind == "flag":
        return click.option(*decls, is_flag=True, help=help_text)
    if kind == "many":
        return click.option(*decls, multiple=True, help=help_text)
    if kind == "int":
        return click.option(*decls, type=int, default=None, help=help_text)
    if kind == "bool":  # true bare, else the value given with "=" (--sig-proxy=false)
        return click.option(*decls, type=click.BOOL, default=True, is_flag=False, flag_value=True,
                            help=help_text)
    return click.option(*decls, default=None, help=help_text)


def create_options(f: Any) -> Any:
    for decls, kind, help_text in reversed(CREATE_OPTIONS):
        f = _option(decls, kind, help_text)(f)
    return f


def run_only_options(f: Any) -> Any:
    for decls, kind, help_text in reversed(RUN_ONLY_OPTIONS):
        f = _option(decls, kind, help_text)(f)
    return f


def do_create(ctx: click.Context, o: dict[str, Any], image: str, command: tuple[str, ...]) -> str:
    from dockyard.errors import DockyardError, NotFound

    client = client_of(ctx)
    try:
        body = create_body(o, image, command)
    except BadValue as exc:
        raise click.BadParameter(str(exc)) from exc
    params = {"name": o["name"]} if o["name"] else {}
    try:
        res = client.post("/containers/create", body, **params)
    except NotFound as exc:
        if "image" not in str(exc).lower():
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Unable to find image '{image}' locally", err=True)
        name, _, tag = image.partition(":")
        try:
            for msg in client.stream_json("POST", "/images/create", {"fromImage": name, "tag": tag or "latest"}):
                if msg.get("error"):
                    raise click.ClickException(msg["error"])
        except DockyardError as exc2:  # not only NotFound: an unreachable registry too
            raise click.ClickException(str(exc2)) from exc2
        res = run_api(lambda: client.post("/containers/create", body, **params))
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - typed errors from the client
        raise click.ClickException(str(exc)) from exc
    return str(res["Id"])


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a container (prints its ID)."""
    click.echo(do_create(ctx, o, image, command))


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@run_only_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create and start a container; without -d, stream its output and exit with its code."""
    from dockyard.cli.wire import Connection

    client = client_of(ctx)
    cid = do_create(ctx, o, image, command)
    address = client.address
    host = address.hostname if address.scheme in ("unix", "npipe") else f"{address.hostname}:{address.port}"
    ctx.exit(run_created(lambda: Connection(address.connect(client.timeout), host), cid, o, str(address)))
