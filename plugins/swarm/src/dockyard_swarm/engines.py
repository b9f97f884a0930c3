"""Talking to the nodes' engines: the manager's Docker API client (Swarm classic's engine
connection), shared by every manager service.

:class:`EnginePool` owns one aiohttp session (connections kept alive per node) and the TLS
client context; :meth:`EnginePool.client` gives the :class:`EngineClient` of one node. As Swarm
classic, the manager reaches engines with the certificate it serves with (its ``tlscacert``,
``tlscert``, ``tlskey``): mutual TLS, the CA file the only trusted root. Plain HTTP is used only
for a loopback address; an engine elsewhere with the manager's TLS off is refused
(:class:`~dockyard.errors.Unavailable`, naming the node), never reached in the clear.

Errors are the typed errors the engine's front mapped to HTTP, mapped back (``dockyard.client``'s
table): a 404 is :class:`~dockyard.errors.NotFound`, a 409 a ``Conflict``... An engine that
cannot be reached is :class:`EngineUnreachable` (an ``Unavailable``) naming the node.

Streams: :meth:`EngineClient.stream` hands out the response of a streaming call (logs, stats,
events, archives) to read as it comes; :meth:`EngineClient.hijack` does the ``Upgrade: tcp``
handshake of attach and exec start over its own connection and gives a :class:`RawStream`: the
two-way raw bytes, half-closable, which :class:`DemuxedAttach` turns into core's
``AttachStream`` for the API front's pump (``dockyard.client.streams.Demuxer`` decodes the
8-byte frame headers).

Measured (bench/benchmarks/swarm_run.py): a keep-alive JSON round trip on loopback through
this client costs about 0.3 ms of the manager's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from dockyard import errors as e
from dockyard.client.errors import api_error
from dockyard.client.streams import Demuxer
from dockyard.services import Service
from dockyard.specs.arch import AttachStream
from dockyard.tlsconfig import is_loopback

log = logging.getLogger(__name__)

#: What an engine call may take before the node is reported unreachable (connect), and in all
#: for a non-streaming call (a create on a busy node pulls nothing: a missing image is a 404).
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 60.0
#: Seconds an idle connection to an engine is kept. aiohttp's default (15 s) is shorter than
#: the time between two visits of one node when a manager spreads over many: at 1,000 nodes
#: nearly every create opened a connection again (a TLS handshake off loopback). Well below
#: what engines keep an idle connection (dockerd: no limit; dockyardd, aiohttp's server:
#: 3,630 s), so the manager does not reuse a connection the engine is closing.
KEEPALIVE = 60.0
#: Seconds closing the pool may take: aiohttp waits for every connection's transport to be
#: lost (a stream whose peer reads nothing would keep it); a stop never waits for good.
CLOSE_TIMEOUT = 10.0
STREAM_NAMES = {0: "stdout", 1: "stdout", 2: "stderr"}


class EngineUnreachable(e.Unavailable):
    """A node's engine could not be reached (refused, timed out, TLS failed)."""


@dataclass(frozen=True)
class ClientTLS:
    """The manager's TLS material for engines: the CA that signed the engines' certificates
    and the manager's own certificate and key (presented to engines that verify clients)."""

    ca: str
    cert: str = ""
    key: str = ""

    @classmethod
    def from_config(cls, config: Any) -> ClientTLS | None:
        """From the daemon's own TLS settings (``tlscacert``/``tlscert``/``tlskey``, as the
        manager serves with them), or None when the daemon runs without TLS."""
        from dockyard.tlsconfig import ServerTLS

        server = ServerTLS.from_config(config)
        if not server.enabled:
            return None
        return cls(ca=server.ca, cert=server.cert, key=server.key)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_verify_locations(self.ca)
            if self.cert and self.key:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise e.InvalidArgument(f"invalid TLS configuration for reaching engines (ca {self.ca!r}, "
                                    f"cert {self.cert!r}, key {self.key!r}): {exc}") from exc
        return ctx


