"""Waiting for something to happen, never for a fixed time.

A test that sleeps "long enough" passes vacuously when the thing has not happened yet and
wastes the sleep when it has. Each helper here waits on the condition itself and fails with a
message naming what it waited for:

* :func:`wait_for` / :func:`async_wait_for` -- poll a predicate (back-off from 10 ms to 250 ms)
  until it returns something true, or raise :class:`WaitTimeout` at the deadline;
* :func:`wait_for_exit` / :func:`async_wait_for_exit` -- a process (not necessarily our
  child) has exited: a pidfd turns readable at once, /proc polling without one;
* :func:`stays` -- the opposite check, made explicit: a predicate holds for a whole window (the
  only honest way to assert that something does *not* happen), failing as soon as it breaks.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import select
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["WaitTimeout", "async_wait_for", "async_wait_for_exit", "stays", "wait_for", "wait_for_exit"]

T = TypeVar("T")

FIRST_INTERVAL = 0.01
MAX_INTERVAL = 0.25


class WaitTimeout(AssertionError):
    """A condition did not come true in time. ``last`` is the predicate's last result (or the
    exception it raised), shown in the message."""

    def __init__(self, what: str, timeout: float, last: Any = None) -> None:
        self.what, self.timeout, self.last = what, timeout, last
        detail = "" if last is None or last is False else f" (last: {_short(last)})"
        super().__init__(f"timed out after {timeout:g}s waiting for {what}{detail}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "",
             *, ignore: tuple[type[BaseException], ...] = (),
             interval: float = FIRST_INTERVAL, max_interval: float = MAX_INTERVAL) -> T:
    """Call ``predicate()`` until it returns a true value and return that value.

    ``what`` names the condition in the :class:`WaitTimeout` raised at the deadline (default:
    the predicate's name). Exceptions listed in ``ignore`` (a connection refused while a server
    comes up) count as "not yet"; any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what or _name(predicate), timeout, last)
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)


async def async_wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "",
                         *, ignore: tuple[type[BaseException], ...] = (),
                         interval: float = FIRST_INTERVAL, max_interval: float = MAX_INTERVAL) -> T:
    """:func:`wait_for` for coroutines: ``predicate`` may be a plain or an async callable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
        except ignore as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise WaitTimeout(what or _name(predicate), timeout, last)
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)


def stays(predicate: Callable[[], Any], duration: float, what: str = "",
          *, interval: float = 0.05) -> None:
    """Assert ``predicate()`` stays true for ``duration`` seconds (checked every ``interval``).

    For negative checks ("a stopped container is not restarted"), where no event marks that
    the thing will never happen: the window is explicit and the failure names the condition.
    """
    deadline = time.monotonic() + duration
    while True:
        value = predicate()
        if not value:
            raise AssertionError(f"no longer true within {duration:g}s: {what or _name(predicate)} "
                                 f"(got {_short(value)})")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (exited, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2:].startswith(("Z", "X"))


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None when the kernel has none (fall back to polling). Raises
    ProcessLookupError when the process is already gone."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:
        return None


def wait_for_exit(pid: int, timeout: float = 10.0, what: str = "") -> None:
    """Return once process ``pid`` has exited (a zombie counts); raise :class:`WaitTimeout`.

    Works for any process, not only our children: a pidfd turns readable when the process
    exits, so this wakes at once; without pidfd support it polls /proc.
    """
    what = what or f"process {pid} to exit"
    try:
        fd = _pidfd(pid)
    except ProcessLookupError:
        return
    if fd is None:
        wait_for(lambda: _exited(pid), timeout, what)
        return
    try:
        ready, _w, _x = select.select([fd], [], [], timeout)
        if not ready:
            raise WaitTimeout(what, timeout)
    finally:
        os.close(fd)


async def async_wait_for_exit(pid: int, timeout: float = 10.0, what: str = "") -> None:
    """:func:`wait_for_exit` without blocking the event loop (the pidfd is watched by the loop)."""
    what = what or f"process {pid} to exit"
    try:
        fd = _pidfd(pid)
    except ProcessLookupError:
        return
    if fd is None:
        await async_wait_for(lambda: _exited(pid), timeout, what)
        return
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, timeout)
    except TimeoutError:
        raise WaitTimeout(what, timeout) from None
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _name(fn: Callable[..., Any]) -> str:
    """A predicate's name, or where a lambda was written (when no ``what`` was given)."""
    name = getattr(fn, "__qualname__", "") or repr(fn)
    code = getattr(fn, "__code__", None)
    if name.endswith("<lambda>") and code is not None:
        return f"the condition at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    return name
