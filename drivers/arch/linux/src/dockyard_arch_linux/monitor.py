"""conmon: the per-container monitor that outlives the daemon.

One conmon per container (and one per exec session). It is started with ``--api-version 1`` and
two pipes: ``_OCI_STARTPIPE`` (conmon waits for a byte on it before anything else) and
``_OCI_SYNCPIPE`` (conmon reports ``{"data": <pid>}`` once ``runtime create``/``exec`` succeeded,
or a negative value and a ``message`` when it failed). It then double-forks away from the
daemon, holds the container's stdio, writes the ``k8s-file`` log, offers an attach socket
(SOCK_SEQPACKET, ``<socket-dir>/<cuuid>/attach``) and a control fifo (``<bundle>/ctl``, message
``"1 <height> <width>\\n"`` resizes the pty), and when the process exits writes its exit code
(``128+signal`` for a signal) to ``<persist-dir>/exit`` and ``<exit-dir>/<cid>``, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockyard.errors import DockyardError, InvalidArgument

PR_SET_CHILD_SUBREAPER = 36
#: the first byte of each message on the attach socket names the stream
ATTACH_STDOUT, ATTACH_STDERR = 2, 3
SUN_PATH_MAX = 107


class MonitorError(DockyardError):
    """conmon or the OCI runtime failed to create the container or exec session."""


@dataclass
class ConmonCommand:
    conmon: str
    runtime_path: str
    runtime_root: str
    cid: str
    cuuid: str
    name: str
    bundle: str
    container_pidfile: str
    conmon_pidfile: str
    log_path: str
    socket_dir: str
    exit_dir: str = ""
    persist_dir: str = ""
    terminal: bool = False
    stdin: bool = False
    leave_stdin_open: bool = False
    exec_process_spec: str = ""  # set for an exec session
    log_size_max: int = 0
    #: False: conmon does not fsync the log when the process exits (``--no-sync-log``)
    sync_log: bool = True
    extra: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        a = [self.conmon, "--api-version", "1", "-c", self.cid, "-u", self.cuuid, "-n", self.name,
             "-r", self.runtime_path, "-b", self.bundle, "-p", self.container_pidfile,
             "-P", self.conmon_pidfile, "-l", f"k8s-file:{self.log_path}",
             "--socket-dir-path", self.socket_dir, "--log-level", "error",
             "--runtime-arg", "--root", "--runtime-arg", self.runtime_root]
        if self.exit_dir:
            a += ["--exit-dir", self.exit_dir]
        if self.persist_dir:
            a += ["--persist-dir", self.persist_dir]
        if self.terminal:
            a.append("-t")
        if self.stdin:
            a.append("-i")
        if self.leave_stdin_open:
            a.append("--leave-stdin-open")
        if self.exec_process_spec:
            a += ["-e", "--exec-process-spec", self.exec_process_spec]
        if self.log_size_max > 0:
            a += ["--log-size-max", str(self.log_size_max)]
        if not self.sync_log:
            a.append("--no-sync-log")
        return a + self.extra

    def attach_socket(self) -> str:
        return os.path.join(self.socket_dir, self.cuuid, "attach")


def has_option(conmon: str, option: str) -> bool:
    """Whether ``conmon --help`` lists ``option`` (blocking: run it in a thread)."""
    try:
        out = subprocess.run([conmon, "--help"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option.encode() in out.stdout + out.stderr


def become_subreaper() -> bool:
    """Make this process the reaper of orphaned descendants (conmon after its double fork), so
    exited monitors are reaped even where PID 1 does not reap. Returns success."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child; True if it is gone (or not ours)."""
    if pid <= 0:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return not alive(pid)


