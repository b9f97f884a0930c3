"""What a container shows of itself: its output (logs), its stdio (attach, resize), its
processes and their usage (top, stats).

Logs follow json-file semantics over the runtime driver's records (``since``/``until``,
``tail``, ``timestamps``, ``follow`` across a log truncated by ``max-size``). An attach to a
created (or restarting) container is a future, handed the stream by the next start
(:meth:`ContainerIO.hand_over`), so ``docker run`` misses nothing the process writes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import ZERO_TIME, Container, ContainerStatus
from dockyard.services.containers import LogOptions
from dockyard.specs.arch import AttachStream, RuntimeDriver
from dockyard_engine import container_fs as cfs
from dockyard_engine.container_context import LIVE_STATES, RUNNING_STATES, ContainerContext

#: log drivers whose records can be read back (``--log-driver none`` keeps nothing)
READABLE_LOG_DRIVERS = ("json-file", "local", "k8s-file", "")


class ContainerIO:
    """Logs, attach and resize, top and stats."""

    def __init__(self, ctx: ContainerContext) -> None:
        self.ctx = ctx
        self._pending_attach: dict[str, list[asyncio.Future[AttachStream]]] = {}

    # ------------------------------------------------------------------ logs
    @staticmethod
    def check_logs_readable(c: Container) -> None:
        """InvalidArgument for a log driver that keeps nothing to read (``--log-driver none``)."""
        if c.host_config.log_config.type not in READABLE_LOG_DRIVERS:
            raise InvalidArgument(f"configured logging driver does not support reading: "
                                  f"{c.host_config.log_config.type}")

    async def open_logs(self, ref: str, opts: LogOptions) -> AsyncGenerator[tuple[str, bytes], None]:
        """Check a logs request and open the container's log; the records come from the returned
        iterator. A caller that answers before it reads (the HTTP headers of a log stream) may
        see the container removed meanwhile (docker-py's ``run(remove=True)`` removes it before
        it reads the stream): what the container wrote is still read to the end."""
        c = self.ctx.get(ref)
        self.check_logs_readable(c)
        rt = await self.ctx.runtime(c)
        follow = opts.follow and c.state.status in RUNNING_STATES
        # both readers open the log now; the follow one re-reads it after the first pass
        readers: list[AsyncIterator[Any]] = []
        try:
            # the driver reads only the end of the log for a tail of both streams (what the
            # docker CLI asks); of one stream, the last records of it are kept as they come
            tail = opts.tail if opts.tail is not None and opts.tail >= 0 and opts.stdout and opts.stderr else None
            readers.append(rt.logs(c.id, follow=False, tail=tail))
            if follow:
                readers.append(rt.logs(c.id, follow=True))
        except NotFound:
            pass
        return self._log_records(opts, *readers)

    async def logs(self, ref: str, opts: LogOptions) -> AsyncIterator[tuple[str, bytes]]:
        """(stream, bytes) chunks, json-file semantics; ``timestamps`` prefixes each record."""
        async for item in await self.open_logs(ref, opts):
            yield item

    @staticmethod
    async def _log_records(opts: LogOptions, first: AsyncIterator[Any] | None = None,
                           later: AsyncIterator[Any] | None = None) -> AsyncGenerator[tuple[str, bytes], None]:
        """The records of ``first`` (the log as it is), then, following, the newer ones of
        ``later`` (the whole log again, followed)."""
        since_ns = int(opts.since * 1e9) if opts.since else 0
        until_ns = int(opts.until * 1e9) if opts.until else 0

        def wanted(rec: Any) -> bool:
            return (rec.stream == "stdout" and opts.stdout) or (rec.stream == "stderr" and opts.stderr)

        def render(rec: Any, ts: str) -> tuple[str, bytes]:
            return rec.stream, (ts.encode() + b" " + rec.data) if opts.timestamps else rec.data

        last_ns, at_last = -1, 0  # the newest record seen, and how many share its time
        tail = opts.tail if opts.tail is not None and opts.tail >= 0 else None
        # with a tail, the last records wait for the end of the log (the driver reads only
        # the end of it); without, each record goes out as it is read
        records: collections.deque[tuple[Any, str]] = collections.deque(maxlen=tail)
        opened = (first, later)
        try:
            try:
                async for rec in first if first is not None else _no_records():
                    ns, ts = cfs.parse_ts(rec.timestamp)
                    if ns > last_ns:
                        last_ns, at_last = ns, 1
                    elif ns == last_ns:
                        at_last += 1
                    if (since_ns and ns < since_ns) or (until_ns and ns > until_ns) or not wanted(rec):
                        continue
                    if tail is None:
                        yield render(rec, ts)
                    elif tail:
                        records.append((rec, ts))
            except NotFound:
                later = None
            for rec, ts in records:
                yield render(rec, ts)
            if later is None:
                return
            # follow: skip what the first pass saw (by time, so a log truncated by max-size and
            # started over is still followed), then stream the new records
            try:
                seen_at_last = 0
                async for rec in later:
                    ns, ts = cfs.parse_ts(rec.timestamp)
                    if ns < last_ns:
                        continue
                    if ns == last_ns and seen_at_last < at_last:
                        seen_at_last += 1
                        continue
                    if until_ns and ns > until_ns:
                        return
                    if (since_ns and ns < since_ns) or not wanted(rec):
                        continue
                    yield render(rec, ts)
            except NotFound:
                return
        finally:
            for reader in opened:
                aclose = getattr(reader, "aclose", None)
                if aclose is not None:
                    await aclose()

    # ------------------------------------------------------------------ attach
    async def attach(self, ref: str) -> tuple[Container, AttachStream | asyncio.Future[AttachStream]]:
        """Connect to a container's stdio. For a created (or restarting) container the stream
        is handed over at its next start (a future); for a running one at once."""
        c = self.ctx.get(ref)
        self.ctx.emit(c, "attach")
        if c.state.status in LIVE_STATES:
            rt = await self.ctx.runtime(c)
            return c, await rt.attach(c.id)
        if c.state.status is ContainerStatus.REMOVING:
            raise Conflict(f"container {c.id} is being removed")
        fut: asyncio.Future[AttachStream] = asyncio.get_running_loop().create_future()
        self._pending_attach.setdefault(c.id, []).append(fut)
        return c, fut

    def cancel_attach(self, cid: str, fut: asyncio.Future[AttachStream]) -> None:
        lst = self._pending_attach.get(cid, [])
        if fut in lst:
            lst.remove(fut)
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            fut.result().close()
        else:
            fut.cancel()

    async def hand_over(self, cid: str, rt: RuntimeDriver) -> None:
        """A start created the container in the runtime: the waiting attaches get their
        streams now, before the process runs."""
        for fut in self._pending_attach.pop(cid, []):
            if not fut.done():
                try:
                    fut.set_result(await rt.attach(cid))
                except Exception as exc:  # noqa: BLE001
                    fut.set_exception(exc)

    def fail_pending(self, cid: str, exc: BaseException) -> None:
        """A start failed: the waiting attaches learn why."""
        for fut in self._pending_attach.pop(cid, []):
            if not fut.done():
                fut.set_exception(Conflict(f"container {cid} failed to start: {exc}"))

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.ctx.get(ref)
        if c.state.status not in LIVE_STATES:
            raise Conflict(f"Container {c.id} is not running")
        await (await self.ctx.runtime(c)).resize(c.id, height, width)
        self.ctx.emit(c, "resize", height=height, width=width)

    # ------------------------------------------------------------------ processes
    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        c = self.ctx.get(ref)
        if c.state.status not in LIVE_STATES:
            raise Conflict(f"Container {c.id} is not running")
        pids = await (await self.ctx.runtime(c)).top(c.id)
        return await asyncio.to_thread(cfs.top, pids, ps_args)

    async def stats(self, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.ctx.get(ref)
        if c.state.status not in LIVE_STATES:
            return _empty_stats(c)
        try:
            st = await (await self.ctx.runtime(c)).stats(c.id)
        except (NotFound, Conflict):
            return _empty_stats(c)
        st["name"] = "/" + c.name
        st["id"] = c.id
        st.setdefault("networks", await asyncio.to_thread(_net_stats, c.state.pid))
        if previous is not None:
            st["precpu_stats"] = previous.get("cpu_stats", st.get("precpu_stats"))
            st["preread"] = previous.get("read", st.get("preread"))
        return st

    async def stats_stream(self, ref: str, stream: bool = True, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        prev = await self.stats(ref)
        if not stream:
            await asyncio.sleep(0.2)
            yield await self.stats(ref, prev)
            return
        yield prev
        while True:
            await asyncio.sleep(interval)
            cur = await self.stats(ref, prev)
            yield cur
            prev = cur


def _empty_stats(c: Container) -> dict[str, Any]:
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"id": c.id, "name": "/" + c.name, "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": cpu, "precpu_stats": {"cpu_usage": dict(cpu["cpu_usage"]),
                                               "throttling_data": dict(cpu["throttling_data"])},
            "memory_stats": {}}


def _net_stats(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


async def _no_records() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing
