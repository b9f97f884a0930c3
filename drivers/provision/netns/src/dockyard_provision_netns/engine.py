"""A host's engine: ``python -m dockyard.daemon`` started inside the host.

The child enters the host before it executes (``preexec_fn``, three syscalls through libc and a
write on a descriptor the parent opened): it joins the host's cgroup (so everything it will
fork is inside), enters the host's network namespace, and takes a UTS namespace of its own
with the host's name as hostname (so ``docker info`` on each host names that host). Nothing
else is shared or hidden: the engine sees the machine's filesystem, with its own data root,
exec root, socket and cgroup parent.

The engine listens on ``tcp://ADDR:2376`` with mutual TLS and on a unix socket; it is ready
when the unix socket answers ``/_ping`` (the TCP listener is bound first, so it is up by then).
A process is identified by its pid and its start time (``/proc/PID/stat`` field 22), so a
driver restarted meanwhile never mistakes a recycled pid for a host's engine.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import Unavailable
from dockyard.procs import alive, start_time, wait_exit  # noqa: F401 - this module's names too

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
ENGINE_PORT = 2376
LOG_TAIL = 1500
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Launch:
    """Everything one start of a host's engine needs."""

    netns_path: Path
    hostname: str
    cgroup_leaf: Path | None
    data_root: Path
    exec_root: Path
    socket: Path
    config_file: Path
    log: Path
    address: str
    ca: Path
    cert: Path
    key: Path
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # added to the engine's environment (--engine-env)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "dockyard.daemon",
                "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.exec_root / "dockyardd.pid"),
                "--config-file", str(self.config_file),
                "--tlsverify", "--tlscacert", str(self.ca), "--tlscert", str(self.cert),
                "--tlskey", str(self.key),
                # TCP first: when the unix socket answers, the TCP listener is already bound
                "-H", f"tcp://{self.address}:{ENGINE_PORT}", "-H", f"unix://{self.socket}",
                *self.flags]


def _enter(netns_fd: int, procs_fd: int, hostname: bytes) -> Callable[[], None]:
    """The child's ``preexec_fn``: no allocation-heavy work, no imports, no locks. A failure
    is written to the log (the child's stderr) before it is raised."""
    def fail(what: str) -> None:
        err = ctypes.get_errno()
        os.write(2, f"netns host: {what}: {os.strerror(err)}\n".encode())
        raise OSError(err, what)

    def enter() -> None:
        if procs_fd >= 0:
            try:
                os.write(procs_fd, b"0")
            except OSError as exc:
                os.write(2, f"netns host: joining the host's cgroup: {exc.strerror}\n".encode())
                raise
        if _libc.setns(netns_fd, CLONE_NEWNET) != 0:
            fail("setns into the host's network namespace")
        if _libc.unshare(CLONE_NEWUTS) != 0:
            fail("unshare(CLONE_NEWUTS)")
        if _libc.sethostname(hostname, len(hostname)) != 0:
            fail("sethostname")

    return enter


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    """Start the engine inside the host; blocking (fork and exec), run it in a thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_HOST"))}
    env.update(launch.env)
    netns_fd = os.open(launch.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    procs_fd = -1
    try:
        if launch.cgroup_leaf is not None:
            procs_fd = os.open(launch.cgroup_leaf / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        with open(launch.log, "ab") as log:
            return subprocess.Popen(launch.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env, cwd="/", start_new_session=True,
                                    preexec_fn=_enter(netns_fd, procs_fd, launch.hostname.encode()))
    finally:
        os.close(netns_fd)
        if procs_fd >= 0:
            os.close(procs_fd)


# ---------------------------------------------------------------------------------- processes


def log_tail(log: Path, size: int = LOG_TAIL) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return ""


def describe_exit(status: int | None) -> str:
    if status is None:
        return "exited (status unknown: not a child of this driver)"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


async def ping(sock: Path, timeout: float = 2.0) -> bool:
    """Whether the engine answers ``GET /_ping`` with 200 on its unix socket."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(sock)), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


async def wait_ready(launch: Launch, exited: Callable[[], int | None | bool], timeout: float) -> None:
    """Wait until the engine answers on its socket. ``exited()`` returns the exit status once
    the process has ended (False while it runs). Raises Unavailable with the log tail when it
    exits first or stays silent for ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    while True:
        status = exited()
        if status is not False:
            raise Unavailable(f"the engine of host {launch.hostname} {describe_exit(status)} before it "  # type: ignore[arg-type]
                              f"answered; its log ends:\n{log_tail(launch.log)}")
        if launch.socket.exists() and await ping(launch.socket):
            return
        if loop.time() > deadline:
            raise Unavailable(f"the engine of host {launch.hostname} did not answer on {launch.socket} "
                              f"within {timeout:g}s; its log ends:\n{log_tail(launch.log)}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.05)



def signal_process(pid: int, started: int, sig: int) -> bool:
    """Send ``sig`` to the process if it is still the one that was started; False if gone."""
    if not alive(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def write_files(directory: Path, files: Sequence[tuple[str, bytes, int]]) -> None:
    """Write ``(name, content, mode)`` files atomically into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, content, mode in files:
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        os.replace(tmp, directory / name)
