"""Strategies: Swarm classic's documented examples (docs/scheduler/strategy.md) and the
issue's: nine containers on three nodes land 3/3/3 under spread and fill one node under binpack."""

from __future__ import annotations

import collections

import pytest

from dockyard.scheduler import NoNodeAvailable
from dockyard.specs.cluster import Node, NodeContainer, PlacementRequest

from .conftest import make

GIB = 1 << 30


def run(sched, requests) -> list[str]:
    """Place and reserve each request; the node names chosen, in order."""
    out = []
    for req in requests:
        node = sched.place(req)[0]
        sched.reserve(node, NodeContainer(f"id-{req.name}", req.name, req.image, cpus=req.cpus, memory=req.memory))
        out.append(node.name)
    return out


def nine() -> list[PlacementRequest]:
    return [PlacementRequest(f"c{i}", "busybox") for i in range(9)]


def three() -> list[Node]:
    return [Node(f"h{i}", cpus=2, memory=2 * GIB) for i in (1, 2, 3)]


def test_spread_nine_land_three_three_three():
    assert collections.Counter(run(make(three()), nine())) == {"h1": 3, "h2": 3, "h3": 3}


def test_binpack_fills_one_node_first():
    assert set(run(make(three(), "binpack"), nine())) == {"h1"}


@pytest.mark.parametrize(("strategy", "expected"), [
    # docs: two 2 GiB nodes; `-m 1G` db, then frontend: spread puts them apart, binpack together,
    # and binpack's third goes to the other node (the first one is full)
    ("spread", ["h1", "h2", "h1"]),
    ("binpack", ["h1", "h1", "h2"]),
])
def test_memory_reservations(strategy, expected):
    nodes = [Node("h1", cpus=2, memory=2 * GIB), Node("h2", cpus=2, memory=2 * GIB)]
    reqs = [PlacementRequest(n, "mysql", memory=GIB) for n in ("db", "frontend", "third")]
    assert run(make(nodes, strategy), reqs) == expected


def test_spread_prefers_the_least_reserved_relative_to_its_size():
    big = Node("big", cpus=16, memory=64 * GIB, reserved_cpus=4)  # 25 % of its CPUs used
    small = Node("small", cpus=2, memory=64 * GIB)  # 1 CPU is 50 % of it
    assert make([small, big]).place(PlacementRequest(cpus=1))[0].name == "big"
    assert make([small, big], "binpack").place(PlacementRequest(cpus=1))[0].name == "small"


def test_ties_go_to_fewer_containers_under_spread_and_more_under_binpack():
    nodes = [Node("a", containers=[NodeContainer("x1"), NodeContainer("x2")]), Node("b", containers=[NodeContainer("y1")])]
    assert make(nodes).place(PlacementRequest())[0].name == "b"
    assert make(nodes, "binpack").place(PlacementRequest())[0].name == "a"


def test_unhealthy_nodes_rank_last_when_health_is_not_filtered():
    nodes = [Node("sick", healthy=False), Node("well", containers=[NodeContainer("x")])]
    assert make(nodes, filters=[]).place(PlacementRequest())[0].name == "well"


def test_random_picks_among_survivors():
    nodes = [Node(f"n{i}", labels={"ok": "yes" if i < 3 else "no"}) for i in range(6)]
    sched = make(nodes, "random", seed=7)
    picked = collections.Counter(sched.place(PlacementRequest(constraints=["ok==yes"]))[0].name for _ in range(60))
    assert set(picked) == {"n0", "n1", "n2"}


@pytest.mark.parametrize(("overcommit", "fits"), [(0.05, True), (0.0, False)])
def test_overcommit(overcommit, fits):
    node = Node("n", cpus=4, memory=GIB)
    req = PlacementRequest("big", cpus=4.1, memory=int(1.04 * GIB))
    sched = make([node], overcommit=overcommit)
    if fits:
        assert sched.place(req)[0] is node
    else:
        with pytest.raises(NoNodeAvailable, match=r"n: resources: needs 4.1 CPUs, 4 of 4 free"):
            sched.place(req)


def test_reservations_fill_and_release_frees():
    sched = make([Node("n", cpus=2, memory=GIB)], overcommit=0)
    for i in range(2):
        sched.reserve("n", NodeContainer(f"c{i}", f"c{i}", cpus=1))
    with pytest.raises(NoNodeAvailable, match=r"needs 1 CPUs, 0 of 2 free"):
        sched.place(PlacementRequest(cpus=1))
    sched.release("n", "c0")
    assert sched.place(PlacementRequest(cpus=1))[0].name == "n"


def test_random_on_a_large_pool_draws_only_survivors():
    nodes = [Node(f"n{i:03d}", labels={"ok": "yes" if i % 3 == 0 else "no"}) for i in range(300)]
    sched = make(nodes, "random", seed=3)
    req = PlacementRequest(constraints=["ok!=no"])  # no index hint: drawn from all 300
    picked = collections.Counter(sched.place(req)[0].name for _ in range(200))
    assert all(int(name[1:]) % 3 == 0 for name in picked) and len(picked) > 50
    assert len({n.name for n in sched.place(req, limit=5)}) == 5
