"""``/dockyard/v1/migrations`` (a target's one-time receiver) and
``/dockyard/v1/containers/{id}/migrate`` (move a container from this engine); on a swarm
manager ``POST /containers/{id}/migrate?node=NAME`` does both through the nodes. Shapes in
docs/api-extensions.md.

The migration runs in a task of its own: a client that goes away (killed, disconnected) stops
watching it, never the migration itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.server import KERNEL_KEY
from dockyard.specs import ApiRoute
from dockyard.specs.storage import MIGRATION_MODES, MigrationOptions, MigrationProgress, MigrationTicket

log = logging.getLogger(__name__)
PREFIX = "/dockyard/v1"
_running: set[asyncio.Task[Any]] = set()


def options_of(request: web.Request, body: dict[str, Any]) -> MigrationOptions:
    mode = str(request.query.get("mode") or body.get("Mode") or "auto")
    if mode not in MIGRATION_MODES:
        raise InvalidArgument(f"mode {mode!r}: expected one of {', '.join(MIGRATION_MODES)}")
    try:
        threshold = int(request.query.get("lazy-threshold") or body.get("LazyThreshold") or (128 << 20))
    except ValueError:
        raise InvalidArgument("lazy-threshold is not a number of bytes") from None
    return MigrationOptions(mode=mode, lazy_threshold=threshold)


async def body_of(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("body must be a JSON object")
    return doc


def local_address(request: web.Request) -> str:
    """The address the client reached this engine by (loopback for a unix socket)."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sock, tuple) and sock and sock[0] not in ("", "0.0.0.0", "::"):
        return str(sock[0])
    return "127.0.0.1"


async def offer(request: web.Request) -> web.Response:
    from dockyard_migrate.migrator import migrator_of

    kernel = request.app[KERNEL_KEY]
    body = await body_of(request)
    opts = options_of(request, body)
    listen = local_address(request)
    opts = MigrationOptions(mode=opts.mode, lazy_threshold=opts.lazy_threshold, listen=listen)
    ticket = await migrator_of(kernel, str(request.query.get("migrator") or "")).offer(kernel, opts)
    if ticket.address.startswith(":"):
        ticket = MigrationTicket(address=f"{listen}{ticket.address}", token=ticket.token, migrator=ticket.migrator,
                                 tls=ticket.tls, expires=ticket.expires)
    return web.json_response(ticket.to_json(), status=201)


def progress_json(p: MigrationProgress) -> dict[str, Any]:
    return {"Phase": p.phase, "Bytes": p.bytes, "FrozenMs": round(p.frozen_ms, 1), "Message": p.message}


class ProgressThrottle:
    """At most one report of a phase every ``interval`` seconds, every phase's first always; a
    phase's last report, held back by the limit, still goes out before the next phase's first
    (or the end), so the bytes a phase ends with are never lost to the limit."""

    def __init__(self, interval: float = 0.1, clock: Any = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._sent_at, self._phase = 0.0, ""
        self._held: MigrationProgress | None = None

    def offer(self, p: MigrationProgress) -> list[MigrationProgress]:
        """The reports to send now for ``p`` (none, it, or the held one then it)."""
        now = self.clock()
        if p.phase == self._phase and now - self._sent_at < self.interval:
            self._held = p
            return []
        out = self.flush() if self._held is not None and self._held.phase != p.phase else []
        self._held = None
        self._sent_at, self._phase = now, p.phase
        return [*out, p]

    def flush(self) -> list[MigrationProgress]:
        """The held report, if any (at the end of the stream)."""
        held, self._held = self._held, None
        return [held] if held is not None else []


async def stream_migration(request: web.Request, run: Any) -> web.StreamResponse:
    """Run ``run(report)`` in its own task and stream its reports as JSON lines (at most ~10
    a second per phase, a phase's first and last always: :class:`ProgressThrottle`), then
    ``{"Result": ...}`` or ``{"Error": ...}``."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    throttle = ProgressThrottle()

    def report(p: MigrationProgress) -> None:
        for q in throttle.offer(p):
            queue.put_nowait({"Progress": progress_json(q)})

    async def job() -> None:
        try:
            try:
                result = await run(report)
            finally:
                for q in throttle.flush():
                    queue.put_nowait({"Progress": progress_json(q)})
            queue.put_nowait({"Result": {"Id": result.container_id, "Mode": result.mode, "Bytes": result.bytes,
                                         "FrozenMs": result.frozen_ms, "TotalMs": result.total_ms,
                                         "Phases": result.phases}})
        except DockyardError as exc:
            queue.put_nowait({"Error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the stream's last message says it
            log.exception("migration failed")
            queue.put_nowait({"Error": f"internal error: {exc}"})
        finally:
            queue.put_nowait(None)

    task = asyncio.get_running_loop().create_task(job())
    _running.add(task)
    task.add_done_callback(_running.discard)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        while (item := await queue.get()) is not None:
            await resp.write(json.dumps(item).encode() + b"\n")
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away: the migration goes on (its task is not ours to cancel)
    return resp


async def migrate(request: web.Request) -> web.StreamResponse:
    from dockyard_migrate.migrator import migrator_of

    kernel = request.app[KERNEL_KEY]
    body = await body_of(request)
    opts = options_of(request, body)
    ref = request.match_info["id"]
    kernel.containers.get(ref)  # 404 before the stream starts
    ticket_doc = body.get("Ticket")
    if not isinstance(ticket_doc, dict):
        raise InvalidArgument("the body needs the target's Ticket (POST /dockyard/v1/migrations on the target)")
    ticket = MigrationTicket.from_json(ticket_doc)
    migrator = migrator_of(kernel, ticket.migrator)
    return await stream_migration(request, lambda report: migrator.send(kernel, ref, ticket, opts, report))


def routes(kernel: Any) -> list[ApiRoute]:
    out = [ApiRoute("POST", PREFIX + "/migrations", offer, name="dockyard-migrations-offer"),
           ApiRoute("POST", PREFIX + "/containers/{id}/migrate", migrate, name="dockyard-containers-migrate")]
    if kernel.role == "manager":
        from dockyard_migrate import manager

        out.append(ApiRoute("POST", "/containers/{id}/migrate", manager.migrate, name="swarm-containers-migrate"))
    return out
