"""Processes that are not our children, known by PID and start time (a PID is reused; the pair
is not): what drivers use to find, watch and wait for the daemons and VMs they started in an
earlier life (after a restart of the driver they are no longer its children)."""

from __future__ import annotations

import asyncio
import os


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None when there is no such process
    or it has exited (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Process ``pid`` runs and is the one that started at ``started``."""
    return pid > 0 and start_time(pid) == started


async def wait_exit(pid: int, started: int, timeout: float) -> bool:
    """Wait until process ``pid`` (started at ``started``) has exited; False at the timeout. A
    pidfd wakes at once; /proc is polled where there is none."""
    if not alive(pid, started):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        fd = -1
    loop = asyncio.get_running_loop()
    if fd >= 0:
        try:
            if not alive(pid, started):  # recycled between the check and the open
                return True
            done = loop.create_future()
            loop.add_reader(fd, lambda: done.done() or done.set_result(None))
            try:
                await asyncio.wait_for(done, timeout)
                return True
            except TimeoutError:
                return not alive(pid, started)
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
    deadline = loop.time() + timeout
    while alive(pid, started):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
