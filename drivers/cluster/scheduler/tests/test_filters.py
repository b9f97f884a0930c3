"""Each filter, table-driven, with Swarm classic's documented examples (docs/scheduler/filter.md)."""

from __future__ import annotations

import pytest

from dockyard.scheduler import NoNodeAvailable
from dockyard.specs.cluster import Node, NodeContainer, PlacementRequest

from .conftest import make, names

ALL = {"node-1", "node-2", "node-3"}


def pool() -> list[Node]:
    """``docker -d --label storage=ssd``-style nodes, with engine fields and containers."""
    return [
        Node("node-1", id="ID1AAAA", labels={"storage": "ssd", "region": "us-east-1", "Zone": "a"},
             storage_driver="overlay2", kernel_version="6.1.0-28-amd64", operating_system="Debian GNU/Linux 12",
             architecture="x86_64",
             containers=[NodeContainer("aaa111bbb222", "frontend", "nginx:latest", "sha256:nginx1",
                                       ports=(("", 80, "tcp"),), labels={"com.example.type": "frontend"})]),
        Node("node-2", id="ID2BBBB", labels={"storage": "disk", "region": "us-west-2"},
             storage_driver="overlay2", kernel_version="5.10.0-33-amd64", operating_system="Ubuntu 22.04",
             architecture="aarch64",
             containers=[NodeContainer("ccc333ddd444", "redis1", "redis:7", "sha256:redis7",
                                       ports=(("127.0.0.1", 8080, "tcp"),))]),
        Node("node-3", id="ID3CCCC", labels={"storage": "ssd", "region": "eu-west-1"},
             storage_driver="vfs", kernel_version="6.1.0-28-amd64", operating_system="Debian GNU/Linux 12",
             architecture="x86_64",
             containers=[NodeContainer("eee555fff666", "dns", "coredns:1", ports=(("", 8080, "udp"),))]),
    ]


@pytest.mark.parametrize(("constraints", "expected"), [
    (["storage==ssd"], {"node-1", "node-3"}),
    (["storage!=ssd"], {"node-2"}),
    (["node==node-1"], {"node-1"}),
    (["node!=node-1"], {"node-2", "node-3"}),
    (["node==ID2BBBB"], {"node-2"}),  # the engine's ID
    (["region==us*"], {"node-1", "node-2"}),
    (["region!=us*"], {"node-3"}),
    (["node==/node-[12]/"], {"node-1", "node-2"}),
    ([r"node==/node-\d/"], ALL),
    (["node!=/node-[01]/"], {"node-2", "node-3"}),
    (["node==/(?i)NODE-1/"], {"node-1"}),
    (["storage==ssd", "region==eu*"], {"node-3"}),
    (["gpu!=yes"], ALL),  # no such label: != holds
    (["zone==a"], {"node-1"}),  # label keys compare in lower case
    (["storagedriver==overlay2"], {"node-1", "node-2"}),
    (["kernelversion==6.1*"], {"node-1", "node-3"}),
    (["operatingsystem==/Ubuntu/"], {"node-2"}),
    (["ostype==linux"], ALL),
    (["architecture==aarch64"], {"node-2"}),
    (["architecture==arm64"], {"node-2"}),  # the OCI spelling too
    (["architecture!=amd64"], {"node-2"}),
    (["storage==~ssd"], {"node-1", "node-3"}),  # soft, satisfiable: honoured
    (["storage==~nvme"], ALL),  # soft, unsatisfiable: dropped
    (["storage==~nvme", "region==eu*"], {"node-3"}),
])
def test_constraint(constraints, expected):
    assert names(make(pool(), filters=["constraint"]), PlacementRequest(constraints=constraints)) == expected


@pytest.mark.parametrize(("affinities", "expected"), [
    (["container==frontend"], {"node-1"}),
    (["container==aaa111bbb222"], {"node-1"}),
    (["container!=frontend"], {"node-2", "node-3"}),
    (["container==front*"], {"node-1"}),
    (["container!=~redis*"], {"node-1", "node-3"}),
    (["container==~nothere"], ALL),
    (["image==redis"], {"node-2"}),  # the repository matches its tags
    (["image==redis:7"], {"node-2"}),
    (["image==sha256:nginx1"], {"node-1"}),
    (["image==nginx*"], {"node-1"}),
    (["image!=redis"], {"node-1", "node-3"}),
    (["image==~busybox"], ALL),
    (["com.example.type==frontend"], {"node-1"}),  # a label of a container on the node
    (["com.example.type!=frontend"], {"node-2", "node-3"}),
])
def test_affinity(affinities, expected):
    assert names(make(pool(), filters=["affinity"]), PlacementRequest(affinities=affinities)) == expected