def parent_of(pid: int) -> int:
    """The parent PID of ``pid`` (0 when it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        return 0 if state in (b"Z", b"X") else int(ppid)
    except (OSError, ValueError, IndexError):
        return 0


def is_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def reap_later(pid: int) -> None:
    """Reap ``pid`` (a monitor that is about to exit) as soon as it exits, if it is our child:
    a pidfd watched by the running event loop; without a loop, try at once."""
    if pid <= 0 or not is_child(pid) or reap(pid):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if _watched.get(pid) is loop:
        return
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return

    def exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        _watched.pop(pid, None)
        reap(pid)

    _watched[pid] = loop
    loop.add_reader(fd, exited)


#: PIDs of OCI runtime commands this process runs itself (their exit status belongs to asyncio)
in_flight: set[int] = set()


@contextlib.contextmanager
def own_command(pid: int) -> Iterator[None]:
    """While the block runs, :func:`reap_orphans` leaves ``pid`` alone: a runtime command this
    process started through asyncio, whose child watcher reaps it. Without this, another
    container's removal could reap the command's zombie first and asyncio would report status
    255 for a command that succeeded. Enter it right after the spawn returns (both run on the
    event loop, as every full :func:`reap_orphans` does) and leave it once the process is awaited."""
    in_flight.add(pid)
    try:
        yield
    finally:
        in_flight.discard(pid)


async def run_command(argv: list[str], timeout: float) -> tuple[int | None, bytes, bytes]:
    """Run one OCI runtime command (``crun delete``, ``runc checkpoint``...) to its end under
    :func:`own_command`: ``(status, stdout, stderr)``, the status None when it did not end
    within ``timeout`` seconds (it is killed and reaped then)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    with own_command(proc.pid):
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None, b"", b""
    return proc.returncode, out, err

RUNTIME_COMMS = (b"crun", b"runc", b"runc:[0:PARENT]", b"runc:[1:CHILD]", b"runc:[2:INIT]")


