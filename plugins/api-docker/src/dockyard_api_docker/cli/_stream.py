"""Helpers of the image and volume commands: streamed uploads/downloads and JSON-stream progress.

Uploads go through ``dockyard.client.Client``, which streams a file body with chunked
encoding (an image archive can be hundreds of MB). Progress bars use rich, imported late.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import http.client


def request(ctx: click.Context, method: str, path: str, params: dict[str, Any] | None = None,
            body: IO[bytes] | None = None, content_type: str = "application/x-tar") -> http.client.HTTPResponse:
    """One raw request through the core client (a body file is streamed); errors become
    ClickException."""
    from dockyard.cli.output import client_of
    from dockyard.errors import DockyardError

    headers = {"Content-Type": content_type} if body is not None else None
    try:
        return client_of(ctx, timeout=None).request(method, path, params, body=body, headers=headers)
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc


def show_stream(messages: Iterator[dict[str, Any]], quiet: bool = False) -> list[str]:
    """Render a JSON message stream: rich progress bars per ``id`` (bytes), ``stream`` and
    ``status`` lines printed; an ``error`` line raises. Returns the printed result lines."""
    out: list[str] = []
    progress = None
    tasks: dict[str, Any] = {}
    try:
        for msg in messages:
            if msg.get("error"):
                raise click.ClickException(str(msg["error"]))
            detail = msg.get("progressDetail") or {}
            if "current" in detail and msg.get("id") is not None:
                if quiet:
                    continue
                if progress is None:
                    from rich.progress import (
                        BarColumn,
                        DownloadColumn,
                        Progress,
                        TextColumn,
                        TransferSpeedColumn,
                    )

                    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                        TransferSpeedColumn(), transient=False)
                    progress.start()
                key = f"{msg.get('status')} {msg.get('id')}".strip()
                total = detail.get("total") or None
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=total)
                progress.update(tasks[key], completed=detail.get("current", 0), total=total)
                continue
            text = msg.get("stream") or msg.get("status") or ""
            if text:
                text = text.rstrip("\n")
                out.append(text)
                if progress is not None:
                    progress.console.print(text)
                else:
                    click.echo(text)
    finally:
        if progress is not None:
            progress.stop()
    return out
