"""``dockyard.scheduler.Scheduler`` with minimal filters and strategies of the test's own: the
kept orders follow every change, hints narrow the nodes looked at, refusals name filters."""

from __future__ import annotations

import pytest

from dockyard import scheduler as sched_mod
from dockyard.errors import InvalidArgument
from dockyard.scheduler import NoNodeAvailable, Scheduler
from dockyard.specs.cluster import (
    FilterCheck,
    Node,
    NodeContainer,
    PlacementRequest,
    SchedulerFilter,
    SchedulerStrategy,
)

FEWEST = SchedulerStrategy("fewest", lambda req, oc: lambda n: len(n.containers))  # a plain (non-tuple) key


def zone_filter(req: PlacementRequest) -> FilterCheck | None:
    zones = [c.split("==")[1] for c in req.constraints]
    if not zones:
        return None
    return FilterCheck(lambda n: None if n.labels.get("zone") in zones else f"zone is {n.labels.get('zone')}",
                       index=tuple(("zone", z) for z in zones))


ZONE = SchedulerFilter("zone", zone_filter)


def pool(n: int = 200) -> list[Node]:
    return [Node(f"n{i:03d}", labels={"zone": f"z{i % 2}"}, cpus=4, memory=1 << 30) for i in range(n)]


def test_kept_order_follows_reservations_releases_and_node_changes():
    s = Scheduler(FEWEST, [ZONE], pool())
    first = []
    for i in range(200):
        first.append(s.place(PlacementRequest(f"c{i}"))[0].name)
        s.reserve(first[-1], NodeContainer(f"c{i}", f"c{i}"))
    assert first == sorted(first) and len(set(first)) == 200  # every node gets one before any gets two
    assert len(s.place(PlacementRequest("x"))[0].containers) == 1
    s.release("n150", "c150")
    assert s.place(PlacementRequest("y"))[0].name == "n150"
    s.remove_node("n150")
    assert s.place(PlacementRequest("y"))[0].name != "n150"
    s.update(Node("n999", labels={"zone": "z1"}))
    assert s.place(PlacementRequest("z", constraints=["zone==z1"]))[0].name == "n999"
    s.update(Node("n999", labels={"zone": "z0"}))  # moved zones: in the z0 order now, not z1's
    assert s.place(PlacementRequest("z", constraints=["zone==z0"]))[0].name == "n999"
    assert s.place(PlacementRequest("z", constraints=["zone==z1"]))[0].name != "n999"


def test_hint_narrows_and_refusal_names_filters(monkeypatch):
    s = Scheduler(FEWEST, [ZONE], pool(10))
    with pytest.raises(NoNodeAvailable) as info:
        s.place(PlacementRequest("c", constraints=["zone==z7"]))
    assert info.value.reasons["n003"] == "zone: zone is z1"
    monkeypatch.setattr(sched_mod, "REFUSAL_CHECKS", 3)
    with pytest.raises(NoNodeAvailable, match="no node can take container 'c': 10 nodes \\(n000, n001, ...\\): "
                                              "zone: zone is not z7"):
        s.place(PlacementRequest("c", constraints=["zone==z7"]))


def test_resources_and_overcommit():
    s = Scheduler(FEWEST, [], [Node("n", cpus=2, memory=1 << 30)], overcommit=0.5)
    assert s.place(PlacementRequest(cpus=3))[0].name == "n"
    with pytest.raises(NoNodeAvailable, match="n: resources: needs 4 CPUs, 3 of 2 free"):
        s.place(PlacementRequest(cpus=4))
    with pytest.raises(NoNodeAvailable, match="needs 2 GiB of memory, 1.5 GiB of 1 GiB free"):
        s.place(PlacementRequest(memory=2 << 30))
    with pytest.raises(InvalidArgument, match="overcommit must be >= 0"):
        Scheduler(FEWEST, [], [], overcommit=-1)
    with pytest.raises(InvalidArgument, match="no node named 'zz'"):
        s.reserve("zz", NodeContainer("x"))


def test_orders_beyond_the_memory_cap_are_dropped_and_remade(monkeypatch):
    monkeypatch.setattr(sched_mod, "MAX_ENTRIES", 250)  # room for one order of 200 nodes
    s = Scheduler(FEWEST, [ZONE], pool())
    shapes = [PlacementRequest(f"c{i}", cpus=i % 3) for i in range(30)]
    for i, req in enumerate(shapes):
        node = s.place(req)[0]
        assert node.name == f"n{i:03d}"  # fewest containers first, by name
        s.reserve(node, NodeContainer(req.name))
        assert sum(len(o.heap) for shapes in s._heaps.values() for o in shapes.values()) <= 250 + 64
