r"""Windows named-pipe endpoints: ``npipe:////./pipe/docker_engine`` as dockerd and the docker
CLI write them, for the daemon's ``-H`` and the client's ``-H``/``DOCKYARD_HOST``.

:func:`parse` is pure and tested everywhere: ``npipe:////./pipe/NAME`` (docker's form),
``npipe://./pipe/NAME`` and ``npipe:`` + a Windows name (``\\.\pipe\NAME``) all give the
Windows pipe path ``\\.\pipe\NAME``; ``npipe://`` alone is docker's default pipe. Pipes are
local: a server other than ``.`` is refused, as is a name that is not under ``pipe``.

Using a pipe needs Windows: :func:`require_windows` raises :class:`Unavailable` saying so
elsewhere. On Windows the daemon serves a pipe through aiohttp's ``NamedPipeSite`` (the
proactor event loop) and the client connects through :class:`PipeSocket` -- both untested in
dockyard's CI, which runs on Linux (docs/windows.md).
"""

from __future__ import annotations

import io
import re
import sys
from typing import Any

from dockyard.errors import InvalidArgument, Unavailable

SCHEME = "npipe"
DEFAULT_PIPE = r"\\.\pipe\docker_engine"
_NAME = re.compile(r"^[^\\/:*?\"<>|\x00-\x1f]{1,256}$")


def parse(text: str) -> str:
    r"""The Windows pipe path (``\\.\pipe\NAME``) of an ``npipe://`` address; InvalidArgument
    for anything else."""
    given = text.strip()
    scheme, sep, rest = given.partition(":")
    if scheme.lower() != SCHEME or not sep:
        raise InvalidArgument(f"invalid named pipe address {text!r}: expected npipe:////./pipe/NAME")
    path = rest.replace("\\", "/")
    if path in ("", "//"):
        return DEFAULT_PIPE
    parts = [p for p in path.split("/") if p]
    if len(parts) != 3 or parts[1].lower() != "pipe":
        raise InvalidArgument(f"invalid named pipe address {text!r}: expected npipe:////./pipe/NAME")
    server, _, name = parts
    if server != ".":
        raise InvalidArgument(f"invalid named pipe address {text!r}: only local pipes (server '.') are served")
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid named pipe address {text!r}: bad pipe name {name!r}")
    return "\\\\.\\pipe\\" + name


def address(pipe: str) -> str:
    r"""``\\.\pipe\NAME`` written as docker writes it: ``npipe:////./pipe/NAME``."""
    return "npipe://" + pipe.replace("\\", "/")


def require_windows(pipe: str) -> None:
    """Raise Unavailable naming ``pipe`` unless this is Windows."""
    if sys.platform != "win32":
        raise Unavailable(f"named pipe {pipe} needs Windows: named pipes do not exist on {sys.platform} "
                          "(use unix:///path or tcp://host:port)")


class _PipeReader(io.RawIOBase):
    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._fh.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class PipeSocket:
    r"""The part of :class:`socket.socket` the client uses (``sendall``, ``recv``, ``makefile``,
    ``settimeout``, ``close``), over a named pipe opened as a file (Windows only; timeouts are
    not applied: a synchronous pipe handle has none)."""

    def __init__(self, pipe: str) -> None:
        require_windows(pipe)
        self.pipe = pipe
        self._fh = open(pipe, "r+b", buffering=0)  # noqa: SIM115 - lives as long as the socket

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._fh.write(view)
            view = view[n:]

    def recv(self, n: int) -> bytes:
        return self._fh.read(n) or b""

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        return io.BufferedReader(_PipeReader(self._fh), buffer_size=65536 if buffering < 0 else max(buffering, 1))

    def settimeout(self, timeout: float | None) -> None:
        pass

    def fileno(self) -> int:
        return int(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
