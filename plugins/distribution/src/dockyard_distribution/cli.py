"""``dockyard pull``, ``dockyard push`` and ``dockyard login``: thin clients of the daemon's API.

Credentials saved by ``login`` live in ``~/.dockyard/config.json`` (``$DOCKYARD_CONFIG``) in
docker's ``auths`` shape, mode 0600, and are sent as ``X-Registry-Auth``. Progress is drawn
with rich (one bar per layer, bytes and speed) on a terminal, printed as lines otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click


def _client(ctx: click.Context) -> Any:
    from dockyard.cli.output import client_of

    return client_of(ctx)


def _registry_of(name: str) -> str:
    from dockyard.reference import parse_normalized

    try:
        return parse_normalized(name).domain
    except Exception as exc:  # noqa: BLE001 - a clean usage error
        raise click.BadParameter(str(exc), param_hint="NAME") from exc


def _auth_header(host: str) -> dict[str, str]:
    from dockyard_distribution.auth import AuthConfig, credentials_for

    cfg = credentials_for(host) or (credentials_for("https://index.docker.io/v1/") if host == "docker.io" else None)
    return {"X-Registry-Auth": (cfg or AuthConfig()).to_header()}


class ProgressView:
    """Renders a dockerd JSON-message stream: rich bars per layer on a terminal, lines otherwise."""

    def __init__(self, quiet: bool = False, tty: bool | None = None) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.aux: dict[str, Any] | None = None
        self.last_status = ""

    def __enter__(self) -> ProgressView:
        if self.tty and not self.quiet:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.fields[layer]}: {task.description:<18}"), BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(), transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _echo(self, text: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)

    def feed(self, msg: dict[str, Any]) -> None:
        if msg.get("error"):
            raise click.ClickException(str(msg["error"]))
        if "aux" in msg:
            self.aux = msg["aux"]
            return
        status = str(msg.get("status") or "")
        layer = msg.get("id")
        if not layer:
            self.last_status = status
            self._echo(status)
            return
        detail = msg.get("progressDetail") or {}
        if self.progress is None:
            if not detail.get("current"):  # off a terminal: status changes only, like the docker CLI
                self._echo(f"{layer}: {status}")
            return
        task = self.tasks.get(layer)
        if task is None:
            task = self.tasks[layer] = self.progress.add_task(status, layer=layer, total=None)
        kw: dict[str, Any] = {"description": status}
        if detail.get("total"):
            kw["total"] = int(detail["total"])
        if detail.get("current") is not None:
            kw["completed"] = int(detail["current"])
        if status in ("Pull complete", "Pushed", "Layer already exists", "Already exists", "Download complete") \
                or status.startswith("Mounted from"):
            t = self.progress.tasks[task]
            if t.total:
                kw["completed"] = t.total
        self.progress.update(task, **kw)


def _run(stream: Iterator[dict[str, Any]], view: ProgressView) -> None:
    from dockyard.errors import DockyardError

    try:
        with view:
            for msg in stream:
                view.feed(msg)
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("name")
@click.option("--platform", default="", help="os/arch[/variant] to pull from a multi-platform image")
@click.option("-q", "--quiet", is_flag=True, help="print only the image reference")
@click.pass_context
def pull(ctx: click.Context, name: str, platform: str, quiet: bool) -> None:
    """Pull an image from a registry."""
    from dockyard.reference import parse_normalized

    host = _registry_of(name)
    ref = parse_normalized(name)
    params: dict[str, Any] = {"fromImage": ref.name, "tag": ref.digest or ref.tag}
    if platform:
        params["platform"] = platform
    client = _client(ctx)
    view = ProgressView(quiet)
    _run(client.stream_json("POST", "/images/create", params, headers=_auth_header(host)), view)
    click.echo(str(ref) if not quiet else ref.familiar())


@click.command()
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="print only the digest")
@click.pass_context
def push(ctx: click.Context, name: str, quiet: bool) -> None:
    """Push an image to a registry."""
    from dockyard.reference import parse_normalized

    host = _registry_of(name)
    ref = parse_normalized(name, default_tag=False)
    client = _client(ctx)
    view = ProgressView(quiet)
    params = {"tag": ref.tag} if ref.tag else {}
    _run(client.stream_json("POST", f"/images/{ref.name}/push", params, headers=_auth_header(host)), view)
    if quiet and view.aux:
        click.echo(view.aux.get("Digest", ""))


@click.command()
@click.argument("server", required=False, default="")
@click.option("-u", "--username", default="", help="user name")
@click.option("-p", "--password", default="", help="password (prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.pass_context
def login(ctx: click.Context, server: str, username: str, password: str, password_stdin: bool) -> None:
    """Log in to a registry; the credentials are checked by the daemon and saved (0600)."""
    from dockyard.errors import DockyardError
    from dockyard_distribution.auth import save_credentials

    if password_stdin:
        if password:
            raise click.UsageError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    elif not password_stdin:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    key = server.removeprefix("https://").removeprefix("http://").rstrip("/") or "https://index.docker.io/v1/"
    body = {"username": username, "password": password, "serveraddress": key}
    client = _client(ctx)
    try:
        answer = client.post("/auth", body=body)
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc
    if isinstance(answer, dict) and answer.get("IdentityToken"):
        save_credentials(key, username, identitytoken=answer["IdentityToken"])
    else:
        save_credentials(key, username, password)
    click.echo((answer or {}).get("Status", "Login Succeeded") if isinstance(answer, dict) else "Login Succeeded")
