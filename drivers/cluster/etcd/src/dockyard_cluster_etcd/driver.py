"""The etcd v3 cluster store: :class:`dockyard.specs.cluster.ClusterStore` over aetcd.

aetcd gives the v3 protocol (its generated ``aetcd.rpc`` stubs), the asyncio gRPC channel
and the watch stream multiplexer; its convenience methods drop the response header (the
store revision a compare-and-swap store reports), so key-value requests are built from
``aetcd.rpc`` here. The README says why aetcd.

Endpoints: the URL may name several members (``etcd://h1:2379,h2:2379,h3:2379/prefix``). One
channel per member is opened on first use; requests go to the current member, and when its
channel is not ready within ``connect-timeout`` the next is tried, round and round until the
request's ``timeout`` runs out (:class:`~dockyard.errors.StoreUnavailable`). A member that
restarts is reached again on its channel (reconnect backoff capped at one second). A request
that failed after it was sent is retried only when repeating it is harmless (reads, puts,
deletes, lease calls); a transaction whose outcome is unknown raises ``StoreUnavailable``
rather than risk reporting a lost race it won.

Keys are relative to the URL's prefix: ``nodes/n1`` is ``PREFIX/nodes/n1`` in etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.errors import InvalidArgument, LeaseNotFound, StoreCompacted, StoreUnavailable
from dockyard.specs import DriverInfo
from dockyard.specs.cluster import (
    ClusterStore,
    Compare,
    Delete,
    Get,
    KeyValue,
    Lease,
    Listing,
    Op,
    Put,
    TxnResult,
    WatchEvent,
)

if TYPE_CHECKING:
    import aetcd
    import grpc
    from aetcd import rpc

# aetcd and grpc (about 30 MiB and 40 ms) are imported inside the methods that talk to etcd:
# every daemon imports this class to read the drivers' settings, few have a cluster store.

log = logging.getLogger(__name__)
T = TypeVar("T")

#: gRPC channel options. gRPC's reconnect backoff grows to 120 s by default: an etcd restarted
#: under a client would stay unreached for minutes. Keepalive pings notice a peer that vanished
#: without a reset under an idle watch (etcd permits one every 5 s by default).
CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}


def _transient(exc: BaseException) -> bool:
    """A failure another try (same member later, or another member) may not have."""
    import grpc
    from aetcd import exceptions as aexc

    if isinstance(exc, (aexc.ConnectionFailedError, aexc.ConnectionTimeoutError, aexc.WatchTimeoutError,
                        TimeoutError)):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                                                     grpc.StatusCode.DEADLINE_EXCEEDED)


def _details(exc: BaseException) -> str:
    import grpc

    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _range_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``" (``\\0``: every key)."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@cache
def _client_class() -> type[aetcd.Client]:
    """aetcd's client on our channel: TLS when credentials are given (aetcd 1.0 opens plain
    channels only) and an IPv6 literal bracketed in the target. The rest is aetcd's ``connect``:
    its stubs and its watch multiplexer on that channel. (A subclass of aetcd's: made on first
    use, with aetcd's import.)"""
    import aetcd
    import aetcd.watcher
    from aetcd import rpc

    class _Client(aetcd.Client):
        def __init__(self, target: str, credentials: grpc.ChannelCredentials | None, timeout: float) -> None:
            super().__init__(timeout=timeout, options=dict(CHANNEL_OPTIONS))
            self._target, self._credentials = target, credentials

        async def connect(self) -> None:
            if self._connected.is_set():
                return
            options = list(self._options.items())
            self.channel = (rpc.secure_channel(self._target, self._credentials, options=options)
                            if self._credentials is not None
                            else rpc.insecure_channel(self._target, options=options))
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                                  metadata=self.metadata)
            self._connected.set()

    return _Client


