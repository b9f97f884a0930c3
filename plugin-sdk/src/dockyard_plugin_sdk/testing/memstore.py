"""An in-memory :class:`~dockyard.specs.cluster.ClusterStore`: the store's contract without etcd.

For unit tests of code that uses the cluster store (the scheduler's state updates, membership,
placement): ``MemoryClusterStore.open()`` gives a ready store; ``store.share()`` another store on
the same data (a second manager racing the first). Revisions, compare-and-swap transactions,
leases (expiring on the monotonic clock, checked at every call and by a timer) and watches
from a revision (the whole history is kept) behave as etcd's do, in one process. The SDK's
cluster-store kit runs against it (``plugin-sdk/tests/test_conformance_cluster.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.errors import LeaseNotFound
from dockyard.specs import DriverContext, DriverInfo
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

__all__ = ["MemoryClusterStore"]


@dataclass
class _Data:
    """What stores shared through :meth:`MemoryClusterStore.share` hold in common."""

    revision: int = 1
    keys: dict[str, KeyValue] = field(default_factory=dict)
    leases: dict[int, tuple[int, float]] = field(default_factory=dict)  # id -> (ttl, deadline)
    history: list[WatchEvent] = field(default_factory=list)
    changed: asyncio.Condition | None = None
    next_lease: int = 0x1000


def _lease_id(lease: Lease | int) -> int:
    return lease.id if isinstance(lease, Lease) else int(lease)


def _compare(kv: KeyValue | None, c: Compare) -> bool:
    if c.target == "value":
        if kv is None:
            return False
        actual: int | bytes = kv.value
    else:
        actual = 0 if kv is None else {"mod": kv.mod_revision, "create": kv.create_revision,
                                       "version": kv.version}[c.target]
    want = c.value
    return {"==": actual == want, "!=": actual != want,
            "<": actual < want, ">": actual > want}[c.op]  # type: ignore[operator]


class MemoryClusterStore(ClusterStore):
    """The cluster store in this process's memory (``memory://local/PREFIX``; test only)."""

    info = DriverInfo(name="memory", kind="cluster", description="in-memory cluster store (tests)")

    def __init__(self, context: DriverContext, data: _Data | None = None) -> None:
        super().__init__(context)
        self._data = data or _Data()

    @classmethod
    async def open(cls, path: Path | str = "/nonexistent") -> MemoryClusterStore:
        """A ready store (nothing is written to ``path``)."""
        store = cls(DriverContext(data_dir=Path(path), run_dir=Path(path), owner="dymem00",
                                  daemon_config={"cluster-store": "memory://local/"}))
        await store.setup()
        return store

    def share(self) -> MemoryClusterStore:
        """Another store on the same keys, leases and history."""
        return type(self)(self.context, self._data)

    # ------------------------------------------------------------------ internals
    def _expire(self) -> None:
        now = time.monotonic()
        for lease_id in [i for i, (_ttl, deadline) in self._data.leases.items() if deadline <= now]:
            self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        if self._data.leases.pop(lease_id, None) is None:
            return
        doomed = [k for k, kv in self._data.keys.items() if kv.lease == lease_id]
        if doomed:
            self._data.revision += 1
            for k in doomed:
                self._remove(k)
            self._notify()

    def _remove(self, key: str) -> None:
        del self._data.keys[key]
        self._data.history.append(WatchEvent("delete", KeyValue(key, b"", self._data.revision)))

    def _set(self, key: str, value: bytes, lease: Lease | int) -> None:
        lease_id = _lease_id(lease)
        if lease_id and lease_id not in self._data.leases:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        old = self._data.keys.get(key)
        rev = self._data.revision
        kv = KeyValue(key, bytes(value), rev, old.create_revision if old else rev,
                      (old.version if old else 0) + 1, lease_id)
        self._data.keys[key] = kv
        self._data.history.append(WatchEvent("put", kv))

    def _notify(self) -> None:
        cond = self._data.changed
        if cond is not None:
            async def wake() -> None:
                async with cond:
                    cond.notify_all()
            asyncio.get_running_loop().create_task(wake())

    def _under(self, prefix: str) -> list[KeyValue]:
        return [self._data.keys[k] for k in sorted(self._data.keys) if k.startswith(prefix)]

    # ------------------------------------------------------------------ keys
    async def get(self, key: str) -> KeyValue | None:
        self._expire()
        return self._data.keys.get(key)

    async def put(self, key: str, value: bytes, lease: Lease | int = 0) -> int:
        return (await self.txn([], [Put(key, value, _lease_id(lease))])).revision

    async def delete(self, key: str, prefix: bool = False) -> int:
        self._expire()
        doomed = self._under(key) if prefix else [kv for kv in [self._data.keys.get(key)] if kv]
        await self.txn([], [Delete(key, prefix)])
        return len(doomed)

    async def list(self, prefix: str) -> Listing:
        self._expire()
        return Listing(self._under(prefix), self._data.revision)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        self._expire()
        ok = all(_compare(self._data.keys.get(c.key), c) for c in compares)
        ops = success if ok else failure
        for op in ops:  # check before changing anything: all or nothing
            if isinstance(op, Put) and op.lease and _lease_id(op.lease) not in self._data.leases:
                raise LeaseNotFound(f"lease {_lease_id(op.lease):x} not found")
        writes = any(isinstance(op, Put) or (isinstance(op, Delete) and (
            self._under(op.key) if op.prefix else op.key in self._data.keys)) for op in ops)
        if writes:
            self._data.revision += 1
        results: list[list[KeyValue]] = []
        for op in ops:
            if isinstance(op, Get):
                results.append(self._under(op.key) if op.prefix else
                               [kv for kv in [self._data.keys.get(op.key)] if kv])
                continue
            if isinstance(op, Put):
                self._set(op.key, op.value, op.lease)
            elif isinstance(op, Delete):
                for kv in (self._under(op.key) if op.prefix else
                           [kv for kv in [self._data.keys.get(op.key)] if kv]):
                    self._remove(kv.key)
            results.append([])
        if writes:
            self._notify()
        return TxnResult(ok, self._data.revision, results)

    # ------------------------------------------------------------------ leases
    async def grant(self, ttl: int) -> Lease:
        self._data.next_lease += 1
        lease_id = self._data.next_lease
        self._data.leases[lease_id] = (ttl, time.monotonic() + ttl)
        asyncio.get_running_loop().call_later(ttl + 0.05, self._expire)
        return Lease(lease_id, ttl)

    async def keepalive(self, lease: Lease | int) -> int:
        self._expire()
        lease_id = _lease_id(lease)
        if lease_id not in self._data.leases:
            raise LeaseNotFound(f"lease {lease_id:x} has expired or was revoked")
        ttl = self._data.leases[lease_id][0]
        self._data.leases[lease_id] = (ttl, time.monotonic() + ttl)
        asyncio.get_running_loop().call_later(ttl + 0.05, self._expire)
        return ttl

    async def revoke(self, lease: Lease | int) -> None:
        self._drop_lease(_lease_id(lease))

    # ------------------------------------------------------------------ watch
    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        if self._data.changed is None:
            self._data.changed = asyncio.Condition()
        cond = self._data.changed
        next_revision = start_revision if start_revision > 0 else self._data.revision + 1
        seen = 0
        while True:
            history = self._data.history
            while seen < len(history):
                ev = history[seen]
                seen += 1
                if ev.revision >= next_revision and ev.key.startswith(prefix):
                    yield replace(ev)
            async with cond:
                if seen == len(self._data.history):
                    await cond.wait()
