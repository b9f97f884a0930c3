"""Mount table reading and mount/umount calls shared by the drivers that mount things.

Everything here blocks: call it from a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import re
import subprocess
from typing import NamedTuple

from dockyard.errors import Conflict, Unavailable

MOUNTINFO = "/proc/self/mountinfo"
MOUNT_TIMEOUT = 30.0
_MNT_DETACH = 2
#: mountinfo writes space, tab, newline and backslash as three octal digits (``\040``).
_ESCAPE = re.compile(rb"\\([0-3][0-7]{2})")


class MountError(Unavailable):
    """A mount or unmount a driver needs failed."""


class Mount(NamedTuple):
    point: str
    fstype: str
    source: str


def unescape(field: bytes) -> str:
    """Decode one mountinfo field: octal escapes undone, other bytes as :func:`os.fsdecode` does
    (so a path compares equal to ``str(Path(...))`` even when it is not UTF-8)."""
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def read_mounts(mountinfo: str | os.PathLike[str] = MOUNTINFO) -> list[Mount]:
    """Every mount of this mount namespace, in mount order."""
    out = []
    with open(mountinfo, "rb") as f:
        for line in f:
            left, _, right = line.partition(b" - ")  # optional fields sit before the separator
            fields, rfields = left.split(), right.split()
            if len(fields) >= 5 and len(rfields) >= 2:
                out.append(Mount(unescape(fields[4]), unescape(rfields[0]), unescape(rfields[1])))
    return out


def mount(source: str, target: str, *, fstype: str | None = None, options: str | None = None,
          cwd: str | os.PathLike[str] | None = None, timeout: float = MOUNT_TIMEOUT) -> None:
    """Run ``mount [-t fstype] [-o options] source target``, relative paths resolved from ``cwd``.

    mount(8) rather than mount(2): it parses the option string the way users write it. Raises
    :class:`MountError` with mount's own message on failure or after ``timeout`` seconds.
    """
    cmd = ["mount", *(["-t", fstype] if fstype else []), *(["-o", options] if options else []), source, target]
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MountError(f"mount of {target} timed out") from None
    if proc.returncode != 0:
        raise MountError(f"mount of {target} failed: {proc.stderr.decode(errors='replace').strip()}")


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc, looked up once: ``find_library`` runs ``ldconfig -p`` (1-5 ms a call, measured),
    which every container exit and removal paid for each unmount."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def umount(path: str, detach: bool = False) -> None:
    """Unmount ``path`` (lazily with ``detach``). Not a mount point: nothing to do; busy: Conflict."""
    libc = _libc()
    if libc.umount2(os.fsencode(path), _MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not a mount point (any more)
            return
        if err == errno.EBUSY:
            raise Conflict(f"{path} is busy and cannot be unmounted")
        raise MountError(f"umount {path}: {os.strerror(err)}")

