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
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError
from dockyard.model import Health, Healthcheck, HealthLogEntry, now_iso

if TYPE_CHECKING:
    from dockyard_engine.containers import ContainerService

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
KEEP_LOG = 5
MAX_OUTPUT = 4096


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


async def run_checks(service: ContainerService, container_id: str, check: Healthcheck,
                     started_monotonic: float) -> None:
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
            code, output = await service.exec_run(container_id, cmd, timeout=timeout, internal=True)
        except TimeoutError:
            code, output = -1, f"Health check exceeded timeout ({timeout:g}s)"
        except DockyardError as exc:
            code, output = -1, str(exc)
        entry = HealthLogEntry(start=start, end=now_iso(), exit_code=code, output=output[:MAX_OUTPUT])
        in_start_period = loop.time() - started_monotonic < start_period
        service.record_health(container_id, entry, code == 0, retries, in_start_period)


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
