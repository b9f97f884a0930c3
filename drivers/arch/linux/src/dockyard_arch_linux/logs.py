"""Reading conmon's ``k8s-file`` logs: ``TIMESTAMP STREAM TAG MESSAGE\\n``.

``STREAM`` is ``stdout`` or ``stderr``; ``TAG`` is ``F`` (the message ended with a newline,
which conmon stripped) or ``P`` (a partial line: no newline follows). A TTY container's output
is all ``stdout``.

A reader (:class:`LogLines`) opens the file when it is made and reads through that descriptor:
docker-py's ``containers.run(remove=True)`` removes the container (its log with it) before it
reads the log stream it asked for, and a reader that opened the file by name at each read then
found nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

from dockyard.specs.arch import LogRecord

__all__ = ["LogLines", "LogRecord", "LogRecords", "follow_lines", "parse_line"]

READ_SIZE = 1 << 20


def parse_line(line: bytes) -> LogRecord | None:
    """One k8s-file line (without or with its trailing newline); None if malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    msg = parts[3] if len(parts) == 4 else b""
    tag = parts[2]
    if tag.startswith(b"F"):
        msg += b"\n"
    elif not tag.startswith(b"P"):
        return None
    return LogRecord(stream=parts[1].decode(), timestamp=parts[0].decode(), data=msg)


class LogLines:
    """The complete lines of the log at ``path``, an async iterator (a last line without a
    newline comes at the end).

    The file is opened here, when the reader is made (a missing file counts as empty until it
    appears), and read through that descriptor: removing the file (the container's removal)
    takes nothing from the reader. With ``follow`` it keeps reading until ``done()`` is true and
    the file is drained. A file renamed over it (conmon's ``--log-size-max`` starts a fresh one
    so) is followed once the old one is drained; a file truncated in place is read from its
    start again. The descriptor is closed at the end, by :meth:`aclose`, or when the reader is
    collected.
    """

    def __init__(self, path: str, follow: bool, done: Callable[[], bool], poll: float = 0.05) -> None:
        self.path = path
        self._fd = _open(path)
        self._fresh: int | None = None  # a file renamed over ours, read once ours is drained
        self._lines = self._read(follow, done, poll)

    def __aiter__(self) -> LogLines:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._lines.__anext__()
        except BaseException:
            self.close()
            raise

    async def aclose(self) -> None:
        try:
            await self._lines.aclose()
        finally:
            self.close()

    def close(self) -> None:
        for fd in (self._fd, self._fresh):
            if fd is not None:
                os.close(fd)
        self._fd = self._fresh = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    async def _read(self, follow: bool, done: Callable[[], bool], poll: float) -> AsyncIterator[bytes]:
        pos, pending = 0, b""
        while True:
            chunk = await self._chunk(pos)
            if chunk:
                pos += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line + b"\n"
                continue
            if self._fresh is not None:  # ours is drained: go on with the file renamed over it
                old, self._fd, self._fresh = self._fd, self._fresh, None
                if old is not None:
                    os.close(old)
                pos, pending = 0, b""
                continue
            if not follow:
                break
            self._fresh, truncated = self._changed(pos)
            if self._fresh is not None:
                continue  # one more read of ours: what was written to it before the rename
            if truncated:
                pos, pending = 0, b""
                continue
            if done():
                # one more read: output written between the last read and the exit
                chunk = await self._chunk(pos)
                if chunk:
                    pos += len(chunk)
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line + b"\n"
                    continue
                break
            await asyncio.sleep(poll)
        if pending:
            yield pending

    async def _chunk(self, pos: int) -> bytes:
        if self._fd is None:
            self._fd = _open(self.path)
            if self._fd is None:
                return b""
        return await asyncio.to_thread(os.pread, self._fd, READ_SIZE, pos)

    def _changed(self, pos: int) -> tuple[int | None, bool]:
        """(a descriptor of another file now at ``path``, our file truncated below ``pos``)."""
        if self._fd is None:
            return None, False
        held = os.fstat(self._fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:  # removed with its container: ours is all there is
            return None, held.st_size < pos
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return _open(self.path), False
        return None, held.st_size < pos


class LogRecords:
    """The parsed records of a :class:`LogLines` (malformed lines skipped)."""

    def __init__(self, lines: LogLines) -> None:
        self.lines = lines

    def __aiter__(self) -> LogRecords:
        return self

    async def __anext__(self) -> LogRecord:
        while True:
            rec = parse_line(await self.lines.__anext__())
            if rec is not None:
                return rec

    async def aclose(self) -> None:
        await self.lines.aclose()


def follow_lines(path: str, follow: bool, done: Callable[[], bool], poll: float = 0.05) -> LogLines:
    """A :class:`LogLines` reader of ``path``, opened now."""
    return LogLines(path, follow, done, poll)


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
