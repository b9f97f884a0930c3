"""Helpers of the image and volume commands: streamed uploads/downloads and JSON-stream progress.

``dockyard.client.Client`` sends JSON or in-memory bytes; an image archive can be hundreds of
MB, so uploads here stream the file with chunked encoding over the same host the root ``-H``
option names. Only the standard library and (for progress bars) rich are used, imported late.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote, urlencode, urlparse

import click

API_PREFIX = "/v1.41"
_CHUNK = 1 << 20


def host_of(ctx: click.Context) -> str:
    from dockyard.client import DEFAULT_HOST

    obj = ctx.find_root().obj or {}
    return obj.get("host") or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=None)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self._path)
        self.sock = sock


def _connection(host: str) -> http.client.HTTPConnection:
    url = urlparse(host)
    if url.scheme == "unix":
        return _Unix(url.path or url.netloc)
    if url.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(url.hostname or "localhost", url.port or 2375, timeout=None)
    raise click.ClickException(f"invalid host {host!r}: expected unix:///path or tcp://host:port")


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def request(ctx: click.Context, method: str, path: str, params: dict[str, Any] | None = None,
            body: IO[bytes] | None = None, content_type: str = "application/x-tar") -> http.client.HTTPResponse:
    """One raw request; a body file is streamed chunked. Errors become ClickException."""
    host = host_of(ctx)
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
    url = API_PREFIX + quote(path, safe="/:@") + (f"?{query}" if query else "")
    conn = _connection(host)
    try:
        if body is not None:
            conn.request(method, url, body=_chunks(body), headers={"Content-Type": content_type},
                         encode_chunked=True)
        else:
            conn.request(method, url)
        resp = conn.getresponse()
    except OSError as exc:
        raise click.ClickException(f"cannot talk to the dockyard daemon at {host}: {exc}") from exc
    if resp.status >= 300:
        raw = resp.read()
        try:
            message = json.loads(raw).get("message", "")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace")
        raise click.ClickException(message or f"HTTP {resp.status} from {method} {path}")
    return resp


def json_lines(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    try:
        for line in resp:
            line = line.strip()
            if line:
                yield json.loads(line)
    finally:
        resp.close()


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
