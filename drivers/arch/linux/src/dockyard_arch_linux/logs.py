"""Reading conmon's ``k8s-file`` logs: ``TIMESTAMP STREAM TAG MESSAGE\\n``.

``STREAM`` is ``stdout`` or ``stderr``; ``TAG`` is ``F`` (the message ended with a newline,
which conmon stripped) or ``P`` (a partial line: no newline follows). A TTY container's output
is all ``stdout``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

from dockyard.specs.arch import LogRecord

__all__ = ["LogRecord", "follow_lines", "parse_line"]


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


async def follow_lines(path: str, follow: bool, done: Callable[[], bool],
                       poll: float = 0.05) -> AsyncIterator[bytes]:
    """Complete lines of ``path``; with ``follow``, keep reading until ``done()`` is true and
    the file is drained. A missing file counts as empty until it appears."""
    pos = 0
    pending = b""
    while True:
        chunk = await asyncio.to_thread(_read_from, path, pos)
        if chunk:
            pos += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
            continue
        if not follow:
            break
        if _size(path) < pos:  # conmon truncated the file (--log-size-max): start over
            pos, pending = 0, b""
            continue
        if done():
            # one more read: output written between the last read and the exit
            chunk = await asyncio.to_thread(_read_from, path, pos)
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


def _read_from(path: str, pos: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            return fh.read(1 << 20)
    except FileNotFoundError:
        return b""


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