def _children() -> list[str]:
    """PIDs of this process's children, zombies included, from ``/proc/self/task/*/children``
    (an adopted orphan may hang under any of our threads); every PID in ``/proc`` where the
    kernel lacks CONFIG_PROC_CHILDREN. Scanning all of ``/proc`` took about 10 ms per container
    removal on the event loop."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return os.listdir("/proc")
    out: list[str] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as fh:
                out.extend(fh.read().split())
        except FileNotFoundError:  # the thread ended; its children moved to another (next call)
            continue
    return out


def reap_orphans(foreign_only: bool = False) -> list[int]:
    """Reap exited OCI-runtime processes that were re-parented to us (we are a subreaper) when
    their monitor died first, e.g. a container init whose ``create`` failed. Our own runtime
    commands (:data:`in_flight`) are left to asyncio. Returns the PIDs reaped now.

    One adopted while it still runs is watched (:func:`reap_later`) when it lives in another PID
    namespace than ours (so it is never one of our own runtime commands, which run in ours):
    the runtime's process that joined a container's namespaces for an exec that failed to start
    may outlive its ``crun exec`` and its conmon (seen under load). Left a zombie, it would keep
    the container from ever exiting: the container's init, killed, waits in the kernel
    (``zap_pid_ns_processes``) until every process of its namespace is reaped, and ``docker
    stop`` after its SIGKILL waited for that exit for good. ``foreign_only`` touches only
    those (cheap to call often: no race with asyncio over our own commands' exit status)."""
    reaped = []
    me = os.getpid()
    ours = ""
    for entry in _children():
        if not entry.isdigit() or int(entry) in in_flight:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if int(ppid) != me or comm not in RUNTIME_COMMS:
            continue
        if foreign_only or state != b"Z":
            ours = ours or pid_namespace("self")
            theirs = pid_namespace(entry)
            if not theirs or not ours or theirs == ours:
                continue
        if state != b"Z":
            reap_later(int(entry))  # reaped once it exits
        elif reap(int(entry)):
            reaped.append(int(entry))
    return reaped


def sweep_foreign(every: float) -> None:
    """:func:`reap_orphans` of the processes adopted from other PID namespaces only, at most
    once every ``every`` seconds in this process (the wait loops of every running container
    call it)."""
    global _last_foreign_sweep
    now = time.monotonic()
    if now - _last_foreign_sweep >= every:
        _last_foreign_sweep = now
        reap_orphans(foreign_only=True)


_last_foreign_sweep = 0.0


def pid_namespace(pid: int | str) -> str:
    """The PID namespace ``pid`` (or ``"self"``) lives in (``pid:[4026531836]``); "" when gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


#: PID -> the loop watching its pidfd (process-wide, like the children themselves)
_watched: dict[int, asyncio.AbstractEventLoop] = {}


def alive(pid: int, needle: str = "") -> bool:
    """Whether ``pid`` runs (not a zombie) and, if given, its command line contains ``needle``."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        if stat[stat.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            return False
        if needle:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return needle.encode() in fh.read()
        return True
    except (OSError, ValueError):
        return False


def read_pidfile(path: str) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def spawn(cmd: ConmonCommand, timeout: float = 30.0) -> tuple[int, int]:
    """Start conmon (blocking; run it in a thread). Returns (conmon pid, process pid).

    Raises :class:`MonitorError` with the runtime's message when create/exec failed.
    """
    sock = cmd.attach_socket()
    if len(sock) > SUN_PATH_MAX:
        raise InvalidArgument(f"attach socket path too long ({len(sock)} > {SUN_PATH_MAX}): {sock}")
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    start_r, start_w = os.pipe2(os.O_CLOEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("_OCI_")}
    env.update(_OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r))
    try:
        # conmon drops files (e.g. ``oom``) in its working directory: keep them in the bundle
        proc = subprocess.Popen(cmd.argv(), env=env, pass_fds=(sync_w, start_r), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cmd.bundle)
    except OSError as exc:
        for fd in (sync_r, sync_w, start_r, start_w):
            os.close(fd)
        raise MonitorError(f"cannot start conmon: {exc}") from exc
    os.close(sync_w)
    os.close(start_r)
    try:
        os.write(start_w, b"0")
    finally:
        os.close(start_w)
    try:
        _out, err = proc.communicate(timeout=timeout)  # the first process exits after its fork
        if proc.returncode != 0:
            raise MonitorError(f"conmon failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
        line = _read_line(sync_r, timeout)
    finally:
        os.close(sync_r)
    conmon_pid = read_pidfile(cmd.conmon_pidfile)
    if not line:
        raise MonitorError("conmon exited without reporting the container's pid")
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise MonitorError(f"unexpected message from conmon: {line!r}") from exc
    pid = int(msg.get("data", -1))
    if pid <= 0:
        reap(conmon_pid)
        raise MonitorError(str(msg.get("message") or "the OCI runtime failed").strip())
    return conmon_pid, pid


def _read_line(fd: int, timeout: float) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MonitorError("timed out waiting for conmon")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def resize(bundle: str, height: int, width: int) -> None:
    """Ask conmon to resize the process's pty (through ``<bundle>/ctl``)."""
    if not (0 <= height <= 1000 and 0 <= width <= 1000):
        raise InvalidArgument("terminal size must be between 0 and 1000")
    try:
        fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise MonitorError(f"the monitor is not listening: {exc}") from exc
    try:
        os.write(fd, f"1 {height} {width}\n".encode())
    finally:
        os.close(fd)


def reopen_log(bundle: str) -> None:
    """Ask conmon to start the log afresh at its path (``"2"`` on ``<bundle>/ctl``), after
    the file there was rotated away; a conmon already gone has nothing to write."""
    try:
        fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"2 0 0\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def terminate(pid: int, needle: str, timeout: float = 5.0) -> None:
    """SIGTERM then SIGKILL a conmon we started (identified by ``needle`` in its cmdline)."""
    if not alive(pid, needle):
        reap(pid)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap(pid)
            if not alive(pid):
                return
            time.sleep(0.02)
    reap(pid)