@pytest.mark.parametrize(("ports", "expected"), [
    ([("", 80, "tcp")], {"node-2", "node-3"}),  # node-1 binds 0.0.0.0:80
    ([("10.0.0.5", 80, "tcp")], {"node-2", "node-3"}),  # ... every address, so this one too
    ([("", 8080, "tcp")], {"node-1", "node-3"}),  # node-2 binds 127.0.0.1:8080: clashes with all
    ([("10.0.0.5", 8080, "tcp")], ALL),  # another address than node-2's
    ([("127.0.0.1", 8080, "tcp")], {"node-1", "node-3"}),
    ([("", 8080, "udp")], {"node-1", "node-2"}),  # protocols apart
    ([("", 80, "tcp"), ("", 8080, "tcp")], {"node-3"}),
    ([("", 9999, "tcp")], ALL),
])
def test_port(ports, expected):
    assert names(make(pool(), filters=["port"]), PlacementRequest(ports=ports)) == expected


def test_port_three_nodes_take_three_and_refuse_a_fourth():
    """Swarm's docs: ``docker run -d -p 80:80 nginx`` on three nodes; the fourth fails."""
    sched = make([Node(f"n{i}") for i in range(3)])
    placed = []
    for i in range(3):
        node = sched.place(PlacementRequest(f"web{i}", "nginx", ports=[("", 80, "tcp")]))[0]
        sched.reserve(node, NodeContainer(f"id{i}", f"web{i}", "nginx", ports=(("", 80, "tcp"),)))
        placed.append(node.name)
    assert sorted(placed) == ["n0", "n1", "n2"]
    with pytest.raises(NoNodeAvailable, match="no node can take container 'web3': n0, n1, n2: port: "
                                              "host port 80/tcp already bound on 0.0.0.0"):
        sched.place(PlacementRequest("web3", "nginx", ports=[("", 80, "tcp")]))


@pytest.mark.parametrize(("deps", "expected"), [
    (["frontend"], {"node-1"}),
    (["aaa111"], {"node-1"}),  # an ID prefix
    (["redis1"], {"node-2"}),
    (["frontend", "dns"], set()),
    (["nothere"], set()),
])
def test_dependency(deps, expected):
    sched = make(pool(), filters=["dependency"])
    if expected:
        assert names(sched, PlacementRequest(dependencies=deps)) == expected
    else:
        with pytest.raises(NoNodeAvailable, match="dependency: not on the node"):
            sched.place(PlacementRequest(dependencies=deps))


def test_health():
    nodes = pool()
    nodes[1].healthy = False
    assert names(make(nodes, filters=["health"]), PlacementRequest()) == {"node-1", "node-3"}
    assert names(make(nodes, filters=["constraint"]), PlacementRequest()) == ALL  # health not enabled
    with pytest.raises(NoNodeAvailable, match="node-2: health: node is unhealthy"):
        make(nodes).place(PlacementRequest(constraints=["node==node-2"]))


def test_filters_compose():
    req = PlacementRequest(constraints=["storage==ssd"], affinities=["image!=nginx"], ports=[("", 8080, "udp")])
    with pytest.raises(NoNodeAvailable) as info:
        make(pool()).place(req)
    assert info.value.reasons == {
        "node-1": "affinity: image!=nginx not met (by the node's images)",
        "node-2": "constraint: storage==ssd not met (storage='disk')",
        "node-3": "port: host port 8080/udp already bound on 0.0.0.0",
    }


@pytest.mark.parametrize(("labels", "containers", "takes"), [
    ({"containerslots": "2"}, 1, True),
    ({"containerslots": "2"}, 2, False),
    ({"containerslots": "0"}, 0, False),
    ({"containerslots": "many"}, 9, True),  # not a number: no limit
    ({}, 9, True),
])
def test_containerslots(labels, containers, takes):
    node = Node("n", labels=labels, containers=[NodeContainer(f"c{i}") for i in range(containers)])
    sched = make([node], filters=["containerslots"])
    if takes:
        assert sched.place(PlacementRequest())[0] is node
    else:
        with pytest.raises(NoNodeAvailable, match=f"n: containerslots: all {labels['containerslots']} container "
                                                  "slots taken"):
            sched.place(PlacementRequest())
