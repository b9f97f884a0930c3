"""The real docker CLI 28's checkpoint commands against dockyardd (issue 17 items 1-2):
``docker checkpoint create [--leave-running] [--checkpoint-dir]``, ``ls``, ``rm`` and ``docker
start --checkpoint`` on a runc container that counts in memory and streams the count over a
TCP connection to a client in the host: after the round trip the count goes on from where it
stopped on the same connection, at the same address. A checkpoint is no crash: no ``die``, no
restart (the container has ``--restart always``). A crun container is refused naming the fix.
One daemon for the module; at the end nothing may be left (CRIU, conmon, mounts, cgroups,
namespaces, links)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for
from tests.e2e.test_run_cli import leftovers as run_leftovers
from tests.e2e.test_run_cli import stop_and_check

CRIU = "/opt/criu/sbin/criu"
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon")
                                 or not shutil.which("runc"), reason="needs root, the docker CLI, conmon and runc"),
              pytest.mark.skipif(not os.access(CRIU, os.X_OK), reason="needs CRIU 4.x (make install builds it)")]
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")

#: counts in memory, one number every 0.1 s, to whoever connects to port 7000
COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done | nc -l -p 7000"


def leftovers(root: Path, owner: str) -> list[str]:
    """test_run_cli's leftovers, and CRIU processes naming the daemon's owner."""
    found = run_leftovers(root, owner)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(CRIU.encode()) and owner.encode() in cmd and str(root).encode() not in cmd:
                found.append(f"pid {pid}: {cmd[:80]!r}")
    return found


@pytest.fixture(scope="module")
def d(start_dockyardd: Callable[..., Daemon]) -> Iterator[Daemon]:
    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
    root = Path(f"/tmp/dyk-{os.urandom(3).hex()}")
    daemon = start_dockyardd(root, config={"default-address-pools": f"{pool}:24", "experimental": True})
    try:
        daemon.dockyard("image", "bootstrap", "busybox")
        yield daemon
    finally:
        try:
            stop_and_check(daemon, leftovers)
        finally:
            shutil.rmtree(root, ignore_errors=True)


class Reader:
    """The client: one TCP connection to the container, reading the count line by line."""

    def __init__(self, ip: str) -> None:
        def connect() -> socket.socket | None:
            try:
                return socket.create_connection((ip, 7000), timeout=2)
            except OSError:
                return None

        self.sock = wait_for(connect, 10, f"the counter listening on {ip}:7000")
        self.sock.settimeout(15)
        self.file = self.sock.makefile("rb")

    def next(self) -> int:
        line = self.file.readline()
        assert line, "the connection was closed"
        return int(line)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_checkpoint_and_start_keep_the_count_and_the_connection(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "count", "--runtime", "runc", "--restart", "always", "busybox", "sh", "-c", COUNTER)
    assert d.docker("inspect", "-f", "{{.HostConfig.Runtime}}", "count").stdout == "runc\n"
    ip = d.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "count").stdout.strip()
    client = Reader(ip)
    try:
        seen = [client.next() for _ in range(5)]
        assert seen == list(range(seen[0], seen[0] + 5))
        t0 = time.monotonic()
        assert d.docker("checkpoint", "create", "count", "cp1").stdout == "cp1\n"
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "count").stdout == "exited 0\n"
        assert d.docker("checkpoint", "ls", "count").stdout.split() == ["CHECKPOINT", "NAME", "cp1"]
        time.sleep(0.5)  # --restart always would have started it again by now
        assert d.docker("inspect", "-f", "{{.State.Status}}", "count").stdout == "exited\n"
        d.docker("start", "--checkpoint", "cp1", "count")
        frozen = time.monotonic() - t0
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.NetworkSettings.IPAddress}}", "count").stdout == \
            f"running {ip}\n"
        after = [client.next() for _ in range(5)]
        last = seen[-1]
        # the count goes on over the same connection: nothing lost, nothing repeated
        assert after[0] == last + 1 and after == list(range(last + 1, last + 6)), (seen, after)
        assert frozen < 10
        events = d.past_events("1m", "container=count")  # before the client hangs up (nc then exits)
        assert "container checkpoint" in events
        assert "container die" not in events, events
    finally:
        client.close()
    d.docker("checkpoint", "rm", "count", "cp1")
    assert d.docker("checkpoint", "ls", "count").stdout.split() == ["CHECKPOINT", "NAME"]
    d.docker("rm", "-f", "count")


def test_leave_running_and_a_checkpoint_dir(d: Daemon, tmp_path: Path) -> None:
    d.docker("run", "-d", "--name", "keep", "--runtime", "runc", "busybox", "sh", "-c",
             "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done")
    wait_for(lambda: d.docker("exec", "keep", "cat", "/tmp/n", check=False).stdout.strip().isdigit(), 10, "counting")
    d.docker("checkpoint", "create", "--leave-running", "--checkpoint-dir", str(tmp_path), "keep", "snap")
    assert d.docker("inspect", "-f", "{{.State.Status}}", "keep").stdout == "running\n"
    assert (tmp_path / "snap" / "inventory.img").exists()
    assert "snap" in d.docker("checkpoint", "ls", "--checkpoint-dir", str(tmp_path), "keep").stdout
    at = int(d.docker("exec", "keep", "cat", "/tmp/n").stdout)
    d.docker("stop", "-t", "0", "keep")
    d.docker("start", "--checkpoint", "snap", "--checkpoint-dir", str(tmp_path), "keep")
    # back to the memory of the snapshot: the count restarts from there, not from 1
    n = int(d.docker("exec", "keep", "sh", "-c", "sleep 0.3; cat /tmp/n").stdout)
    assert n > 1 and n >= at - 20, (at, n)
    d.docker("rm", "-f", "keep")


def test_a_crun_container_is_refused_naming_the_fix(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "crunny", "busybox", "sleep", "60")
    assert d.docker("inspect", "-f", "{{.HostConfig.Runtime}}", "crunny").stdout == "crun\n"
    res = d.docker("checkpoint", "create", "crunny", "cx", check=False)
    assert res.returncode != 0
    assert "--runtime runc" in res.stderr and "crun" in res.stderr, res.stderr
    assert d.docker("inspect", "-f", "{{.State.Status}}", "crunny").stdout == "running\n"
    info = d.dockyard("info").stdout
    assert "Checkpoint: available for runc" in info and "Experimental: true" in info
    d.docker("rm", "-f", "crunny")


def test_a_checkpointed_container_survives_a_killed_daemon(start_dockyardd: Callable[..., Daemon]) -> None:
    """kill -9 of dockyardd while a container is checkpointed: the restarted daemon keeps its
    network for the restore (live-restore must not release it), and the connection resumes."""
    import signal

    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
    root = Path(f"/tmp/dyk-{os.urandom(3).hex()}")
    config = {"default-address-pools": f"{pool}:24", "experimental": True}
    d = start_dockyardd(root, config=config)
    client = None
    try:
        d.dockyard("image", "bootstrap", "busybox")
        d.docker("run", "-d", "--name", "count", "--runtime", "runc", "busybox", "sh", "-c", COUNTER)
        ip = d.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "count").stdout.strip()
        client = Reader(ip)
        last = [client.next() for _ in range(3)][-1]
        d.docker("checkpoint", "create", "count", "cp")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d = start_dockyardd(root, config=config)
        assert d.docker("inspect", "-f", "{{.State.Status}}", "count").stdout == "exited\n"
        d.docker("start", "--checkpoint", "cp", "count")
        assert d.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "count").stdout.strip() == ip
        assert client.next() == last + 1
    finally:
        if client is not None:
            client.close()
        try:
            stop_and_check(d, leftovers)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_a_tty_container_round_trips(d: Daemon) -> None:
    """A terminal is a shell job to CRIU: handled without asking."""
    d.docker("run", "-d", "-t", "--runtime", "runc", "--name", "tty", "busybox", "sh", "-c",
             "i=0; while true; do i=$((i+1)); echo n$i; sleep 0.1; done")
    wait_for(lambda: "n3" in d.docker("logs", "tty").stdout, 10, "the tty counter")
    d.docker("checkpoint", "create", "tty", "t1")
    last = max(int(w[1:]) for w in d.docker("logs", "tty").stdout.split() if w.startswith("n"))
    d.docker("start", "--checkpoint", "t1", "tty")
    wait_for(lambda: f"n{last + 2}" in d.docker("logs", "tty").stdout, 10, "the tty counter going on")
    d.docker("rm", "-f", "tty")
