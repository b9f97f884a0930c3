"""Hijacked connections and Docker's stream framing.

``hijack(request)`` answers ``101 UPGRADED`` at once and takes the connection over: aiohttp's
protocol object is swapped on the transport for :class:`_HijackProtocol`, which hands every byte
the client sends (stdin) to a queue and — unlike aiohttp, whose ``eof_received`` lets asyncio
close the socket — keeps the write side open after the client's half-close, so output keeps
flowing (``attach-and-streams.md`` §3). Connection loss is still forwarded to aiohttp's
protocol, which keeps its bookkeeping of open connections right.

Over TLS (``dockyardd --tlsverify``) the client half-closes too: the docker CLI's ``CloseWrite``
sends a ``close_notify`` as soon as it has no more stdin (at once for ``docker run`` without
``-i``), our CLI shuts the TCP write side. asyncio's TLS transport ends the whole connection on
either (it cannot half-close), so the container's output would be lost; dockerd (Go) keeps
writing. :func:`_tls_half_close` makes a hijacked TLS connection do the same.

Frames (non-TTY): ``[stream, 0, 0, 0, len:u32be] + payload``; stdin is never framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument

STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2, "system": 3}
RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def frame(stream: str, data: bytes) -> bytes:
    return struct.pack(">BxxxL", STREAM_IDS.get(stream, 1), len(data)) + data


def parse_detach_keys(spec: str) -> bytes:
    """Docker's ``detachKeys`` (``ctrl-p,ctrl-q``, ``a``, ``ctrl-@``...) as bytes."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(k) == 1:
            out.append(ord(key.strip()))
            continue
        if k.startswith("ctrl-") and len(k) == 6:
            ch = k[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            special = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if ch in special:
                out.append(special[ch])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


def wants_upgrade(request: web.Request) -> bool:
    return "upgrade" in request.headers.get("Connection", "").lower() and bool(request.headers.get("Upgrade"))


class _HijackProtocol(asyncio.Protocol):
    def __init__(self, original: Any, transport: asyncio.Transport) -> None:
        self.original = original
        self.transport = transport
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.keep_open_on_eof = True  # False over TLS, where _tls_half_close keeps it open

    def data_received(self, data: bytes) -> None:
        if data:
            self.incoming.put_nowait(data)

    def eof_received(self) -> bool:
        self.incoming.put_nowait(None)
        return self.keep_open_on_eof  # half-close: keep our write side open

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.incoming.put_nowait(None)
        self.closed.set()
        self._can_write.set()
        with contextlib.suppress(Exception):
            self.original.connection_lost(exc)


class Hijacked:
    """The client's side of a hijacked connection."""

    def __init__(self, proto: _HijackProtocol) -> None:
        self._proto = proto
        self.eof = False

    @property
    def closed(self) -> bool:
        return self._proto.closed.is_set()

    async def read(self) -> bytes | None:
        """Client bytes; None at half-close or disconnect."""
        if self.eof:
            return None
        data = await self._proto.incoming.get()
        if data is None:
            self.eof = True
        return data

    async def write(self, data: bytes) -> bool:
        if self.closed or not data:
            return not self.closed
        self._proto.transport.write(data)
        await self._proto._can_write.wait()
        return not self.closed

    async def wait_closed(self) -> None:
        await self._proto.closed.wait()

    def close(self) -> None:
        if not self._proto.transport.is_closing():
            self._proto.transport.close()


def _tls_half_close(transport: asyncio.BaseTransport) -> bool:
    """Keep a hijacked TLS connection open for writing after the client stops sending.

    asyncio's TLS transport (``asyncio.sslproto``) shuts the connection down when the client
    sends ``close_notify`` (``_start_shutdown`` after ``eof_received``) or when its TCP side
    closes (``SSLProtocol.eof_received``). On this one connection both now only end the input;
    our own ``close()`` still shuts down for real (and, after a TCP half-close, without waiting
    for a ``close_notify`` that cannot come). These are private names of asyncio; another
    transport (uvloop, a future rewrite) is left as it is and this returns False.
    """
    ssl_proto = getattr(transport, "_ssl_protocol", None)
    if ssl_proto is None or not hasattr(transport, "_closed") or not all(
            hasattr(ssl_proto, name) for name in ("_start_shutdown", "_call_eof_received", "_eof_received")):
        return False
    start_shutdown, eof_received = ssl_proto._start_shutdown, ssl_proto.eof_received

    def start_shutdown_unless_the_client_asked() -> None:
        if transport._closed:  # type: ignore[attr-defined]  # our close() or abort()
            start_shutdown()

    def eof_keeps_writing() -> bool | None:
        if transport._closed:  # type: ignore[attr-defined]
            return eof_received()
        ssl_proto._eof_received = True  # no close_notify can follow: do not wait for one at close
        ssl_proto._call_eof_received()
        return True  # keep our half of the TCP connection for the output

    ssl_proto._start_shutdown = start_shutdown_unless_the_client_asked
    ssl_proto.eof_received = eof_keeps_writing
    return True


async def hijack(request: web.Request, content_type: str = RAW) -> tuple[web.StreamResponse, Hijacked]:
    """Answer 101 and take the connection over."""
    resp = web.StreamResponse(status=101, reason="UPGRADED")
    resp.headers["Content-Type"] = content_type
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = "tcp"
    resp.force_close()
    await resp.prepare(request)
    transport = request.transport
    protocol = request.protocol
    assert transport is not None
    proto = _HijackProtocol(protocol, transport)  # type: ignore[arg-type]
    tail = getattr(protocol, "_message_tail", b"")
    if tail:
        proto.incoming.put_nowait(bytes(tail))
        with contextlib.suppress(AttributeError):
            protocol._message_tail = b""  # type: ignore[attr-defined]
    transport.set_protocol(proto)
    if _tls_half_close(transport):
        proto.keep_open_on_eof = False  # asyncio would only warn that True means nothing over TLS
    if getattr(protocol, "_buffer_paused", False) or not transport.is_reading():
        with contextlib.suppress(Exception):
            transport.resume_reading()
    return resp, Hijacked(proto)


class DetachScanner:
    """Finds the detach sequence in stdin (it may span reads); bytes before it pass."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detached?)."""
        if not self.keys:
            return data, False
        buf = self.held + data
        self.held = b""
        idx = buf.find(self.keys)
        if idx >= 0:
            return buf[:idx], True
        # keep a possible prefix of the sequence at the end
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if self.keys.startswith(buf[-n:]):
                self.held = buf[-n:]
                return buf[:-n], False
        return buf, False
