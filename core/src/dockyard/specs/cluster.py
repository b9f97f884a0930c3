"""Area ``cluster``: a pool of engines behind one API. The cluster store and the scheduler.

The cluster store (``dockyard.drivers.cluster``, one selected by the scheme of the
``cluster-store`` URL, e.g. ``etcd://H:P/PREFIX``) is etcd-shaped: get/put/delete, list by
prefix, compare-and-swap transactions, leases and watches from a revision
(:class:`ClusterStore`). It holds membership, placements and anything else cluster-wide. The scheduler is Swarm classic's shape: every enabled
filter removes nodes, then one strategy ranks the survivors (see
``shared/reference/orchestration.md``). Filters and strategies are hook-provided descriptors,
so any plugin can add one.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from dockyard.errors import LeaseNotFound, StoreCompacted
from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

_log = logging.getLogger("dockyard.cluster")


# ---------------------------------------------------------------------------- the scheduler
# What filters and strategies see. ``dockyard.scheduler`` keeps these up to date between
# placements (indexes, orderings); the filters and strategies themselves are plugins.

#: A host port a container binds: ``(host address, port, protocol)``; the address ``""``
#: (or ``0.0.0.0`` / ``::``) is every address of the node, the protocol ``tcp``/``udp``/``sctp``.
PortBinding = tuple[str, int, str]

#: Node fields the constraint filter matches besides the engine labels (Swarm classic's keys).
ENGINE_FIELDS = ("storagedriver", "kernelversion", "operatingsystem", "ostype", "architecture")


@dataclass
class NodeContainer:
    """A container on a node, as filters see it. Stopped containers count too (as in Swarm)."""

    id: str
    name: str = ""  # without a leading "/"
    image: str = ""  # as created ("redis:7", "sha256:...")
    image_id: str = ""
    ports: tuple[PortBinding, ...] = ()  # host ports it binds (published, or exposed under host networking)
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0  # what it reserved
    memory: int = 0


@dataclass(eq=False)
class Node:
    """One engine in the pool, as the scheduler sees it.

    ``cpus``/``memory`` are the engine's totals (``NCPU``, ``MemTotal``); ``reserved_*`` what
    its containers reserved. Change ``containers`` through :meth:`add` / :meth:`remove` (they
    keep the reservations, the images and the lookups by name, ID and host port in step);
    :class:`dockyard.scheduler.Scheduler` does so for you after each placement.
    """

    name: str
    engine_url: str = ""
    id: str = ""  # the engine's ID (``docker info``), matched by ``constraint:node==``
    labels: dict[str, str] = field(default_factory=dict)  # the engine's --label k=v
    cpus: float = 0
    memory: int = 0
    reserved_cpus: float = 0.0
    reserved_memory: int = 0
    containers: list[NodeContainer] = field(default_factory=list)
    images: set[str] = field(default_factory=set)  # image IDs, repo:tag and repo names present
    healthy: bool = True
    storage_driver: str = ""
    kernel_version: str = ""
    operating_system: str = ""
    os_type: str = "linux"
    architecture: str = ""  # Docker's spelling (x86_64, aarch64)
    server_version: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # the node's raw /info, if kept
    #: platforms the engine runs natively and under emulation (``linux/arm64``: its runtime
    #: driver's ``platforms()``, /info ``DockyardPlatforms``); none given: ``os_type`` and
    #: ``architecture`` natively (versionadded 0.3)
    platforms: tuple[str, ...] = ()
    emulated_platforms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._runs: dict[str, str] = {}
        self._by_ref: dict[str, NodeContainer] = {}
        self._ports: dict[tuple[int, str], list[str]] = {}  # (port, proto) -> addresses bound
        for c in self.containers:
            self._index(c)

    def _index(self, c: NodeContainer) -> None:
        self._by_ref[c.id] = c
        if c.name:
            self._by_ref[c.name.lstrip("/")] = c
        for addr, port, proto in c.ports:
            self._ports.setdefault((port, proto), []).append(addr)
        for ref in (c.image, c.image_id):
            if ref:
                self.images.add(ref)

    def add(self, c: NodeContainer) -> None:
        """Record ``c`` as placed here: its reservation, name, image and host ports."""
        self.containers.append(c)
        self.reserved_cpus += c.cpus
        self.reserved_memory += c.memory
        self._index(c)

    def remove(self, ref: str) -> NodeContainer | None:
        """Forget a container (by ID or name) and release what it reserved; None when absent."""
        c = self.container(ref)
        if c is None:
            return None
        self.containers = [x for x in self.containers if x is not c]
        self.reserved_cpus = max(0.0, self.reserved_cpus - c.cpus)
        self.reserved_memory = max(0, self.reserved_memory - c.memory)
        self.__post_init__()
        return c

    def container(self, ref: str) -> NodeContainer | None:
        """A container here by ID, name (``/name`` too) or unique ID prefix."""
        ref = ref.lstrip("/")
        hit = self._by_ref.get(ref)
        if hit is not None or len(ref) < 3:
            return hit
        found = [c for c in self.containers if c.id.startswith(ref)]
        return found[0] if len(found) == 1 else None

    def port_in_use(self, binding: PortBinding) -> str | None:
        """The address that already binds ``binding``'s port and protocol here (clashing with
        its address: equal, or either is every address), else None."""
        addr, port, proto = binding
        for other in self._ports.get((port, proto), ()):
            if other == addr or other in _ANY_ADDR or addr in _ANY_ADDR:
                return other or "0.0.0.0"
        return None

    def runs(self, platform: str) -> str:
        """How this node runs an image built for ``platform`` (``linux/arm64``): ``"native"``,
        ``"emulated"`` or ``""`` (not at all), with containerd's fallbacks (an amd64 node runs
        386, an arm64 node 32-bit arm). Cached per platform."""
        how = self._runs.get(platform)
        if how is None:
            from dockyard.errors import DockyardError
            from dockyard.platforms import Runnable

            native = self.platforms or ((f"{self.os_type or 'linux'}/{self.architecture}",)
                                        if self.architecture else ())
            try:
                how = Runnable.named(native, self.emulated_platforms).how(platform)
            except DockyardError:
                how = ""
            self._runs[platform] = how
        return how

    def attributes(self) -> dict[str, str]:
        """What ``constraint:KEY==VALUE`` matches besides ``node``: the engine labels (keys in
        lower case, as Swarm's expressions) and :data:`ENGINE_FIELDS`."""
        out = {k.lower(): v for k, v in self.labels.items()}
        out.update(storagedriver=self.storage_driver, kernelversion=self.kernel_version,
                   operatingsystem=self.operating_system, ostype=self.os_type,
                   architecture=self.architecture)
        return out


_ANY_ADDR = frozenset({"", "0.0.0.0", "::"})


@dataclass
class PlacementRequest:
    """A container to place and what it asks of a node.

    ``constraints``/``affinities`` are Swarm classic expressions without their prefix
    (``"storage==ssd"``, ``"node!=n1"``, ``"container==~web*"``: ``~`` after the operator is
    soft). ``dependencies``: containers that must be on the same node (``--volumes-from``,
    ``--link``, ``--net container:``). Build one from a Docker create body with
    :func:`dockyard.scheduler.request_from_create`.
    """

    name: str = ""
    image: str = ""
    cpus: float = 0.0
    memory: int = 0
    constraints: list[str] = field(default_factory=list)
    affinities: list[str] = field(default_factory=list)
    ports: list[PortBinding] = field(default_factory=list)  # host ports wanted
    dependencies: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    reschedule: list[str] = field(default_factory=list)  # ["on-node-failure"]
    #: the create's ``platform`` (normalized, ``linux/arm64``; "" = any): only nodes that can
    #: run it pass the ``platform`` filter, native ones ranked before emulated (versionadded 0.3)
    platform: str = ""

    def has_soft(self) -> bool:
        return any(_is_soft(e) for e in (*self.constraints, *self.affinities))

    def hard(self) -> PlacementRequest:
        """This request without its soft expressions (Swarm's second try)."""
        return replace(self, constraints=[c for c in self.constraints if not _is_soft(c)],
                       affinities=[a for a in self.affinities if not _is_soft(a)])


def _is_soft(expr: str) -> bool:
    for op in ("==", "!="):
        head, sep, value = expr.partition(op)
        if sep:
            return value.startswith("~")
    return False


@dataclass(frozen=True)
class FilterCheck:
    """What a filter prepared for one request.

    ``check(node)`` returns None when the node passes, else why not, briefly
    (``"node==h2 does not match"``); the scheduler prefixes the filter's name. ``index``:
    what every passing node has, which the scheduler answers from its indexes instead of
    checking every node: ``(key, value)``, the node has exactly that value for ``key``, or
    ``(key, name, predicate)``, a value ``predicate(value)`` accepts (``name`` identifies the
    pattern, e.g. ``"/r1[0-9]/"``; the scheduler unions the nodes of every indexed value it
    accepts). Keys: ``"node"`` (name or ID), ``"container"`` (name or ID of a container on
    it), ``"image"`` (a reference present), or a :meth:`Node.attributes` key. A node without
    the key is in no domain, so never hint a pattern that accepts ``""``. It is a hint:
    ``check`` still decides.
    """

    check: Callable[[Node], str | None]
    index: tuple[tuple[str, str] | tuple[str, str, Callable[[str], bool]], ...] = ()


@dataclass(frozen=True)
class SchedulerFilter:
    """Removes nodes that cannot take a request (Swarm classic's filters).

    ``prepare(request)`` parses what the request asks once (raising
    :class:`~dockyard.errors.InvalidArgument` when it is malformed) and returns the per-node
    :class:`FilterCheck`, or None when this filter has nothing to check for the request.
    """

    name: str
    prepare: Callable[[PlacementRequest], FilterCheck | None]
    description: str = ""


@dataclass(frozen=True)
class SchedulerStrategy:
    """Ranks the nodes that passed the filters (Swarm classic's strategies).

    ``rank(request, overcommit)`` returns a key function over nodes (a tuple is fastest),
    smaller first, or None
    for no ranking (a random pick among the survivors). The key may depend only on the node
    and the request's ``cpus``, ``memory`` and ``platform``, so the scheduler can keep nodes ordered
    between placements; ``overcommit`` is the fraction of CPUs and memory a node may be
    promised beyond its totals (0.05: 5 %).
    """

    name: str
    rank: Callable[[PlacementRequest, float], Callable[[Node], Any] | None]
    description: str = ""


# ---------------------------------------------------------------------------- the store
def discovery_ttl(daemon_config: Any, default: str) -> str:
    """dockerd's ``discovery.ttl`` cluster option (``--cluster-store-opt discovery.ttl=SECONDS``,
    the ``cluster-opts`` list: when an engine counts as lost) rounded up to whole seconds, else
    ``default`` (unset or not a number). Drivers keeping leases in the store use it as theirs."""
    for item in daemon_config.get("cluster-opts") or ():
        key, _, value = str(item).partition("=")
        if key.strip() == "discovery.ttl":
            try:
                return str(max(1, -int(-float(value) // 1)))
            except ValueError:
                return default
    return default


# etcd's shape (DESIGN, "Many hosts: the seams"): keys under the URL's prefix, each with the
# revision of its last change; transactions comparing revisions; leases; watches from a
# revision. Keys are relative to the store's prefix ("nodes/n1" is "PREFIX/nodes/n1" in etcd);
# values are bytes (the swarm writes JSON: ``KeyValue.json()``).


@dataclass(frozen=True)
class StoreURL:
    """``--cluster-store``: ``SCHEME://HOST:PORT[,HOST:PORT...]/PREFIX`` (dockerd's form).

    The scheme picks the driver (``etcd`` -> ``dockyard-cluster-etcd``); ``prefix`` has no
    leading or trailing ``/`` (``""``: the root).
    """

    scheme: str
    endpoints: tuple[tuple[str, int], ...]
    prefix: str = ""

    @classmethod
    def parse(cls, url: str, default_port: int = 2379) -> StoreURL:
        """Raise :class:`~dockyard.errors.InvalidArgument` naming what is wrong with ``url``."""
        from dockyard.errors import InvalidArgument

        scheme, sep, rest = url.strip().partition("://")
        if not sep or not scheme or not scheme.replace("-", "").isalnum():
            raise InvalidArgument(f"cluster store {url!r}: expected SCHEME://HOST:PORT[,HOST:PORT...]/PREFIX")
        hosts, _, prefix = rest.partition("/")
        endpoints: list[tuple[str, int]] = []
        for item in hosts.split(","):
            host, port = item.strip(), str(default_port)
            if host.startswith("["):  # [v6]:port
                host, _, tail = host[1:].partition("]")
                if tail.startswith(":"):
                    port = tail[1:]
            elif host.count(":") == 1:
                host, port = host.split(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InvalidArgument(f"cluster store {url!r}: bad endpoint {item!r} (HOST:PORT)")
            endpoints.append((host, int(port)))
        return cls(scheme.lower(), tuple(endpoints), prefix.strip("/"))

    def __str__(self) -> str:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)
        return f"{self.scheme}://{hosts}/{self.prefix}"


@dataclass(frozen=True)
class KeyValue:
    """A key as read: its value and etcd's revisions (``mod_revision`` is what a
    compare-and-swap compares; ``create_revision`` 0 never occurs for a present key)."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 0  # number of puts since creation
    lease: int = 0  # lease id, 0 = none

    def json(self) -> Any:
        import json

        return json.loads(self.value)


@dataclass(frozen=True)
class Listing:
    """Keys under a prefix (sorted by key) and the store revision they were read at: watch
    from ``revision + 1`` to see every change after the listing."""

    items: list[KeyValue]
    revision: int

    def __iter__(self) -> Iterator[KeyValue]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction on ``key``: ``target op value``, etcd's Compare.

    ``target``: ``mod`` (mod revision), ``create`` (create revision), ``version`` or ``value``.
    An absent key has revisions and version 0. Use the constructors.
    """

    key: str
    target: Literal["mod", "create", "version", "value"]
    op: Literal["==", "!=", "<", ">"]
    value: int | bytes

    @classmethod
    def absent(cls, key: str) -> Compare:
        """Create-if-absent: the key does not exist."""
        return cls(key, "create", "==", 0)

    @classmethod
    def unchanged(cls, key: str, mod_revision: int) -> Compare:
        """Compare-and-swap: ``key`` was last changed at ``mod_revision`` (0: is absent)."""
        return cls(key, "mod", "==", mod_revision)

    @classmethod
    def value_is(cls, key: str, value: bytes) -> Compare:
        return cls(key, "value", "==", value)


@dataclass(frozen=True)
class Put:
    """Set ``key`` (on ``lease`` when non-zero: deleted when the lease expires)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    """Delete ``key``, or every key starting with it when ``prefix``."""

    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Get:
    """Read ``key`` (or every key under it when ``prefix``) inside the transaction."""

    key: str
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True)
class TxnResult:
    """``succeeded``: every compare held and the ``success`` ops ran (else ``failure``'s).
    ``results``: one list per op that ran, in order: the keys a ``Get`` read, ``[]`` for the
    others. ``revision``: the store's revision after the transaction."""

    succeeded: bool
    revision: int
    results: list[list[KeyValue]] = field(default_factory=list)

    def check(self, what: str = "transaction") -> TxnResult:
        """Raise :class:`~dockyard.errors.TxnFailed` when a compare failed; else self."""
        if not self.succeeded:
            from dockyard.errors import TxnFailed

            raise TxnFailed(f"{what}: a compared key changed (lost a race)")
        return self


@dataclass(frozen=True)
class Lease:
    """A lease: keys put on it are deleted when it expires or is revoked."""

    id: int
    ttl: int  # seconds granted (a store may round it up to its minimum)


@dataclass(frozen=True)
class WatchEvent:
    """One change under a watched prefix. For ``delete``, ``kv.value`` is ``b""`` and
    ``kv.mod_revision`` is the revision of the deletion."""

    type: Literal["put", "delete"]
    kv: KeyValue

    @property
    def key(self) -> str:
        return self.kv.key

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class ClusterStore(Driver):
    """The ABC of a cluster store (``dockyard.drivers.cluster``), selected by the scheme of
    the ``cluster-store`` URL (:class:`StoreURL`).

    The kernel readies the configured store at start (``setup()`` connects; an unreachable
    store raises :class:`~dockyard.errors.StoreUnavailable` and the daemon refuses to start)
    and hands it out: ``await kernel.cluster_store()``, and to drivers of other areas as
    ``context.need(ClusterStore)``. Every method may raise ``StoreUnavailable`` when no
    endpoint answers within the store's timeout; a store reconnects by itself (another
    endpoint, or the same one after a restart), so a later call can succeed.

    .. versionadded:: 0.2
    """

    @property
    def url(self) -> StoreURL:
        """The ``cluster-store`` URL this store serves (from ``context.daemon_config``)."""
        return StoreURL.parse(str(self.context.daemon_config.get("cluster-store") or ""))

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """``key`` with its revisions; ``None`` when absent."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, lease: Lease | int = 0) -> int:
        """Set ``key`` (on ``lease``: deleted when it ends); the revision of the change.
        A lease that has expired raises :class:`~dockyard.errors.LeaseNotFound`."""

    @abc.abstractmethod
    async def delete(self, key: str, prefix: bool = False) -> int:
        """Delete ``key`` (every key under it when ``prefix``); how many keys were deleted."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> Listing:
        """Every key starting with ``prefix`` (``""``: all), sorted, and the read's revision."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        """Atomically: if every compare holds, run ``success``, else ``failure``. Two racing
        transactions comparing the same key never both succeed."""

    @abc.abstractmethod
    async def grant(self, ttl: int) -> Lease:
        """A new lease of ``ttl`` seconds."""

    @abc.abstractmethod
    async def keepalive(self, lease: Lease | int) -> int:
        """Refresh ``lease``; its remaining TTL. An expired or revoked lease raises
        :class:`~dockyard.errors.LeaseNotFound` (its keys are gone: grant anew, put again)."""

    @abc.abstractmethod
    async def revoke(self, lease: Lease | int) -> None:
        """End ``lease`` now, deleting its keys. An unknown lease is not an error."""

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Changes to keys under ``prefix``, in revision order, from ``start_revision``
        (0: from now on). Across a reconnect the watch resumes after the last revision it
        delivered, so nothing is missed nor repeated. When history from that revision has been
        compacted away it raises :class:`~dockyard.errors.StoreCompacted`: list again and
        watch from the listing's revision + 1. Close it with ``aclose()`` (or break out)."""



async def follow(store: ClusterStore, prefix: str, start_revision: int,
                 on_event: Callable[[WatchEvent], Awaitable[None]],
                 on_relist: Callable[[Listing], Awaitable[None]], *,
                 name: str, pause: float = 0.5) -> None:
    """Follow the keys under ``prefix`` for good, from ``start_revision`` (usually the revision
    of the listing a cache was loaded from, plus one). Run it as a task; cancel it to stop.

    Every change goes to ``on_event``, in revision order. When the history from the next
    revision has been compacted away (:class:`~dockyard.errors.StoreCompacted`), the prefix is
    listed afresh and the listing handed to ``on_relist``, which reconciles the cache with it
    (announcing what differs); the watch then goes on from after the listing. Any other failure
    (a store reconnects by itself; a closed or unreachable one raises) is logged under ``name``
    and the watch opened again ``pause`` seconds later from where it stopped, relisting first if
    that is what failed. An ``on_event`` that raises does not see its event again."""
    revision, relist = start_revision, False
    while True:
        try:
            if relist:
                listing = await store.list(prefix)
                await on_relist(listing)
                revision, relist = listing.revision + 1, False
            async for ev in store.watch(prefix, revision):
                revision = ev.revision + 1
                await on_event(ev)
        except asyncio.CancelledError:
            raise
        except StoreCompacted:
            relist = True
        except Exception:  # noqa: BLE001 - logged; the store reconnects by itself
            _log.warning("%s: following %r in the cluster store failed; following again", name, prefix,
                         exc_info=True)
            await asyncio.sleep(pause)


class KeptLease:
    """A lease an engine keeps alive, with the keys it puts on it put again when it expired.

    The store forgets a lease whose holder stood still longer than its TTL (the store, or this
    engine, stalled), and the keys on it go with it. :meth:`grant` takes the lease and starts
    the keepalive (every ``ttl / 3`` s). The keepalive and a write that meets the expiry first
    both come to :meth:`renew`, one at a time, so one new lease is taken and ``republish`` puts
    every key the holder has on it (the holder's own records are what it republishes, so
    nothing is kept twice). :meth:`close` stops the keepalive without revoking: running
    containers keep their records until the lease expires or the next start takes them over.
    """

    def __init__(self, store: ClusterStore, ttl: int, republish: Callable[[int], Awaitable[None]], *,
                 name: str) -> None:
        self.store, self.ttl, self.name = store, max(2, ttl), name
        self._republish = republish  # (new lease id) -> puts every key of the holder on it
        self._id = 0
        self._lock = asyncio.Lock()  # one grant or renewal at a time
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        """The current lease (0 before :meth:`grant`)."""
        return self._id

    async def grant(self) -> int:
        """Take the lease if not taken yet and keep it alive; its id. Callers racing at first
        use share one lease."""
        if self._id and self._task is not None:
            return self._id
        async with self._lock:
            if not self._id:
                self._id = (await self.store.grant(self.ttl)).id
            if self._task is None:
                self._task = asyncio.create_task(self._keepalive(), name=f"{self.name}-lease")
            return self._id

    async def renew(self, expired: int) -> int:
        """A new lease in place of ``expired``, with the holder's keys put again on it; the
        current one when it is no longer ``expired`` (renewed already)."""
        async with self._lock:
            if self._id != expired:
                return self._id
            _log.warning("%s: the cluster lease expired; putting this engine's keys again", self.name)
            lease = (await self.store.grant(self.ttl)).id
            await self._republish(lease)  # a failure leaves the expired id: the next call renews again
            self._id = lease
            return lease

    async def put(self, key: str, value: bytes, still: Callable[[], bool] = lambda: True) -> None:
        """Put ``key`` on the lease. On an expired lease: renew, and put it again on the new
        one if ``still()`` (the holder still wants it: it may have been removed meanwhile)."""
        lease = self._id
        try:
            await self.store.put(key, value, lease)
        except LeaseNotFound:
            lease = await self.renew(lease)
            if still():
                await self.store.put(key, value, lease)

    async def close(self) -> None:
        """Stop the keepalive (the lease is not revoked)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            lease = self._id
            try:
                try:
                    await self.store.keepalive(lease)
                except LeaseNotFound:
                    await self.renew(lease)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the store reconnects by itself: next round (a failed
                # renewal included: the lease is still the expired one, so the next round renews)
                _log.warning("%s: could not refresh the cluster lease", self.name, exc_info=True)


class ClusterSpecs:
    """Hook specifications of the ``cluster`` area."""

    @hookspec
    def dockyard_scheduler_filters(self, kernel: Kernel) -> Iterable[SchedulerFilter]:
        """Scheduler filters this plugin provides. All results are collected; names are unique.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_scheduler_strategies(self, kernel: Kernel) -> Iterable[SchedulerStrategy]:
        """Scheduler strategies this plugin provides (``spread``, ``binpack``, ``random``...).

        .. versionadded:: 0.1
        """
