"""Network sandboxes: persistent network namespaces bound at a path, loopback up.

No helper process and no ``ip netns``: a throwaway thread ``unshare``\\ s its network namespace
(a per-thread attribute, so nothing else in the daemon moves), bind-mounts its
``/proc/self/task/<tid>/ns/net`` on the sandbox path, which keeps the namespace alive after the
thread ends, and sets ``lo`` up. Removal detaches that mount and deletes the file; the kernel
frees the namespace, and any interface still in it, once nothing holds it.

Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from dockyard.errors import InvalidArgument

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sh22x"  # struct ifreq: name, flags, padding


def sandbox_path(run_dir: Path, owner: str, container_id: str) -> Path:
    """Where the sandbox of ``container_id`` is bound: named with the owner token, so
    reconciliation and leak checks find it and two daemons never share one."""
    return run_dir / "netns" / f"{owner}-{container_id}"


def _new_netns_thread(path: Path, failures: list[OSError]) -> None:
    """In this (throwaway) thread: a new network namespace, bound at ``path``, loopback up."""
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(src, str(path).encode(), None, MS_BIND, None) != 0:
            raise OSError(ctypes.get_errno(), f"bind mount of the namespace on {path}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            ifreq = struct.pack(_IFREQ, b"lo", 0)
            flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
    except OSError as exc:
        failures.append(exc)


def create(path: Path) -> None:
    """A persistent network namespace bound at ``path`` (replacing a leftover one there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove(path)
    path.touch()
    failures: list[OSError] = []
    worker = threading.Thread(target=_new_netns_thread, args=(path, failures), name="netns")
    worker.start()
    worker.join()
    if failures:
        remove(path)
        exc = failures[0]
        raise InvalidArgument(f"cannot create a network namespace: {exc.strerror or exc}") from exc


def remove(path: Path) -> None:
    """Detach the namespace bound at ``path`` (every one, should binds be stacked there) and
    delete the file; nothing there is fine."""
    for _ in range(16):
        if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point, no such file
                raise OSError(err, os.strerror(err), str(path))
            break
    try:
        path.unlink()
    except FileNotFoundError:
        pass
