"""Exits: one monitor task per running container, the exit recorded, restart policies applied.

The monitor waits on the runtime driver; the exit is recorded under the container's lock
(``die``, and ``oom``, emitted; waiters answered), then what the start took is released. The
restart policy (:mod:`dockyard_engine.restart`) decides between a restart after docker's
growing back-off, ``AutoRemove``, or nothing. Each start is one *run*: a monitor records the
exit of its own run only, so a late monitor of an earlier run changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dockyard.errors import NotFound
from dockyard.model import Container, ContainerStatus, now_iso
from dockyard_engine import restart as policy
from dockyard_engine.container_checkpoint import complete, record_checkpointed
from dockyard_engine.container_context import RUNNING_STATES, ContainerContext
from dockyard_engine.container_setup import Setup
from dockyard_engine.health import HealthChecks

log = logging.getLogger(__name__)

#: exit code recorded when the runtime lost the process's own
UNKNOWN_EXIT = 255


class Exits:
    """Monitors, exit records, restarts and auto-removal.

    ``start_again(c)`` starts a container whose restart is due (the caller holds its lock);
    ``remove(cid)`` removes an ``AutoRemove`` container (force, with its anonymous volumes);
    ``remove_exited(c)`` removes an ``AutoRemove`` container whose exit is being recorded,
    marked ``removing`` (the caller holds its lock; what its start took is given back there).
    """

    def __init__(self, ctx: ContainerContext, setup: Setup, health: HealthChecks,
                 start_again: Callable[[Container], Awaitable[None]],
                 remove: Callable[[str], Awaitable[None]],
                 remove_exited: Callable[[Container], Awaitable[None]]) -> None:
        self.ctx = ctx
        self.setup = setup
        self.health = health
        self._start_again = start_again
        self._remove = remove
        self._remove_exited = remove_exited
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._backoff: dict[str, policy.Backoff] = {}

    # ------------------------------------------------------------------ tasks
    def monitor(self, c: Container) -> None:
        """Watch the current run of ``c`` until its process exits."""
        self._monitors[c.id] = self.ctx.spawn(self._monitor(c.id, c.state.start_count),
                                              f"monitor-{c.id[:12]}")

    def forget(self, cid: str) -> None:
        """The container is being removed: no monitor, no pending restart."""
        for tasks in (self._monitors, self._restarts):
            task = tasks.pop(cid, None)
            if task is not None:
                task.cancel()
        self._backoff.pop(cid, None)

    def cancel_restart(self, cid: str) -> None:
        task = self._restarts.pop(cid, None)
        if task is not None:
            task.cancel()

    def auto_remove_later(self, cid: str) -> None:
        self.ctx.spawn(self._auto_remove(cid), f"autoremove-{cid[:12]}")

    async def _monitor(self, cid: str, run: int) -> None:
        try:
            c = self.ctx.load(cid)
            rt = await self.ctx.runtime(c)
            st = await rt.wait(cid)
        except NotFound:
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("monitor of %s failed", cid[:12])
            return
        await self.record(cid, run, st.exit_code if st.exit_code is not None else UNKNOWN_EXIT,
                          st.oom_killed, st.finished_at or now_iso())

    # ------------------------------------------------------------------ the exit
    async def record(self, cid: str, run: int, code: int, oom: bool, finished_at: str,
                     restart_at_boot: bool | None = None) -> None:
        """Record the exit of run ``run``; ``restart_at_boot`` is given for an exit found at
        daemon start (dockerd's rule for those, instead of the running policy's)."""
        ctx = self.ctx
        async with ctx.lock(cid):
            try:
                c = ctx.load(cid)
            except NotFound:
                return
            if c.state.start_count != run or c.state.status not in RUNNING_STATES:
                return
            if complete(c.state.checkpoint):  # the exit a checkpoint caused (a daemon killed after its dump)
                self._monitors.pop(cid, None)
                await record_checkpointed(ctx, self.setup, self.health, c, finished_at)
                return
            self.health.stop(cid)
            uptime = ctx.uptime(cid)
            sandbox, c.state.sandbox_key = c.state.sandbox_key, ""
            c.state.status = ContainerStatus.EXITED
            c.state.exit_code = code
            c.state.oom_killed = oom
            c.state.pid = 0
            c.state.finished_at = finished_at
            if restart_at_boot is None:
                restart = policy.should_restart(c.host_config.restart_policy, code, c.state.restart_count,
                                                c.state.manually_stopped)
            else:
                restart = restart_at_boot and not c.host_config.auto_remove
            removing = c.host_config.auto_remove and not restart
            if restart:
                c.state.status = ContainerStatus.RESTARTING
            elif removing:  # removed below, under this lock: recorded once, as being removed
                c.state.status = ContainerStatus.REMOVING
                c.state.sandbox_key = sandbox  # which the removal gives back
            ctx.put(c)
            self._monitors.pop(cid, None)
            # waiters learn the exit at once; what start took is released after, still under the
            # lock (a start or remove that follows waits for it)
            if oom:
                ctx.emit(c, "oom")
            ctx.emit(c, "die", exitCode=code)
            ctx.watch(cid).exited(code)
            if removing:
                # removed at once, under this lock (nothing can start it in between): the
                # removal gives back what start took while the runtime's record goes, and the
                # layer goes right after its unmount instead of after both (``docker run --rm``:
                # exit -> removed 14 -> 8 ms, measured: bench/reports/2026-12-07-run-rm-s7.md)
                try:
                    await self._remove_exited(c)
                except Exception:  # noqa: BLE001 - as a failed removal: the record stays "removing"
                    log.exception("auto-remove of %s failed", cid[:12])
            else:
                await self.setup.release(c, sandbox)
                ctx.put(c)
        if removing:
            ctx.locks.pop(cid, None)
        elif restart and not ctx.closing:
            delay = 0.0 if restart_at_boot else self._backoff.setdefault(cid, policy.Backoff()).next(uptime)
            self._restarts[cid] = ctx.spawn(self._restart_later(cid, delay), f"restart-{cid[:12]}")

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.ctx.lock(cid):
            try:
                c = self.ctx.load(cid)
            except NotFound:
                return
            if c.state.status is not ContainerStatus.RESTARTING or c.state.manually_stopped:
                return
            self._restarts.pop(cid, None)
            c.state.restart_count += 1
            try:
                await self._start_again(c)
            except Exception as exc:  # noqa: BLE001
                log.error("restart of %s failed: %s", c.name, exc)
                c = self.ctx.load(cid)
                c.state.status = ContainerStatus.EXITED
                self.ctx.put(c)

    async def _auto_remove(self, cid: str) -> None:
        try:
            await self._remove(cid)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001
            log.exception("auto-remove of %s failed", cid[:12])
