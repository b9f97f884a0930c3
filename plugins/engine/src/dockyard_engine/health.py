"""Healthchecks: one background task per running container that has a healthcheck.

Docker's semantics: the test runs every ``interval`` (30 s default) via exec, each run limited
to ``timeout`` (30 s default); ``retries`` (3 default) consecutive failures make the container
``unhealthy``; one success makes it ``healthy``. During ``start_period`` failures do not count
(but a success already makes it healthy). The last 5 results are kept in ``State.Health.Log``.
Each status change emits ``health_status: <status>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from dockyard.errors import DockyardError, NotFound
from dockyard.model import Container, ContainerStatus, Health, Healthcheck, HealthLogEntry, now_iso

if TYPE_CHECKING:
    from dockyard_engine.container_context import ContainerContext

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
KEEP_LOG = 5
MAX_OUTPUT = 4096


class ExecRun(Protocol):
    def __call__(self, ref: str, cmd: list[str], timeout: float | None = None,
                 internal: bool = False) -> Awaitable[tuple[int, str]]: ...


def command_of(check: Healthcheck) -> list[str] | None:
    """The command a healthcheck runs, or None when it is disabled/empty."""
    test = list(check.test or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:] or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])] if len(test) > 1 else None
    return ["/bin/sh", "-c", " ".join(test)]


def seconds(ns: int, default: float) -> float:
    return ns / 1e9 if ns and ns > 0 else default


class HealthChecks:
    """One probing task per running container with a healthcheck; results recorded in
    ``State.Health`` (persisted) and status changes emitted. Probes run through ``exec_run``
    (the exec part's, as internal sessions: no events)."""

    def __init__(self, ctx: ContainerContext, exec_run: ExecRun) -> None:
        self.ctx = ctx
        self._exec_run = exec_run
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def initial(c: Container) -> Health | None:
        """What ``State.Health`` starts as for a run of ``c`` (None: no healthcheck)."""
        return Health() if c.config.healthcheck is not None and command_of(c.config.healthcheck) else None

    def start(self, c: Container) -> None:
        check = c.config.healthcheck
        if check is None or command_of(check) is None:
            return
        self.stop(c.id)
        started = self.ctx.started.get(c.id, asyncio.get_running_loop().time())
        self._tasks[c.id] = self.ctx.spawn(self._run(c.id, check, started), f"health-{c.id[:12]}")

    def stop(self, cid: str) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run(self, container_id: str, check: Healthcheck, started_monotonic: float) -> None:
        """Probe until cancelled (the container stopped or was removed)."""
        cmd = command_of(check)
        if cmd is None:
            return
        interval = seconds(check.interval, DEFAULT_INTERVAL)
        timeout = seconds(check.timeout, DEFAULT_TIMEOUT)
        retries = check.retries if check.retries > 0 else DEFAULT_RETRIES
        start_period = seconds(check.start_period, 0.0)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            start = now_iso()
            try:
                code, output = await self._exec_run(container_id, cmd, timeout=timeout, internal=True)
            except TimeoutError:
                code, output = -1, f"Health check exceeded timeout ({timeout:g}s)"
            except DockyardError as exc:
                code, output = -1, str(exc)
            entry = HealthLogEntry(start=start, end=now_iso(), exit_code=code, output=output[:MAX_OUTPUT])
            in_start_period = loop.time() - started_monotonic < start_period
            self.record(container_id, entry, code == 0, retries, in_start_period)

    def record(self, cid: str, entry: HealthLogEntry, ok: bool, retries: int, in_start_period: bool) -> None:
        """Apply one probe's result to the stored container; emit ``health_status: <status>``
        when the status changed."""
        try:
            c = self.ctx.load(cid)
        except NotFound:
            return
        if c.state.status is not ContainerStatus.RUNNING:
            return
        health = c.state.health or Health()
        before = health.status
        apply_result(health, entry, ok, retries, in_start_period)
        c.state.health = health
        self.ctx.put(c)
        if health.status != before:
            self.ctx.emit(c, f"health_status: {health.status}")


def apply_result(health: Health, entry: HealthLogEntry, ok: bool, retries: int, in_start_period: bool) -> None:
    """Update ``health`` with one probe result (pure; the service persists and emits)."""
    health.log.append(entry)
    del health.log[:-KEEP_LOG]
    if ok:
        health.failing_streak = 0
        health.status = "healthy"
        return
    if in_start_period and health.status == "starting":
        return
    health.failing_streak += 1
    if health.failing_streak >= retries:
        health.status = "unhealthy"
