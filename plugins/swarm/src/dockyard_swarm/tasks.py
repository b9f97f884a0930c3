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


async def cancel_all(tasks: Iterable[asyncio.Future[Any] | None], timeout: float = STOP_TIMEOUT) -> None:
    """Cancel every task, then wait for them to end, ``timeout`` seconds at most (a task whose
    way out waits on something that never comes is logged and left, not waited for: a stop
    never hangs); what they raise on the way out is dropped (a stopping service has no one to
    tell)."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at collection
    for task in stuck:
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
