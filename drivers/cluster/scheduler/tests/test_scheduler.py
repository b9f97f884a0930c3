"""Through a kernel as a manager uses it: hooks, selection and its errors; the refusal message;
and the scheduler's fast paths agreeing with a full ranking on a changing pool."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dockyard import scheduler
from dockyard.config import Config
from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.scheduler import NoNodeAvailable, Scheduler
from dockyard.specs.cluster import Node, NodeContainer, PlacementRequest
from dockyard_cluster_scheduler import hooks

from .conftest import make


def kernel(tmp_path: Path) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r")})
    return Kernel.build(cfg, plugins=[hooks], autoload=False, environ={})


def test_hooks_give_filters_and_strategies(tmp_path):
    k = kernel(tmp_path)
    assert list(scheduler.filters(k)) == ["affinity", "constraint", "containerslots", "dependency", "health", "platform",
                                        "port"]
    assert list(scheduler.strategies(k)) == ["binpack", "random", "spread"]
    s = Scheduler.from_kernel(k, nodes=[Node("n1"), Node("n2", containers=[NodeContainer("x")])])
    assert s.strategy.name == "spread" and s.place(PlacementRequest("web"))[0].name == "n1"
    nodes = [Node("n1", labels={"storage": "ssd"}), Node("n2")]
    assert [n.name for n in scheduler.place(k, PlacementRequest(constraints=["storage==ssd"]), nodes)] == ["n1"]


@pytest.mark.parametrize(("strategy", "enabled", "message"), [
    ("fastest", None, "unknown scheduling strategy 'fastest'; installed: binpack, random, spread"),
    ("spread", ["health", "gpu"], "unknown scheduler filter\\(s\\) 'gpu'; installed: affinity, constraint, "
                                  "containerslots, dependency, health, platform, port"),
])
def test_unknown_names_are_invalid(tmp_path, strategy, enabled, message):
    with pytest.raises(InvalidArgument, match=message):
        Scheduler.from_kernel(kernel(tmp_path), strategy, enabled)


def test_malformed_expressions_are_invalid(tmp_path):
    s = Scheduler.from_kernel(kernel(tmp_path), nodes=[Node("n1")])
    with pytest.raises(InvalidArgument, match="constraint 'storage=ssd': one of the operators ==, != is expected"):
        s.place(PlacementRequest(constraints=["storage=ssd"]))
    with pytest.raises(InvalidArgument, match="affinity 'container==/\\(/': invalid regular expression"):
        s.place(PlacementRequest(affinities=["container==/(/"]))


def test_refusal_names_the_filter_that_removed_each_node(tmp_path):
    nodes = [Node("h1", labels={"storage": "disk"}, cpus=4),
             Node("h2", labels={"storage": "ssd"}, cpus=4, healthy=False),
             Node("h3", labels={"storage": "ssd"}, cpus=4, containers=[NodeContainer("w", "web", ports=(("", 8080, "tcp"),))]),
             Node("h4", labels={"storage": "ssd"}, cpus=1, memory=1 << 30, reserved_cpus=1)]
    req = PlacementRequest("api", "nginx", cpus=0.5, constraints=["storage==ssd"], ports=[("", 8080, "tcp")])
    with pytest.raises(NoNodeAvailable) as info:
        Scheduler.from_kernel(kernel(tmp_path), nodes=nodes).place(req)
    assert str(info.value) == (
        "no node can take container 'api': "
        "h1: constraint: storage==ssd not met (storage='disk'); "
        "h2: health: node is unhealthy; "
        "h3: port: host port 8080/tcp already bound on 0.0.0.0; "
        "h4: resources: needs 0.5 CPUs, 0.05 of 1 free")
    assert info.value.reasons["h2"] == "health: node is unhealthy"


def test_refusal_on_an_empty_pool(tmp_path):
    with pytest.raises(NoNodeAvailable, match="no node can take a container of 'redis': the pool has no nodes"):
        Scheduler.from_kernel(kernel(tmp_path)).place(PlacementRequest(image="redis"))


@pytest.mark.parametrize("strategy", ["spread", "binpack"])
def test_fast_paths_agree_with_a_full_ranking(strategy):
    """Kept orders, index hints and pattern domains give the node a full filter-and-sort
    gives, while the pool changes: placements, releases, a node refreshed, one dropped and
    one added."""
    rng = random.Random(15)
    nodes = [Node(f"n{i:03d}", labels={"zone": f"z{i % 4}", "rack": f"r{i % 20}"}, cpus=8, memory=16 << 30,
                  healthy=i % 37 != 0) for i in range(400)]
    sched = make(nodes, strategy)
    placed: list[tuple[str, str]] = []
    for i in range(400):
        cons = rng.choice([[], [f"zone==z{rng.randrange(4)}"], ["rack==/r1[0-9]/"], ["zone!=z0", "rack==r1*"],
                           [f"node==n{rng.randrange(400):03d}"], ["zone==~z9"]])
        req = PlacementRequest(f"c{i}", "img", cpus=rng.choice((0.5, 1.0)), memory=rng.choice((1, 2)) << 30,
                               constraints=cons, ports=[("", 80, "tcp")] if rng.random() < 0.2 else [])
        try:
            full = sched.place(req, limit=None)
        except NoNodeAvailable:
            with pytest.raises(NoNodeAvailable):
                sched.place(req)
            continue
        fast = sched.place(req, limit=3)
        assert [n.name for n in fast] == [n.name for n in full[:3]], (i, cons)
        sched.reserve(fast[0], NodeContainer(f"id{i}", req.name, "img", ports=tuple(req.ports), cpus=req.cpus,
                                             memory=req.memory))
        placed.append((fast[0].name, req.name))
        if i % 50 == 49:
            node, name = placed.pop(rng.randrange(len(placed)))
            sched.release(node, name)
        if i == 200:
            fresh = Node("n005", labels={"zone": "z1", "rack": "r15"}, cpus=8, memory=16 << 30)
            for c in sched.nodes["n005"].containers:
                fresh.add(c)
            sched.update(fresh)
            sched.remove_node("n010")
            sched.update(Node("n400", labels={"zone": "z2", "rack": "r11"}, cpus=8, memory=16 << 30))
            placed = [(n, c) for n, c in placed if n != "n010"]
