"""Manager HA: one leader among replicated managers, elected through the cluster store.

``dockyard swarm manage --replication --advertise ADDR:PORT`` (daemon keys ``replication`` and
``cluster-advertise``): each replica takes a lease of ``replication-ttl`` seconds and tries to
create ``leader`` = its advertise address on that lease, only if absent (one transaction: two
replicas never both win). The winner keeps its lease alive; the others watch the key and try
again the moment it is deleted, which happens when the leader's lease expires (it died) or is
revoked (it stopped cleanly). A replica that cannot refresh its lease in time steps down.

A manager without ``replication`` always leads. Non-leaders proxy API requests to the leader
(:mod:`dockyard_swarm.leader_proxy`); leader-only work (rescheduling) waits for
:meth:`Leadership.leading`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument, LeaseNotFound, StoreUnavailable
from dockyard.services import Service
from dockyard.specs.cluster import Compare, Get, Put
from dockyard_swarm.membership_agent import resolve_advertise
from dockyard_swarm.tasks import cancel_all

if TYPE_CHECKING:
    from dockyard.specs.cluster import ClusterStore, Lease
    from dockyard_swarm.leader_proxy import LeaderProxy

log = logging.getLogger("dockyard.swarm.leader")

LEADER = "leader"
#: ``replication-ttl``: a dead leader is replaced within this many seconds (Swarm classic's was 15).
DEFAULT_TTL = 4


class Leadership(Service):
    """The manager's ``leadership`` service: who leads, and whether this replica does."""

    name = "leadership"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        config = kernel.config
        self.replicated = bool(config.get("replication"))
        self.ttl = int(config.get("replication-ttl") or DEFAULT_TTL)
        self.advertise = ""
        self.leader: str = ""  # the leader's advertise address ("" while unknown)
        self._leading = asyncio.Event()
        self._changed = asyncio.Event()
        self._lease: Lease | None = None
        self._task: asyncio.Task[None] | None = None
        self._store: ClusterStore | None = None
        self._proxy: LeaderProxy | None = None

    @property
    def proxy(self) -> LeaderProxy:
        """The forwarder of this replica's API requests to the leader."""
        if self._proxy is None:
            from dockyard_swarm.leader_proxy import LeaderProxy

            self._proxy = LeaderProxy(self.kernel)
        return self._proxy

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def start(self) -> None:
        raw = str(self.kernel.config.get("cluster-advertise") or "")
        if self.replicated and not raw:
            raise InvalidArgument("replication needs the manager's --advertise ADDR:PORT (cluster-advertise)")
        if self.ttl < 2:
            raise InvalidArgument(f"replication-ttl {self.ttl}: at least 2 seconds")
        self.advertise = resolve_advertise(raw) if raw else ""
        if not self.replicated:
            self.leader = self.advertise
            self._leading.set()
            return
        self._store = await self.kernel.cluster_store()
        self._task = asyncio.create_task(self._campaign(), name="swarm-leader-election")

    async def stop(self) -> None:
        await cancel_all([self._task])
        self._task = None
        if self._lease is not None and self._store is not None:
            # a clean stop hands over at once: revoking deletes ``leader`` and a replica's watch fires
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._store.revoke(self._lease), 2)
            self._lease = None
        self._leading.clear()
        if self._proxy is not None:
            await self._proxy.close()

    async def leading(self) -> None:
        """Return once this replica leads."""
        await self._leading.wait()

    async def lost(self) -> None:
        """Return once this replica no longer leads (wait in a task beside leader-only work)."""
        while self._leading.is_set():
            self._changed.clear()
            await self._changed.wait()

    def _set(self, leading: bool, leader: str) -> None:
        if leading != self._leading.is_set() or leader != self.leader:
            log.info("%s: leader is %s", "leading" if leading else "replica", leader or "unknown")
        self.leader = leader
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        self._changed.set()

    # ------------------------------------------------------------------ election
    async def _campaign(self) -> None:
        assert self._store is not None
        while True:
            try:
                await self._round()
            except StoreUnavailable as exc:
                log.warning("leader election: cluster store unavailable: %s", exc)
                await asyncio.sleep(min(1.0, self.ttl / 4))

    async def _round(self) -> None:
        store = self._store
        assert store is not None
        if self._lease is None:
            self._lease = await store.grant(self.ttl)
        value = self.advertise.encode()
        res = await store.txn([Compare.absent(LEADER)], [Put(LEADER, value, self._lease.id)], [Get(LEADER)])
        if res.succeeded:
            self._set(True, self.advertise)
            await self._hold()
            return
        # another replica leads (or our own key from before a restart on this address, whose
        # lease ends within the TTL): follow it, and wait for the key to go
        current = res.results[0][0] if res.results and res.results[0] else None
        self._set(False, current.value.decode() if current is not None else "")
        # keep our lease alive while we wait, so winning needs no grant
        await self._await_vacancy(res.revision)

    async def _hold(self) -> None:
        """Keep the leader lease; step down when it cannot be refreshed in time."""
        store = self._store
        assert store is not None and self._lease is not None
        period = max(0.5, self.ttl / 3)
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(period)
            try:
                await store.keepalive(self._lease)
                last_ok = asyncio.get_running_loop().time()
            except LeaseNotFound:
                log.warning("leader lease lost: stepping down")
                self._lease = None
                self._set(False, "")
                return
            except StoreUnavailable as exc:
                if asyncio.get_running_loop().time() - last_ok >= self.ttl - period:
                    log.warning("leader lease not refreshed within its TTL: stepping down (%s)", exc)
                    self._lease = None
                    self._set(False, "")
                    return

    async def _await_vacancy(self, revision: int) -> None:
        """Watch ``leader`` until it is deleted, refreshing our own lease meanwhile."""
        store = self._store
        assert store is not None

        async def refresh() -> None:
            while True:
                await asyncio.sleep(max(0.5, self.ttl / 3))
                try:
                    if self._lease is not None:
                        await store.keepalive(self._lease)
                except LeaseNotFound:
                    self._lease = None
                    return
                except StoreUnavailable:
                    pass

        keeper = asyncio.create_task(refresh())
        try:
            async for event in store.watch(LEADER, revision + 1):
                if event.key != LEADER:
                    continue
                if event.type == "delete":
                    return
                self._set(False, event.kv.value.decode())
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

