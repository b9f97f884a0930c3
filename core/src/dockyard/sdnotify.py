"""systemd's daemon protocols, stdlib only: readiness (``sd_notify``) and socket activation.

* :func:`notify` sends a state (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to the datagram
  socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace), as
  ``sd_notify(3)`` does; without the variable it does nothing. A ``Type=notify`` unit is
  active when dockyardd says ``READY=1``: after its services started and its sockets serve.
* :func:`listen_fds` takes the sockets a supervisor passed (``LISTEN_PID``, ``LISTEN_FDS``,
  ``LISTEN_FDNAMES``; descriptors from 3, ``sd_listen_fds(3)``). ``-H fd://`` serves all of them,
  ``-H fd://NAME`` those named NAME (``FileDescriptorName=`` of the ``.socket`` unit), as dockerd.

Both are about 60 lines of socket calls, so no library (python-systemd needs libsystemd and a
compiler; sdnotify on PyPI covers only the first half).

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

#: The first descriptor a supervisor passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


def notify(state: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Send ``state`` (newline-separated ``KEY=VALUE`` lines) to ``$NOTIFY_SOCKET``. True when
    it was sent; False without the variable. A send failure raises ``OSError``."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        raise OSError(f"NOTIFY_SOCKET={address!r} is neither a path nor an abstract name")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def listen_fds(environ: MutableMapping[str, str] | None = None, unset: bool = True) -> list[tuple[str, socket.socket]]:
    """The sockets passed to this process, as ``(name, socket)``; ``[]`` when none were (or they
    were meant for another process: ``LISTEN_PID`` is not ours). The descriptors are marked
    close-on-exec and, with ``unset``, the variables are removed so children do not see them."""
    env = os.environ if environ is None else environ
    try:
        pid, count = int(env.get("LISTEN_PID", "0")), int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if pid != os.getpid() or count <= 0:
        return []
    out = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        name = names[i] if i < len(names) and names[i] else "unknown"
        out.append((name, sock))
    return out


__all__ = ["LISTEN_FDS_START", "listen_fds", "notify"]
