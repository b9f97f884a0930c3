"""Docker's attach, logs and exec output on the client side: the demultiplexer of its 8-byte
frame header, and an interactive session over a hijacked connection.

A non-TTY stream is framed: ``[stream, 0, 0, 0, length:u32 big-endian] + payload``, stream 1
stdout, 2 stderr, 3 an error from the daemon (docker's ``stdcopy.Systemerr``); a TTY stream is
raw bytes. :class:`Demuxer` decodes incrementally (frames split or joined anyhow);
:func:`demux` drives it from any ``read(n)`` — a socket's ``recv``, a hijacked connection's
``read``, an HTTP response's ``read`` — asking for no more than the frame being decoded still
lacks, so a reader that blocks until it has ``n`` bytes (``HTTPResponse.read``) never waits for
a frame the daemon has not sent yet (``logs -f``).
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, NamedTuple

from dockyard import errors as e

if TYPE_CHECKING:
    from dockyard.client.hijack import Hijacked

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxL")
_CHUNK = 65536


class Frame(NamedTuple):
    stream: int
    data: bytes


class StreamError(e.DockyardError):
    """The daemon reported an error inside the stream (a stream-3 frame)."""


class Demuxer:
    """Incremental decoder of Docker's multiplexed stream: :meth:`feed` bytes as they arrive,
    get the frames they complete. Empty frames are dropped."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[int, int] | None = None  # (stream, length) of the frame being read

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            if self._head is None:
                if len(self._buf) < _HEADER.size:
                    return frames
                self._head = _HEADER.unpack_from(self._buf)
                del self._buf[:_HEADER.size]
            stream, length = self._head
            if len(self._buf) < length:
                return frames
            payload = bytes(self._buf[:length])
            del self._buf[:length]
            self._head = None
            if payload:
                frames.append(Frame(stream, payload))

    @property
    def wanted(self) -> int:
        """Bytes the frame being decoded still lacks (of its header, else of its payload); >= 1."""
        if self._head is None:
            return _HEADER.size - len(self._buf)
        return self._head[1] - len(self._buf)

    def close(self) -> Frame | None:
        """At end of stream: what arrived of a truncated frame's payload, if anything."""
        head, data = self._head, bytes(self._buf)
        self._head, self._buf = None, bytearray()
        return Frame(head[0], data) if head is not None and data else None


def demux(read: Callable[[int], bytes]) -> Iterator[Frame]:
    """The frames of a multiplexed stream; ``read(n)`` returns up to ``n`` bytes, b'' at the end.
    A truncated last frame yields what arrived of it."""
    decoder = Demuxer()
    while True:
        data = read(min(decoder.wanted, _CHUNK))
        if not data:
            tail = decoder.close()
            if tail is not None:
                yield tail
            return
        yield from decoder.feed(data)


def copy_output(read: Callable[[int], bytes], tty: bool, out: IO[bytes] | None = None,
                err: IO[bytes] | None = None) -> None:
    """Copy a stream to ``out``/``err`` (stdout/stderr) until it ends: raw with ``tty``, else
    demultiplexed. A stream-3 frame raises :class:`StreamError`, as docker's ``stdcopy`` does.
    Raw copying asks for 64 KiB at a time: give an HTTP response's ``read1``, not its ``read``
    (which waits until it has them all)."""
    out = out if out is not None else sys.stdout.buffer
    err = err if err is not None else sys.stderr.buffer
    if tty:
        while data := read(_CHUNK):
            out.write(data)
            out.flush()
        return
    for stream, data in demux(read):
        if stream == SYSTEMERR:
            raise StreamError(f"error from daemon in stream: {data.decode(errors='replace')}")
        target = err if stream == STDERR else out
        target.write(data)
        target.flush()


@contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """stdin in raw mode (keys go to the container unprocessed) when ``enabled`` and stdin is a
    terminal; restored on exit."""
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def pump_stdin(conn: Hijacked) -> None:
    """Copy stdin to the connection until its end, then half-close: the daemon closes the
    container's stdin and keeps sending output."""
    try:
        fd = sys.stdin.fileno()
        while data := os.read(fd, _CHUNK):
            conn.send(data)
    except (OSError, ValueError):  # stdin closed or not a real file (a test runner's)
        pass
    finally:
        conn.close_write()


def attach_session(conn: Hijacked, tty: bool, stdin: bool) -> None:
    """Run an attach or exec session to its end: stdin pumped in a thread (or half-closed at once
    without ``stdin``), output copied to stdout/stderr, the terminal raw for ``-it``; the
    connection is closed at the end."""
    if stdin:
        threading.Thread(target=pump_stdin, args=(conn,), daemon=True).start()
    else:
        conn.close_write()
    try:
        with raw_terminal(tty and stdin):
            copy_output(conn.read, tty)
    finally:
        conn.close()
