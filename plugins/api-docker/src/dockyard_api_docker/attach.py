"""``POST /containers/{id}/attach``: the hijacked stdio of a container, and the pump shared
with exec start (``attach-and-streams.md``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError
from dockyard.specs.api import ApiRoute
from dockyard.specs.arch import AttachStream
from dockyard_api_docker.http import kernel_of, qbool
from dockyard_api_docker.streams import (
    RAW,
    DetachScanner,
    Hijacked,
    frame,
    hijack,
    parse_detach_keys,
    wants_upgrade,
)

log = logging.getLogger(__name__)


async def pump(conn: Hijacked, source: AttachStream | asyncio.Future[AttachStream], *, tty: bool,
               stdin: bool, stdout: bool = True, stderr: bool = True, detach_keys: bytes = b"",
               before_close: Any = None) -> str:
    """Copy output to the client (framed unless ``tty``) and client bytes to stdin until the
    process ends (``"exited"``), the client detaches (``"detached"``) or disconnects
    (``"disconnected"``). ``source`` may be a future resolved when the process starts; stdin
    that arrives before is buffered."""
    stream: AttachStream | None = source if isinstance(source, AttachStream) else None
    ready = asyncio.Event()
    if stream is not None:
        ready.set()
    outcome = "exited"
    done = asyncio.Event()

    async def get_stream() -> AttachStream | None:
        nonlocal stream
        if stream is None:
            assert isinstance(source, asyncio.Future)
            try:
                stream = await source
            except (DockyardError, asyncio.CancelledError):
                # the start failed: as with dockerd the stream just ends (the start's answer
                # says why; the docker CLI prints that and nothing else)
                return None
            ready.set()
        return stream

    async def copy_in() -> None:
        nonlocal outcome
        scanner = DetachScanner(detach_keys if stdin else b"")
        pending: list[bytes] = []
        while True:
            data = await conn.read()
            if data is None:
                if conn.closed:
                    outcome = "disconnected"
                    done.set()
                    return
                if stdin:
                    await ready.wait()
                    assert stream is not None
                    for chunk in pending:
                        await stream.write(chunk)
                    pending.clear()
                    await stream.close_stdin()
                return
            if not stdin:
                continue
            data, detached = scanner.feed(data)
            if data:
                if ready.is_set() and stream is not None:
                    for chunk in pending:
                        await stream.write(chunk)
                    pending.clear()
                    await stream.write(data)
                else:
                    pending.append(data)
            if detached:
                outcome = "detached"
                done.set()
                return

    async def copy_out() -> None:
        s = await get_stream()
        if s is None:
            done.set()
            return
        while True:
            item = await s.read()
            if item is None:
                break
            name, data = item
            if (name == "stdout" and not stdout) or (name == "stderr" and not stderr) or not data:
                continue
            if not await conn.write(data if tty else frame(name, data)):
                break
        done.set()

    tasks = [asyncio.ensure_future(copy_in()), asyncio.ensure_future(copy_out())]
    try:
        await done.wait()
    finally:
        if outcome == "exited" and before_close is not None:
            with contextlib.suppress(Exception):
                await before_close()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if stream is not None:
            stream.close()
        elif isinstance(source, asyncio.Future) and not source.done():
            source.cancel()
        conn.close()
    return outcome


async def attach_container(request: web.Request) -> web.StreamResponse:
    kernel = kernel_of(request)
    svc = kernel.containers
    c = svc.get(request.match_info["id"])
    want_stdin = qbool(request, "stdin")
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    keys = parse_detach_keys(request.query.get("detachKeys", ""))
    logs = qbool(request, "logs")
    stream_mode = qbool(request, "stream")
    if not wants_upgrade(request):
        raise web.HTTPBadRequest(reason="attach needs Connection: Upgrade")
    resp, conn = await hijack(request, RAW)
    tty = c.config.tty
    if logs:
        from dockyard.services.containers import LogOptions

        async for name, data in svc.logs(c.id, LogOptions(stdout=want_out, stderr=want_err)):
            await conn.write(data if tty else frame(name, data))
    if not stream_mode:
        conn.close()
        return resp
    try:
        c, source = await svc.attach(c.id)
    except DockyardError as exc:
        await conn.write(frame("stderr", f"Error: {exc}\n".encode()) if not tty else str(exc).encode())
        conn.close()
        return resp
    outcome = await pump(conn, source, tty=tty, stdin=want_stdin and c.config.open_stdin,
                         stdout=want_out, stderr=want_err, detach_keys=keys)
    if isinstance(source, asyncio.Future) and outcome != "exited":
        svc.cancel_attach(c.id, source)
    if outcome == "detached":
        svc.detached(c.id)
    return resp


def routes() -> list[ApiRoute]:
    return [ApiRoute("POST", "/containers/{id}/attach", attach_container, name="containers-attach")]
