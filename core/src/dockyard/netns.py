"""Running a piece of code inside another network namespace (Linux).

``setns(2)`` moves only the calling thread, so the code runs on a thread of its own that ends
afterwards: no pooled thread is ever left inside a container's or a host's namespace. Network
drivers, provisioners and the SDK's conformance kits share this instead of each keeping a copy.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000


def in_thread(fn: Callable[[], T], name: str = "dockyard-netns") -> T:
    """``fn()`` run on a fresh thread (joined): its value, or its exception raised here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def enter(netns_path: str | os.PathLike[str]) -> None:
    """Move the calling thread into the network namespace at ``netns_path`` (``/run/netns/N``,
    ``/proc/PID/ns/net``); OSError when it cannot."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into {os.fspath(netns_path)}: {os.strerror(code)}")
    finally:
        os.close(fd)


def run_in(netns_path: str | os.PathLike[str], fn: Callable[[], T]) -> T:
    """``fn()`` run inside the network namespace at ``netns_path`` on a thread of its own."""
    def run() -> T:
        enter(netns_path)
        return fn()

    return in_thread(run)
