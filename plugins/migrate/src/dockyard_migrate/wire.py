"""The migration wire: frames over one TCP (or TLS) connection from source to target.

A frame is a type byte, a 4-byte big-endian length and the payload: ``J`` a JSON control
message, ``D`` a chunk of the current data stream, ``E`` the end of that stream. The source
sends ``hello`` (token, container, volumes, mode), the target answers ``ready`` or ``error``
before anything is frozen (first ``image`` when it lacks the container's image and the hello said
``image_transfer``: the source sends the image's ``image save`` archive as a data stream, the
target answers ``loaded`` once it has loaded it, then ``ready``); then the checkpoint archive's tar stream, each volume's stream,
``commit``; the target answers ``restored`` (or ``error``) and the source ``done``. A source
that fails after its ``commit`` sends ``abort`` instead and waits for the target's ``error``
(or the connection's end), which comes once the target's copy and its addresses are gone.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from dockyard.errors import DockyardError, Unavailable

HEADER = struct.Struct(">cI")
CHUNK = 1 << 20
MAX_JSON = 16 << 20


class WireError(Unavailable):
    """The peer broke the protocol or the connection."""


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = 0

    async def send_json(self, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.writer.write(HEADER.pack(b"J", len(body)) + body)
        await self.writer.drain()

    async def send_data(self, data: bytes) -> None:
        self.writer.write(HEADER.pack(b"D", len(data)))
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def send_end(self) -> None:
        self.writer.write(HEADER.pack(b"E", 0))
        await self.writer.drain()

    async def frame(self) -> tuple[bytes, bytes]:
        try:
            head = await self.reader.readexactly(HEADER.size)
            kind, size = HEADER.unpack(head)
            if kind == b"J" and size > MAX_JSON:
                raise WireError(f"migration peer sent a {size}-byte control message")
            body = await self.reader.readexactly(size) if size else b""
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WireError("the migration peer closed the connection") from exc
        return kind, body

    async def recv_json(self) -> dict[str, Any]:
        kind, body = await self.frame()
        if kind != b"J":
            raise WireError(f"migration peer sent {kind!r} where a control message was due")
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise WireError("migration control message is not an object")
        if doc.get("type") == "error":
            raise DockyardError(str(doc.get("message") or "the migration peer failed"))
        return doc

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, ConnectionError, OSError):
            pass
