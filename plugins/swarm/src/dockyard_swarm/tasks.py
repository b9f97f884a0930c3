"""Small asyncio helpers the manager's services share: stopping their background tasks and
reading a node engine's JSON-lines answers (pull, load, events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task, then wait for each to end; what they raise on the way out is dropped
    (a stopping service has no one to tell)."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


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