def split_addr(addr: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``tcp://ADDR:PORT``, ``https://...`` or ``[v6]:PORT`` -> (host, port);
    2376 when no port is given (Swarm's engines listen with TLS)."""
    text = addr if "://" in addr else f"tcp://{addr}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise e.InvalidArgument(f"invalid engine address {addr!r}: expected ADDR:PORT")
    return parts.hostname, parts.port or 2376


class EnginePool:
    """One aiohttp session and TLS context for every node; clients by node name and address."""

    def __init__(self, tls: ClientTLS | None, *, limit_per_host: int = 16) -> None:
        self.tls = tls
        self._ssl: ssl.SSLContext | None = tls.context() if tls is not None else None
        self._limit = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, str], EngineClient] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._limit, ttl_dns_cache=None,
                                             enable_cleanup_closed=True, keepalive_timeout=KEEPALIVE)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
                auto_decompress=False)
        return self._session

    def client(self, node: str, addr: str) -> EngineClient:
        """The client of ``node``'s engine at ``addr`` (``ADDR:PORT`` or ``tcp://ADDR:PORT``)."""
        key = (node, addr)
        found = self._clients.get(key)
        if found is None:
            host, port = split_addr(addr)
            if self._ssl is None and not is_loopback(host):
                raise EngineUnreachable(
                    f"node {node} ({host}:{port}): the manager runs without TLS, and engines off loopback "
                    "are reached only with mutual TLS (start it with --tlsverify --tlscacert --tlscert --tlskey)")
            found = self._clients[key] = EngineClient(self, node, host, port)
        return found

    def for_node(self, node: Any) -> EngineClient:
        """The client of a :class:`~dockyard.specs.cluster.Node` (its ``engine_url``)."""
        return self.client(node.name, node.engine_url)

    def forget(self, node: str) -> None:
        for key in [k for k in self._clients if k[0] == node]:
            del self._clients[key]

    async def close(self) -> None:
        session, self._session = self._session, None
        self._clients.clear()
        if session is not None:
            try:
                await asyncio.wait_for(session.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning("the engines' connections did not close within %gs: left to the event loop",
                            CLOSE_TIMEOUT)


class EngineClient:
    """The Docker API of one node's engine (paths unversioned: the engine serves its latest)."""

    def __init__(self, pool: EnginePool, node: str, host: str, port: int) -> None:
        self.pool = pool
        self.node = node
        self.host = host
        self.port = port
        self.secure = pool._ssl is not None
        netloc = f"[{host}]" if ":" in host else host
        self.base = f"{'https' if self.secure else 'http'}://{netloc}:{port}"

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"EngineClient({self.node} at {self.base})"

    def _unreachable(self, exc: BaseException) -> EngineUnreachable:
        return EngineUnreachable(f"node {self.node} ({self.addr}) is unreachable: {exc or type(exc).__name__}")

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any,
                    data: Any, headers: dict[str, str] | None, timeout: float | None) -> aiohttp.ClientResponse:
        kwargs: dict[str, Any] = {"params": _params(params), "headers": dict(headers or {})}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"]["Content-Type"] = "application/json"
        elif data is not None:
            kwargs["data"] = data
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout, connect=CONNECT_TIMEOUT)
        try:
            return await self.pool.session.request(method, self.base + path, ssl=self.pool._ssl or False,
                                                   **kwargs)
        except (TimeoutError, aiohttp.ClientConnectionError, ssl.SSLError, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                      *, data: Any = None, headers: dict[str, str] | None = None,
                      timeout: float | None = CALL_TIMEOUT) -> tuple[int, dict[str, str], bytes]:
        """One call, its answer read whole: ``(status, headers, body)``; an error status raises
        the typed error with the engine's message."""
        resp = await self._send(method, path, params, body, data, headers, timeout)
        try:
            raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            resp.release()
        if resp.status >= 400 or resp.status == 304:
            raise api_error(resp.status, raw, f"node {self.node}")
        return resp.status, dict(resp.headers), raw

    async def json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                   **kw: Any) -> Any:
        _status, _headers, raw = await self.request(method, path, params, body, **kw)
        return json.loads(raw) if raw.strip() else None

    async def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return await self.json("GET", path, params, **kw)

    async def post(self, path: str, params: dict[str, Any] | None = None, body: Any = None, **kw: Any) -> Any:
        return await self.json("POST", path, params, body, **kw)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                     *, data: Any = None, headers: dict[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming call: the response, its status checked, to read as it comes (no total
        timeout); released when the context ends."""
        resp = await self._send(method, path, params, body, data, headers, None)
        try:
            if resp.status >= 400:
                raise api_error(resp.status, await resp.read(), f"node {self.node}")
            yield resp
        finally:
            resp.release()

    async def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                          *, data: Any = None, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
        """A streamed answer of JSON documents, one per line (pull, load, build, events)."""
        async with self.stream(method, path, params, body, data=data, headers=headers) as resp:
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                yield json.loads(buf)

    async def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> RawStream:
        """``POST path`` with ``Connection: Upgrade, Upgrade: tcp`` on a connection of its own;
        after ``101`` (or an old engine's ``200``) the connection is the raw stream. An error
        answer raises the typed error."""
        ctx = self.pool._ssl
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None,
                                        limit=1 << 20), CONNECT_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise self._unreachable(exc) from exc
        payload = json.dumps(body).encode() if body is not None else b""
        target = path + (("?" + urlencode(_params(params))) if params else "")
        head = (f"POST {target} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: dockyard-swarm\r\n"
                f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        try:
            writer.write(head + payload)
            await writer.drain()
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CALL_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise self._unreachable(exc) from exc
        status, headers = _parse_head(answer)
        if status not in (101, 200):
            try:
                raw = await _error_body(reader, headers)
            finally:
                writer.close()
            raise api_error(status, raw, f"node {self.node}")
        return RawStream(reader, writer)


def _params(params: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("1" if v else "0") if isinstance(v, bool) else (json.dumps(v) if isinstance(v, dict | list) else str(v))
    return out


def _parse_head(answer: bytes) -> tuple[int, dict[str, str]]:
    lines = answer.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError) as exc:
        raise e.Unavailable(f"malformed answer from an engine: {lines[0]!r}") from exc
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _error_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        if "content-length" in headers:
            return await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int((await asyncio.wait_for(reader.readline(), 10)).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return out
                out += await reader.readexactly(size + 2)
                out = out[:-2]
        return await asyncio.wait_for(reader.read(1 << 16), 10)
    except (TimeoutError, asyncio.IncompleteReadError, ValueError, OSError):
        return b""


class RawStream:
    """The raw two-way stream of a hijacked connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; b'' at end of stream (a reset ends it the same way)."""
        try:
            return await self.reader.read(n)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            return b""

    async def write(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(data)
            await self.writer.drain()

    async def close_write(self) -> None:
        """Half-close: the engine sees the end of stdin and keeps sending output. Under TLS the
        TCP connection is shut for writing without a close_notify, as docker's client does."""
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            await self.writer.drain()
            if self.writer.get_extra_info("sslcontext") is None and self.writer.can_write_eof():
                self.writer.write_eof()
                return
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()


class DemuxedAttach(AttachStream):
    """Core's ``AttachStream`` over a node's hijacked attach or exec connection: output as
    ``(stream, data)`` (frames decoded unless ``tty``), stdin written through."""

    def __init__(self, raw: RawStream, tty: bool, on_close: Any = None) -> None:
        self.raw = raw
        self.tty = tty
        self._demux = Demuxer()
        self._ready: list[tuple[str, bytes]] = []
        self._on_close = on_close

    async def read(self) -> tuple[str, bytes] | None:
        while not self._ready:
            data = await self.raw.read()
            if not data:
                tail = self._demux.close() if not self.tty else None
                if tail is not None:
                    return STREAM_NAMES.get(tail.stream, "stdout"), tail.data
                return None
            if self.tty:
                return "stdout", data
            self._ready.extend((STREAM_NAMES.get(f.stream, "stdout"), f.data) for f in self._demux.feed(data))
        return self._ready.pop(0)

    async def write(self, data: bytes) -> None:
        await self.raw.write(data)

    async def close_stdin(self) -> None:
        await self.raw.close_write()

    def close(self) -> None:
        self.raw.close()
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb()


async def demux_body(resp: aiohttp.ClientResponse, tty: bool) -> AsyncIterator[tuple[str, bytes]]:
    """A streamed logs body as ``(stream, data)``: raw bytes for a tty, else decoded frames."""
    demux = Demuxer()
    async for chunk in resp.content.iter_any():
        if tty:
            yield "stdout", chunk
            continue
        for f in demux.feed(chunk):
            yield STREAM_NAMES.get(f.stream, "stdout"), f.data
    tail = demux.close()
    if tail is not None:
        yield STREAM_NAMES.get(tail.stream, "stdout"), tail.data


class EnginesService(Service):
    """The manager's :class:`EnginePool` as a service (``kernel.service("engines")``): one
    session and TLS context for every manager service, closed at daemon stop."""

    name = "engines"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._pool: EnginePool | None = None

    @property
    def pool(self) -> EnginePool:
        if self._pool is None:
            self._pool = EnginePool(ClientTLS.from_config(self.kernel.config))
        return self._pool

    def for_node(self, node: Any) -> EngineClient:
        return self.pool.for_node(node)

    def client(self, node: str, addr: str) -> EngineClient:
        return self.pool.client(node, addr)

    async def start(self) -> None:
        _ = self.pool  # a bad TLS file stops the daemon at start, naming it

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()


__all__ = ["EnginesService", "CALL_TIMEOUT", "ClientTLS", "DemuxedAttach", "EngineClient", "EnginePool", "EngineUnreachable",
           "RawStream", "demux_body", "split_addr"]
