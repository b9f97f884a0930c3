"""Replicas answer through the leader: an API middleware that forwards every request.

On a replicated manager that does not lead, every request (the Docker API, ``/_ping``,
extension endpoints) is sent on to the leader's advertise address with the manager's own TLS
client material (as the engines are reached), and the answer streamed back as it comes (logs
``-f``, ``/events``, pulls). While no leader is known (an election in progress) the request
waits up to two leader TTLs for one, then answers 503 naming the wait.

Served by the replica itself: ``GET /info`` (``Role: replica``, ``Primary: ADDR``),
``Upgrade: tcp`` requests (attach) and the exec calls (create, start, inspect, resize: the
session is the replica's own). They change no cluster state, only carry a container's stdio, and
the replica's own containers service reaches the node that holds the container (every manager
reads the same store), so ``docker run`` (create and start through the leader, attach here) and
``docker exec -it`` work through any replica.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiohttp import web

from dockyard.tlsconfig import is_loopback
from dockyard_swarm.engines import ClientTLS, split_addr

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.leader import Leadership

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


class LeaderProxy:
    """Forwards requests to the leading manager (one keep-alive session)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        tls = ClientTLS.from_config(kernel.config)
        self._ssl = tls.context() if tls is not None else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def leadership(self) -> Leadership:
        return cast("Leadership", self.kernel.service("leadership"))

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=None, connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def base(self, leader: str) -> str:
        host, port = split_addr(leader)
        netloc = f"[{host}]" if ":" in host else host
        if self._ssl is None and not is_loopback(host):
            raise web.HTTPServiceUnavailable(
                text='{"message":"this replica runs without TLS and the leader is not on loopback"}',
                content_type="application/json")
        return f"{'https' if self._ssl is not None else 'http'}://{netloc}:{port}"

    async def leader_or_wait(self) -> str | None:
        """The leader's address, None when this replica leads; waits for an election."""
        lead = self.leadership
        deadline = asyncio.get_running_loop().time() + 2 * lead.ttl + 1
        while True:
            if lead.is_leader:
                return None
            if lead.leader and lead.leader != lead.advertise:
                return lead.leader
            if asyncio.get_running_loop().time() > deadline:
                raise web.HTTPServiceUnavailable(
                    text='{"message":"no swarm manager leads yet (leader election in progress)"}',
                    content_type="application/json")
            await asyncio.sleep(0.1)

    async def forward(self, request: web.Request, leader: str) -> web.StreamResponse:
        url = self.base(leader) + request.rel_url.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-By"] = self.leadership.advertise
        async def body() -> Any:  # streamed on: a build context or an image load is not held here
            async for chunk in request.content.iter_chunked(1 << 16):
                yield chunk

        try:
            upstream = await self.session().request(request.method, url, headers=headers, ssl=self._ssl or False,
                                                     data=body() if request.body_exists else None)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise web.HTTPBadGateway(text=f'{{"message":"the leading manager at {leader} is unreachable: {exc}"}}',
                                     content_type="application/json") from exc
        try:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    resp.headers.add(key, value)
            if upstream.headers.get("Content-Length") is not None and "chunked" not in \
                    upstream.headers.get("Transfer-Encoding", ""):
                resp.content_length = int(upstream.headers["Content-Length"])
            await resp.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            upstream.release()


_EXEC = re.compile(r"/containers/[^/]+/exec|/exec/[^/]+/(start|json|resize)")


def is_local(request: web.Request) -> bool:
    """What a replica answers itself. ``GET /info`` (any version), as Swarm classic's did, so
    ``docker info`` says ``Role: replica`` and names the primary; the rest of its content comes
    from the store every manager reads. And the exec calls (create, start, inspect, resize): an
    exec session is kept by the manager that created it, and its start is a hijacked stream
    served here (as attach), so the whole session stays on the manager the client talks to;
    they change no cluster state."""
    path = request.path
    if path.startswith("/v") and "/" in path[1:]:
        path = "/" + path[1:].split("/", 1)[1]
    if request.method in ("GET", "HEAD") and path == "/info":
        return True
    return _EXEC.fullmatch(path) is not None


def is_upgrade(request: web.Request) -> bool:
    return "upgrade" in request.headers.get("Connection", "").lower() and bool(request.headers.get("Upgrade"))


def middleware(kernel: Kernel) -> Any:
    """The ``swarm-leader`` middleware of a replicated manager (outermost: the leader answers
    versions and errors in its own words)."""

    @web.middleware
    async def swarm_leader(request: web.Request, handler: Any) -> web.StreamResponse:
        proxy = cast("Leadership", kernel.service("leadership")).proxy
        if is_upgrade(request) or is_local(request):
            return await handler(request)  # stdio streams and /info: served here (see the module doc)
        leader = await proxy.leader_or_wait()
        if leader is None:
            return await handler(request)
        return await proxy.forward(request, leader)

    return swarm_leader