class _Member:
    """One endpoint and its client (a gRPC channel, opened on first use)."""

    def __init__(self, host: str, port: int, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.host, self.port, self.credentials = host, port, credentials
        self.client: aetcd.Client | None = None

    @property
    def name(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def open(self, timeout: float) -> aetcd.Client:
        if self.client is None:
            self.client = _client_class()(self.name, self.credentials, timeout)
            await self.client.connect()
        return self.client

    async def close(self, timeout: float) -> None:
        """Close the client (its watcher's stream, then its channel) within ``timeout``: a
        stop never waits on etcd for good. aetcd's close waits for its watcher's locks and
        request queue; when that does not end in time the channel is closed directly (which
        ends every call on it)."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.close(), timeout)
        except TimeoutError:
            log.warning("etcd client of %s did not close within %gs: closing its channel", self.name, timeout)
            channel = getattr(client, "channel", None)
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), timeout)


class EtcdStore(ClusterStore):
    """``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``: the cluster store on an etcd v3 cluster.

    Options (``cluster-opts``, ``--cluster-store-opt``): ``timeout`` (seconds a request may
    take, reconnects included; 5), ``connect-timeout`` (seconds one member's channel may take
    to get ready before the next member is tried; 1), ``attempt-timeout`` (seconds one try of
    a request that is harmless to repeat may take before it is repeated; 2); ``kv.cacertfile``,
    ``kv.certfile``, ``kv.keyfile`` (TLS to etcd, Swarm classic's names). Other keys are other
    plugins'.
    """

    info = DriverInfo(
        name="etcd", kind="cluster",
        description="etcd v3 (Debian's etcd-server): leases, watches, compare-and-swap transactions",
        capabilities=frozenset({"leases", "watch", "transactions", "multi-endpoint"}))

    _members: list[_Member]
    _current = 0
    _root = b""
    _timeout = 5.0
    _connect_timeout = 1.0
    _attempt_timeout = 2.0
    _closed = False

    async def setup(self) -> None:
        """Parse the URL and reach a member; :class:`StoreUnavailable` names every endpoint
        when none answers within ``timeout``."""
        from aetcd import rpc

        self._closed = False  # set up again after a close (the kernel's driver_ready)
        if getattr(self, "_members", None):
            return
        url = self.url
        if url.scheme != "etcd":
            raise InvalidArgument(f"cluster store {url}: the etcd driver serves etcd:// URLs")
        opts = self.context.options
        try:
            self._timeout = float(opts.get("timeout", self._timeout))
            self._connect_timeout = float(opts.get("connect-timeout", self._connect_timeout))
            self._attempt_timeout = float(opts.get("attempt-timeout", self._attempt_timeout))
        except ValueError as exc:
            raise InvalidArgument(f"cluster-opts: timeout and connect-timeout are seconds: {exc}") from exc
        self._root = (url.prefix + "/").encode() if url.prefix else b""
        credentials = self._credentials(opts)
        if credentials is None and any(not _loopback(h) for h, _p in url.endpoints):
            log.warning("cluster store %s: plain gRPC off loopback; give kv.cacertfile, kv.certfile and "
                        "kv.keyfile (--cluster-store-opt) to reach etcd over TLS", url)
        self._members = [_Member(h, p, credentials) for h, p in url.endpoints]
        await self._call("connect", lambda c, t: c.kvstub.Range(
            rpc.RangeRequest(key=self._root or b"\0", count_only=True), timeout=t))

    @staticmethod
    def _credentials(opts: Mapping[str, str]) -> grpc.ChannelCredentials | None:
        """TLS to etcd from Swarm classic's options: ``kv.cacertfile`` (the CA that signed
        etcd's certificate: TLS on), with ``kv.certfile`` and ``kv.keyfile`` (this client's
        certificate, for etcd's ``--client-cert-auth``)."""
        import grpc

        ca, cert, key = (opts.get(k, "") for k in ("kv.cacertfile", "kv.certfile", "kv.keyfile"))
        if not ca:
            if cert or key:
                raise InvalidArgument("cluster-opts: kv.certfile and kv.keyfile need kv.cacertfile")
            return None
        if bool(cert) != bool(key):
            raise InvalidArgument("cluster-opts: kv.certfile and kv.keyfile go together")
        try:
            files = [Path(f).read_bytes() if f else None for f in (ca, key, cert)]
        except OSError as exc:
            raise InvalidArgument(f"cluster-opts: {exc}") from exc
        return grpc.ssl_channel_credentials(root_certificates=files[0], private_key=files[1],
                                            certificate_chain=files[2])

    async def close(self) -> None:
        self._closed = True
        for m in getattr(self, "_members", []):
            await m.close(self._timeout)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"cluster store {self.url}: closed")

    def status(self) -> list[tuple[str, str]]:
        members = getattr(self, "_members", [])
        return [("Cluster store", str(self.url)),
                ("Endpoint", members[self._current].name if members else "")]

    # ------------------------------------------------------------------ connection
    def _key(self, key: str) -> bytes:
        return self._root + key.encode()

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(key=kv.key[len(self._root):].decode(errors="surrogateescape"), value=bytes(kv.value),
                        mod_revision=kv.mod_revision, create_revision=kv.create_revision,
                        version=kv.version, lease=kv.lease)

    async def _client(self, deadline: float) -> aetcd.Client:
        """A client whose channel is ready: the current member's, else the first ready one,
        else the first that gets ready (each given ``connect-timeout``), round and round."""
        import grpc

        self._raise_if_closed()  # a task that outlived its service's stop: no new channel nobody closes
        loop = asyncio.get_running_loop()
        n = len(self._members)
        order = [(self._current + step) % n for step in range(n)]
        pause = 0.05
        while True:
            clients = [await self._members[i].open(self._timeout) for i in order]
            for i, client in zip(order, clients, strict=True):
                if client.channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
                    self._current = i
                    return client
            for i, client in zip(order, clients, strict=True):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise StoreUnavailable(f"cluster store {self.url}: no etcd member answered within "
                                           f"{self._timeout:g}s")
                try:
                    await asyncio.wait_for(client.channel.channel_ready(), min(remaining, self._connect_timeout))
                except TimeoutError:
                    continue
                self._current = i
                return client
            await asyncio.sleep(pause)  # every member refused at once: back off a little
            pause = min(pause * 2, 0.5)

    async def _call(self, what: str, fn: Callable[[aetcd.Client, float], Awaitable[T]], retry: bool = True) -> T:
        """``fn(client, rpc_timeout)`` on a reachable member until ``timeout`` runs out;
        raises :class:`StoreUnavailable`.

        When ``retry`` (the request is harmless to repeat), one try gets at most
        ``attempt-timeout``: a proposal etcd dropped while its leader changed is only ever
        answered by the server's own timeout, long after a new leader would take it.
        """
        import grpc
        from aetcd import exceptions as aexc

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            client = await self._client(deadline)
            remaining = max(0.05, deadline - loop.time())
            try:
                return await fn(client, min(remaining, self._attempt_timeout) if retry else remaining)
            except (grpc.aio.AioRpcError, aexc.ClientError, TimeoutError) as exc:
                if not _transient(exc):
                    raise
                log.debug("etcd %s on %s: %s", what, self._members[self._current].name, _details(exc))
                self._current = (self._current + 1) % len(self._members)
                if not retry:
                    raise StoreUnavailable(f"etcd {what}: {_details(exc)} (its outcome is unknown)") from exc
                if loop.time() >= deadline:
                    raise StoreUnavailable(f"etcd {what}: {_details(exc)}") from exc

    # ------------------------------------------------------------------ keys
    async def get(self, key: str) -> KeyValue | None:
        from aetcd import rpc

        resp = await self._call("get", lambda c, t: c.kvstub.Range(rpc.RangeRequest(key=self._key(key)), timeout=t))
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def put(self, key: str, value: bytes, lease: Lease | int = 0) -> int:
        import grpc
        from aetcd import rpc

        lease_id = lease.id if isinstance(lease, Lease) else int(lease)
        request = rpc.PutRequest(key=self._key(key), value=bytes(value), lease=lease_id)
        try:
            resp = await self._call("put", lambda c, t: c.kvstub.Put(request, timeout=t))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LeaseNotFound(f"etcd lease {lease_id:x}: {exc.details()}") from exc
            raise
        return int(resp.header.revision)

    async def delete(self, key: str, prefix: bool = False) -> int:
        from aetcd import rpc

        k = self._key(key)
        request = rpc.DeleteRangeRequest(key=k, range_end=_range_end(k) if prefix else b"")
        resp = await self._call("delete", lambda c, t: c.kvstub.DeleteRange(request, timeout=t))
        return int(resp.deleted)

    async def list(self, prefix: str) -> Listing:
        from aetcd import rpc

        k = self._key(prefix)
        if not k:
            request = rpc.RangeRequest(key=b"\0", range_end=b"\0")
        else:
            request = rpc.RangeRequest(key=k, range_end=_range_end(k))
        resp = await self._call("list", lambda c, t: c.kvstub.Range(request, timeout=t))
        return Listing([self._kv(kv) for kv in resp.kvs], int(resp.header.revision))

    # ------------------------------------------------------------------ transactions
    def _compare(self, c: Compare) -> rpc.Compare:
        from aetcd import rpc

        result = {"==": rpc.Compare.EQUAL, "!=": rpc.Compare.NOT_EQUAL, "<": rpc.Compare.LESS,
                  ">": rpc.Compare.GREATER}[c.op]
        msg = rpc.Compare(key=self._key(c.key), result=result)
        if c.target == "value":
            msg.target, msg.value = rpc.Compare.VALUE, bytes(c.value)  # type: ignore[arg-type]
        elif c.target == "mod":
            msg.target, msg.mod_revision = rpc.Compare.MOD, int(c.value)
        elif c.target == "create":
            msg.target, msg.create_revision = rpc.Compare.CREATE, int(c.value)
        elif c.target == "version":
            msg.target, msg.version = rpc.Compare.VERSION, int(c.value)
        else:
            raise InvalidArgument(f"compare target {c.target!r}: one of mod, create, version, value")
        return msg

    def _op(self, op: Op) -> rpc.RequestOp:
        from aetcd import rpc

        k = self._key(op.key)
        if isinstance(op, Put):
            lease = op.lease.id if isinstance(op.lease, Lease) else int(op.lease)
            return rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=bytes(op.value), lease=lease))
        if isinstance(op, Delete):
            return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(
                key=k, range_end=_range_end(k) if op.prefix else b""))
        if isinstance(op, Get):
            return rpc.RequestOp(request_range=rpc.RangeRequest(key=k, range_end=_range_end(k) if op.prefix else b""))
        raise InvalidArgument(f"not a transaction operation: {op!r}")

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        import grpc
        from aetcd import rpc

        request = rpc.TxnRequest(compare=[self._compare(c) for c in compares],
                                 success=[self._op(o) for o in success],
                                 failure=[self._op(o) for o in failure])
        try:
            resp = await self._call("transaction", lambda c, t: c.kvstub.Txn(request, timeout=t),
                                    retry=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LeaseNotFound(f"etcd transaction: {exc.details()}") from exc
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(f"etcd transaction: {exc.details()}") from exc
            raise
        results: list[list[KeyValue]] = []
        for r in resp.responses:
            if r.WhichOneof("response") == "response_range":
                results.append([self._kv(kv) for kv in r.response_range.kvs])
            else:
                results.append([])
        return TxnResult(bool(resp.succeeded), int(resp.header.revision), results)

    # ------------------------------------------------------------------ leases
    async def grant(self, ttl: int) -> Lease:
        from aetcd import rpc

        resp = await self._call("lease grant", lambda c, t: c.leasestub.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=int(ttl)), timeout=t))
        if resp.error:
            raise StoreUnavailable(f"etcd lease grant: {resp.error}")
        return Lease(int(resp.ID), int(resp.TTL))

    async def keepalive(self, lease: Lease | int) -> int:
        lease_id = lease.id if isinstance(lease, Lease) else int(lease)
        reply = await self._call("lease keepalive", lambda c, t: asyncio.wait_for(c.refresh_lease(lease_id), t))
        if reply is None or reply.TTL <= 0:
            raise LeaseNotFound(f"etcd lease {lease_id:x} has expired or was revoked")
        return int(reply.TTL)

    async def revoke(self, lease: Lease | int) -> None:
        import grpc
        from aetcd import rpc

        lease_id = lease.id if isinstance(lease, Lease) else int(lease)
        try:
            await self._call("lease revoke", lambda c, t: c.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease_id), timeout=t))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    # ------------------------------------------------------------------ watch
    async def _check_history(self, client: aetcd.Client, key: bytes, revision: int) -> None:
        """Raise :class:`StoreCompacted` when ``revision`` of ``key`` has been compacted away."""
        import grpc
        from aetcd import rpc

        try:
            await client.kvstub.Range(rpc.RangeRequest(key=key, revision=revision, count_only=True),
                                      timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (exc.details() or ""):
                raise StoreCompacted(f"etcd watch from revision {revision}: {exc.details()}") from exc
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE:  # a future revision is fine
                raise

    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        import grpc
        from aetcd import exceptions as aexc
        from aetcd import rpc

        key = self._key(prefix)
        range_end = _range_end(key) if key else b"\0"
        key = key or b"\0"
        loop = asyncio.get_running_loop()
        self._raise_if_closed()
        if start_revision <= 0:
            head = await self._call("watch", lambda c, t: c.kvstub.Range(
                rpc.RangeRequest(key=key, count_only=True), timeout=t))
            start_revision = int(head.header.revision) + 1
        next_revision = start_revision
        while not self._closed:
            # A watch rides out outages: it reconnects for as long as a request may take,
            # counted from when the stream broke, and resumes after the last revision it gave.
            deadline = loop.time() + max(self._timeout, 3 * self._connect_timeout)
            watch = None
            try:
                while True:
                    client = await self._client(deadline)
                    try:
                        await self._check_history(client, key, next_revision)
                        watch = await client.watch(key, range_end=range_end, start_revision=next_revision)
                        break
                    except (grpc.aio.AioRpcError, aexc.ClientError) as exc:
                        if not _transient(exc):
                            raise
                        self._current = (self._current + 1) % len(self._members)
                        if loop.time() >= deadline:
                            raise StoreUnavailable(f"etcd watch: {_details(exc)}") from exc
                try:
                    async for ev in watch:
                        kv = self._kv(ev.kv)
                        next_revision = kv.mod_revision + 1
                        yield WatchEvent("delete" if ev.kind == "DELETE" else "put", kv)
                except aexc.RevisionCompactedError as exc:
                    raise StoreCompacted(str(exc), exc.compacted_revision) from exc
                except (grpc.aio.AioRpcError, aexc.ClientError) as exc:
                    if not _transient(exc):
                        raise
                    log.debug("etcd watch of %r broke (%s); resuming at %d", prefix, _details(exc), next_revision)
                    self._current = (self._current + 1) % len(self._members)
            finally:
                if watch is not None:
                    try:  # bounded: aetcd's cancel waits for its watcher's lock and request queue
                        await asyncio.wait_for(watch.cancel(), self._timeout)
                    except Exception:  # noqa: BLE001 - the stream may be gone already (or stuck: timed out)
                        pass
        # closed under the watch: an error, never a quiet end. A caller that watches again after
        # an end (``while True: async for ev in store.watch(...)``) would call again and again
        # without ever yielding to the event loop, which then hangs for good: seen as the swarm
        # manager's reservations watch spinning in a test's teardown (its cancellation lost) once
        # the kernel had closed the store.
        self._raise_if_closed()
