"""The rescheduler's decisions, on the SDK's in-memory cluster store with stand-ins for the
manager's services (the real thing, through the docker CLI on netns hosts: test_failover.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from dockyard.errors import Conflict, NotFound
from dockyard.specs.cluster import Node
from dockyard_swarm.reschedule import CONTAINERS, RESCHEDULED, Rescheduler


class Services:
    """What the rescheduler asks the kernel for: nodes, containers, engines, emit."""

    def __init__(self, store: Any, live: list[str]) -> None:
        self.store, self.live = store, live
        self.events: list[tuple[str, str, str, dict[str, str]]] = []
        self.started: list[str] = []
        self.deleted: list[tuple[str, str]] = []
        self.refuse: set[str] = set()  # names no node can take

    # kernel
    def service(self, name: str) -> Any:
        return self

    def emit(self, type_: str, action: str, actor_id: str, **attributes: str) -> None:
        self.events.append((type_, action, actor_id, attributes))

    # nodes
    async def nodes(self) -> list[Node]:
        return [Node(name=n, engine_url=f"tcp://10.0.0.{i + 1}:2376") for i, n in enumerate(self.live)]

    # containers
    async def recreate(self, record: dict[str, Any], exclude: set[str]) -> str:
        if record["name"] in self.refuse:
            raise Conflict(f"no node can take {record['name']}")
        node = next(n for n in self.live if n not in exclude)
        new = f"new-{record['id']}"
        await self.store.put(f"{CONTAINERS}{new}", json.dumps({**record, "id": new, "node": node}).encode())
        await self.store.delete(f"{CONTAINERS}{record['id']}")
        return new

    async def start_container(self, ref: str) -> None:
        self.started.append(ref)

    # engines
    def for_node(self, node: Node) -> Any:
        services = self

        class Client:
            async def request(self, method: str, path: str, params: Any = None) -> None:
                services.deleted.append((node.name, path))
                if path.endswith("/gone"):
                    raise NotFound("no such container")

        return Client()


@pytest.fixture
async def env() -> Any:
    from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore

    store = await MemoryClusterStore.open()
    services = Services(store, ["h1", "h2"])
    r = Rescheduler(services)  # type: ignore[arg-type]
    r.store = store
    r._leading_since = time.monotonic() - 60  # past the start grace
    return store, services, r


async def record(store: Any, cid: str, node: str, name: str, env_: list[str] | None = None,
                 labels: dict[str, str] | None = None) -> None:
    doc = {"id": cid, "node": node, "name": name, "config": {"Image": "busybox", "Env": env_ or [],
                                                             "Labels": labels or {}}}
    await store.put(f"{CONTAINERS}{cid}", json.dumps(doc).encode())


async def test_a_dropped_nodes_opted_in_containers_move_and_the_rest_stay(env: Any) -> None:
    store, services, r = env
    await record(store, "a", "h3", "web", ["reschedule:on-node-failure"])
    await record(store, "b", "h3", "cache", labels={"com.docker.swarm.reschedule-policies": '["on-node-failure"]'})
    await record(store, "c", "h3", "db")
    await record(store, "d", "h1", "live", ["reschedule:on-node-failure"])
    moved = await r.sweep()
    assert sorted(moved) == ["new-a", "new-b"]
    assert sorted(services.started) == ["new-a", "new-b"]
    left = {kv.json()["name"]: kv.json()["node"] for kv in await store.list(CONTAINERS)}
    assert left == {"web": "h1", "cache": "h1", "db": "h3", "live": "h1"}
    marker = (await store.get(f"{RESCHEDULED}a")).json()
    assert (marker["node"], marker["new"], marker["to"], marker["name"]) == ("h3", "new-a", "h1", "web")
    assert [(t, a, attrs["from"], attrs["to"]) for t, a, _, attrs in services.events] == \
        [("container", "reschedule", "h3", "h1")] * 2
    assert await r.sweep() == []  # nothing twice


async def test_the_stale_copy_goes_when_the_node_returns(env: Any) -> None:
    store, services, r = env
    await record(store, "a", "h3", "web", ["reschedule:on-node-failure"])
    await record(store, "gone", "h3", "api", ["reschedule:on-node-failure"])
    await r.sweep()
    services.live.append("h3")  # back
    await r.sweep()
    assert sorted(services.deleted) == [("h3", "/containers/a"), ("h3", "/containers/gone")]
    assert len(await store.list(RESCHEDULED)) == 0


async def test_a_container_no_node_can_take_is_tried_again_only_when_the_pool_changes(env: Any) -> None:
    store, services, r = env
    services.refuse.add("pinned")
    await record(store, "p", "h3", "pinned", ["reschedule:on-node-failure"])
    assert await r.sweep() == []
    assert len(await store.list(RESCHEDULED)) == 0  # no marker left behind
    services.refuse.clear()
    assert await r.sweep() == []  # same pool: not tried again
    services.live.append("h4")
    assert await r.sweep() == ["new-p"]


async def test_a_new_leader_moves_nothing_during_its_start_grace(env: Any) -> None:
    store, services, r = env
    r._leading_since = time.monotonic()
    await record(store, "a", "h3", "web", ["reschedule:on-node-failure"])
    assert await r.sweep() == []
    r._leading_since = time.monotonic() - 60
    assert await r.sweep() == ["new-a"]
