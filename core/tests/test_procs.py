"""Processes known by PID and start time: a reused PID is not the same process."""

from __future__ import annotations

import os
import subprocess

from dockyard.procs import alive, start_time, wait_exit


def test_start_time_identifies_a_process() -> None:
    me = start_time(os.getpid())
    assert me is not None and alive(os.getpid(), me)
    assert not alive(os.getpid(), me + 1)  # same PID, another start: another process
    assert not alive(0, me) and start_time(2**22 + 7) is None


async def test_wait_exit_wakes_when_the_process_ends_and_times_out_while_it_runs() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        started = start_time(proc.pid)
        assert started is not None
        assert await wait_exit(proc.pid, started, 0.05) is False
        proc.kill()
        assert await wait_exit(proc.pid, started, 10) is True  # a zombie counts as exited
    finally:
        proc.kill()
        proc.wait()
