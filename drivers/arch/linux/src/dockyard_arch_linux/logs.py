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

    def __init__(self, path: str, follow: bool, done: Callable[[], bool], poll: float = 0.05,
                 tail: int | None = None, older: tuple[str, ...] = ()) -> None:
        self.path = path
        self.tail = tail  # only the last lines: found by reading back from the end
        # rotated files (``--log-opt max-file``), oldest first, read before the current one
        self._older = [fd for fd in (_open(p) for p in older) if fd is not None]
        self._fd = _open(path)
        # the files that took ours' place (newest last), read once ours is drained
        self._fresh: list[int] = []
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
        for fd in (self._fd, *self._fresh, *self._older):
            if fd is not None:
                os.close(fd)
        self._fd = None
        self._fresh, self._older = [], []

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    async def _read(self, follow: bool, done: Callable[[], bool], poll: float) -> AsyncIterator[bytes]:
        pos, pending = 0, b""
        starts = [0] * len(self._older)
        if self.tail is not None and self.tail >= 0:
            pos, starts = await asyncio.to_thread(self._tail_starts, self.tail)
        for fd, start in zip(self._older, starts, strict=True):
            at, rest = start, b""
            while chunk := await asyncio.to_thread(os.pread, fd, READ_SIZE, at):
                at += len(chunk)
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    yield line + b"\n"
            if rest:
                yield rest + b"\n"
        finishing = False
        while True:
            chunk = await self._chunk(pos)
            if chunk:
                pos += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line + b"\n"
                continue
            if self._fresh:  # ours is drained: go on with the next file that took its place
                old, self._fd = self._fd, self._fresh.pop(0)
                if old is not None:
                    os.close(old)
                pos, pending = 0, b""
                continue
            if not follow:
                break
            self._fresh, truncated = self._changed(pos)
            if self._fresh:
                continue  # one more read of ours: what was written to it before the rename
            if truncated:
                pos, pending = 0, b""
                continue
            if done():
                if finishing:
                    break
                # one more round: output written, a rotation or a truncation between the last
                # look and the exit (a round's read, rename and truncation checks all again)
                finishing = True
                continue
            await asyncio.sleep(poll)
        if pending:
            yield pending

    def _tail_starts(self, lines: int) -> tuple[int, list[int]]:
        """Where the last ``lines`` lines start: in the current file, then, for what it lacks,
        in the rotated ones (newest first); a file that gives none is skipped whole."""
        starts = [os.fstat(fd).st_size for fd in self._older]
        pos, found = tail_offset(self._fd, lines) if self._fd is not None else (0, 0)
        for i in range(len(self._older) - 1, -1, -1):
            if found >= lines:
                break
            starts[i], more = tail_offset(self._older[i], lines - found)
            found += more
        return pos, starts

    async def _chunk(self, pos: int) -> bytes:
        if self._fd is None:
            self._fd = _open(self.path)
            if self._fd is None:
                return b""
        return await asyncio.to_thread(os.pread, self._fd, READ_SIZE, pos)

    def _changed(self, pos: int) -> tuple[list[int], bool]:
        """(descriptors of the files that took our file's place, oldest first, our file
        truncated below ``pos``).

        Another file at ``path`` means ours was renamed: by ``--log-opt max-file``'s rotation
        (:func:`rotate`) to ``path.1``, and it may have moved on to ``path.2``... when the log
        rotated more than once since the last look (a fast writer, a slow reader): the files
        newer than ours in that chain come first, so no line is skipped."""
        if self._fd is None:
            return [], False
        held = os.fstat(self._fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:  # removed with its container: ours is all there is
            return [], held.st_size < pos
        ours = (held.st_dev, held.st_ino)
        if (now.st_dev, now.st_ino) == ours:
            return [], held.st_size < pos
        chain: list[str] = []  # path.1, path.2, ... as long as they exist, up to ours
        for i in range(1, MAX_ROTATED + 1):
            try:
                st = os.stat(f"{self.path}.{i}")
            except FileNotFoundError:
                break
            if (st.st_dev, st.st_ino) == ours:
                break
            chain.append(f"{self.path}.{i}")
        fds = [fd for fd in (_open(p) for p in (*reversed(chain), self.path)) if fd is not None]
        return fds, False


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


#: the most rotated files a reader looks through for the ones newer than its own
MAX_ROTATED = 100


def follow_lines(path: str, follow: bool, done: Callable[[], bool], poll: float = 0.05,
                 tail: int | None = None, older: tuple[str, ...] = ()) -> LogLines:
    """A :class:`LogLines` reader of ``path`` (after the rotated files ``older``, oldest
    first), opened now (``tail``: the last lines only)."""
    return LogLines(path, follow, done, poll, tail, older)


def rotated(path: str, max_files: int) -> tuple[str, ...]:
    """The rotated files of the log at ``path`` that exist, oldest first (``path.N``...``path.1``)."""
    return tuple(p for p in (f"{path}.{i}" for i in range(max_files - 1, 0, -1)) if os.path.exists(p))


def rotate(path: str, max_size: int, max_files: int) -> bool:
    """``--log-opt max-file``, as Docker's json-file: once the log at ``path`` reached
    ``max_size``, ``path.N-2`` becomes ``path.N-1``... and ``path`` becomes ``path.1`` (the
    oldest is dropped); True when it did, and the writer must reopen ``path``."""
    try:
        if os.stat(path).st_size < max_size:
            return False
    except FileNotFoundError:
        return False
    for i in range(max_files - 1, 1, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}.{i - 1}", f"{path}.{i}")
    os.replace(path, f"{path}.1")
    return True


def tail_offset(fd: int, lines: int, block: int = 1 << 16) -> tuple[int, int]:
    """Where the last ``lines`` lines of the file at ``fd`` start, and how many lines that is
    (fewer when the file has fewer), found by reading blocks back from its end (a 200 MB
    log's last two lines cost one read, not 200 MB and a list of records). A last line
    without its newline counts as a line."""
    size = os.fstat(fd).st_size
    if lines <= 0:
        return size, 0
    end = size
    if end and os.pread(fd, 1, end - 1) == b"\n":
        end -= 1  # the newline of the last line ends it; it starts none
    seen = 0
    while end > 0:
        start = max(0, end - block)
        data = os.pread(fd, end - start, start)
        idx = len(data)
        while True:
            idx = data.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            seen += 1
            if seen == lines:
                return start + idx + 1, seen
        end = start
    return 0, seen + (1 if size else 0)


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
