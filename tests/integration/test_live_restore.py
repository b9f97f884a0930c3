"""Live-restore: ``kill -9`` of dockyardd with 20 running containers, then a restart.

All 20 keep running and stay manageable (their logs continue, ``stop`` works), nothing is
duplicated; a container that exited while the daemon was down shows its real exit code; an
``always`` one that exited meanwhile is restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for
from tests.e2e.test_run_cli import bootstrap, stop_and_check, wait_until

sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]

N = 20
TICKER = "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"


def conmons(root: Path) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"conmon") and str(root).encode() in b" ".join(cmd):
                out.append(int(pid))
    return out


def test_kill_9_and_restart(start_dockyardd: Callable[..., Daemon]) -> None:
    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
    root = Path(f"/tmp/dyl-{os.urandom(3).hex()}")
    config = {"default-address-pools": f"{pool}:24"}
    d = start_dockyardd(root, config=config)
    try:
        bootstrap(d)
        for i in range(N):
            d.docker("run", "-d", "--name", f"lr{i}", "busybox", "sh", "-c", TICKER)
        d.docker("run", "-d", "--name", "quits", "busybox", "sh", "-c", "sleep 1.5; exit 7")
        d.docker("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c",
                 "sleep 1.5; exit 3")
        pids = {n: d.docker("inspect", "-f", "{{.State.Pid}}", n).stdout.strip() for n in ("lr0", "lr19")}
        monitors = len(conmons(root))
        assert monitors == N + 2
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        # "quits" and "always" exit while nobody watches: their monitors end once they have
        # recorded the exit; the monitors of the running ones outlive the daemon
        wait_for(lambda: len(conmons(root)) == N, 15, f"the monitors of 'quits' and 'always' to exit ({N} left)")
        d = start_dockyardd(root, config=config)

        rows = json.loads("[" + ",".join(d.docker("ps", "-a", "--format", "{{json .}}").stdout.split("\n")[:-1])
                          + "]")
        names = sorted(r["Names"] for r in rows)
        assert names == sorted([f"lr{i}" for i in range(N)] + ["quits", "always"])  # no duplicates
        running = [r["Names"] for r in rows if r["State"] == "running"]
        assert set(running) >= {f"lr{i}" for i in range(N)}
        for n, pid in pids.items():
            assert d.docker("inspect", "-f", "{{.State.Pid}}", n).stdout.strip() == pid  # the same process
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "quits").stdout == "exited 7\n"
        wait_until(lambda: d.docker("inspect", "-f", "{{.RestartCount}}", "always").stdout.strip() != "0",
                   "the always container was restarted")
        events = d.past_events("1m", "container=always")
        assert "exitCode=3" in events and "container start" in events
        # manageable: logs continue, stop works
        before = d.docker("logs", "lr3").stdout.count("tick")
        wait_until(lambda: d.docker("logs", "lr3").stdout.count("tick") > before, "logs continue")
        assert d.docker("stop", "-t", "1", "lr3").stdout == "lr3\n"
        assert d.docker("inspect", "-f", "{{.State.Status}}", "lr3").stdout == "exited\n"
        assert d.docker("exec", "lr4", "echo", "ok").stdout == "ok\n"
    finally:
        try:
            stop_and_check(d)
        finally:
            shutil.rmtree(root, ignore_errors=True)
