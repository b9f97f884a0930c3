"""Sealed in-memory copies of the OCI runtime binary, so crun does not copy itself at each run.

Why: against CVE-2019-5736 (a container overwriting the host's runtime binary through
``/proc/<runtime pid>/exe``) every ``crun`` invocation first checks whether it runs from a
sealed memfd or a read-only mount, and if not makes itself one (a read-only bind mount of
itself on a temporary file, then ``execveat``) before doing anything: 0.56-0.75 ms of each
``crun create``, ``start`` and ``delete`` (median of 80 interleaved ``crun run`` pairs of a
busybox bundle, 4.13 vs 3.46 ms, load 1.3). A start runs two of them one after the other.

So the driver keeps one copy of the binary in a memfd sealed against any write, grow or
shrink (``F_SEAL_SEAL|SHRINK|GROW|WRITE``, what crun checks for: then it does not copy itself)
and runs it through a symlink ``<dir>/<n>/crun`` to ``/proc/<daemon pid>/fd/<memfd>``: the
name a process gets from an exec is the last part of the path it was given, so the runtime's
processes are still called ``crun`` (the monitor's reaping and ``ps`` go by that name) and
conmon, which takes a path (``-r``), can run it. The protection is the same: nothing can
write a sealed memfd. The copy is made again when the binary on disk changes (its inode,
size or modification time: an upgrade), and the old one is kept open until :meth:`close`,
since a monitor may be about to run it. Only crun is handled (runc's own check differs
between its versions).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

F_ADD_SEALS = 1033
#: what crun (runc's cloned_binary.c) takes for "already a safe copy"
SEALS = 1 | 2 | 4 | 8  # F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
HANDLED = frozenset({"crun"})


class SealedRuntimes:
    """Paths to run the runtime binaries by (see the module's docstring); not thread-safe:
    called from the event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: real path -> (the binary's stat key, memfd, symlink)
        self._copies: dict[str, tuple[tuple[int, int, int, int], int, str]] = {}
        #: the descriptors, closed at :meth:`close` or when this object goes (a driver a test never closed)
        self._fds: list[int] = []
        self._links: list[str] = []  # of replaced copies
        weakref.finalize(self, _close_all, self._fds)

    def path(self, real: str) -> str:
        """The path to run ``real`` by: its sealed copy's symlink, or ``real`` itself when it is
        not a handled runtime or a copy cannot be made."""
        if os.path.basename(real) not in HANDLED:
            return real
        try:
            st = os.stat(real)
        except OSError:
            return real
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        have = self._copies.get(real)
        if have is not None and have[0] == key:
            return have[2]
        try:
            link = self._copy(real, key)
        except OSError as exc:
            log.warning("cannot keep a sealed copy of %s (it will copy itself at each run): %s", real, exc)
            return real
        return link

    def _copy(self, real: str, key: tuple[int, int, int, int]) -> str:
        fd = os.memfd_create(os.path.basename(real), os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            with open(real, "rb") as src:  # in the kernel: no copy in this process's heap
                size, done = os.fstat(src.fileno()).st_size, 0
                while done < size and (sent := os.sendfile(fd, src.fileno(), done, size - done)) > 0:
                    done += sent
                if done != size:
                    raise OSError(f"copied {done} of {size} bytes")
            fcntl.fcntl(fd, F_ADD_SEALS, SEALS)
            if not self._copies:
                self._sweep()
            # one folder per copy (another instance, a test's second driver, has its own)
            folder = self.directory / f"{hashlib.sha256(real.encode()).hexdigest()[:12]}-{os.getpid()}-{fd}"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            link = folder / os.path.basename(real)
            link.unlink(missing_ok=True)
            os.symlink(f"/proc/{os.getpid()}/fd/{fd}", link)
        except BaseException:
            os.close(fd)
            raise
        self._fds.append(fd)  # a replaced copy stays open too: a monitor may be about to run it
        old = self._copies.get(real)
        if old is not None:
            self._links.append(old[2])
        self._copies[real] = (key, fd, str(link))
        return str(link)

    def _sweep(self) -> None:
        """Remove the links of copies whose process is gone (a daemon killed before its close)."""
        try:
            folders = list(self.directory.iterdir())
        except OSError:
            return
        for folder in folders:
            for link in folder.glob("*"):
                if link.is_symlink() and not link.exists():
                    link.unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass

    def close(self) -> None:
        """Close every copy and remove the symlinks."""
        for link in [*self._links, *(c[2] for c in self._copies.values())]:
            Path(link).unlink(missing_ok=True)
            try:
                Path(link).parent.rmdir()
            except OSError:
                pass
        _close_all(self._fds)
        self._copies.clear()
        self._links.clear()
        try:
            self.directory.rmdir()
        except OSError:
            pass


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
