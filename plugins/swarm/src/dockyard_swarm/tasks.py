"""Small asyncio helpers the manager's services share: stopping their background tasks and
reading a node engine's JSON-lines answers (pull, load, events)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

log = logging.getLogger(__name__)


#: seconds a stopping service waits for its cancelled tasks to end
STOP_TIMEOUT = 10.0
#: seconds between two cancellations of a task that has not ended yet
RECANCEL_EVERY = 0.5


async def cancel_all(tasks: Iterable[asyncio.Future[Any] | None], timeout: float = STOP_TIMEOUT) -> None:
    """Cancel every task, then wait for them to end, ``timeout`` seconds at most: a task whose
    way out waits on something that never comes is logged and left, not waited for (a stop
    never hangs). A task still running is cancelled again every :data:`RECANCEL_EVERY` seconds:
    a cancellation can be lost on the way (Python 3.11's ``asyncio.wait_for`` swallows one that
    meets its inner future's completion), and a task that lost it goes on as if never asked.
    What the tasks raise on the way out is dropped (a stopping service has no one to tell)."""
    pending = {t for t in tasks if t is not None}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY, left))
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" at collection
    for task in pending:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        log.warning("task %s did not end within %gs of its cancellation: left behind", name, timeout)


async def json_lines(lines: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """The JSON documents of a line-per-document stream (an aiohttp ``resp.content``); blank
    and undecodable lines are skipped, as the docker client does."""
    async for raw in lines:
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except ValueError:
            continue
