"""``dockyard.scheduler.request_from_create``: a Docker create body -> a placement request,
and the body sent on, as Swarm classic's ``BuildContainerConfig``."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import InvalidArgument
from dockyard.scheduler import request_from_create
from dockyard.specs.cluster import Node, NodeContainer, PlacementRequest


def test_pseudo_env_moves_into_swarm_labels():
    body = {"Image": "redis:7", "Env": ["A=1", "constraint:storage==ssd", "affinity:container!=~web*",
                                        "reschedule:on-node-failure", "B=constraint:x"],
            "Labels": {"app": "x", "com.docker.swarm.constraints": '["region==eu*"]'}}
    req, sent = request_from_create(body, "db")
    assert (req.name, req.image) == ("db", "redis:7")
    assert req.constraints == ["region==eu*", "storage==ssd"]
    assert req.affinities == ["container!=~web*"]
    assert req.reschedule == ["on-node-failure"]
    assert sent["Env"] == ["A=1", "B=constraint:x"]
    assert json.loads(sent["Labels"]["com.docker.swarm.constraints"]) == ["region==eu*", "storage==ssd"]
    assert json.loads(sent["Labels"]["com.docker.swarm.affinities"]) == ["container!=~web*"]
    assert json.loads(sent["Labels"]["com.docker.swarm.reschedule-policies"]) == ["on-node-failure"]
    assert sent["Labels"]["app"] == "x"
    assert body["Env"][1] == "constraint:storage==ssd", "the caller's body is not modified"


@pytest.mark.parametrize(("host", "cpus", "memory"), [
    ({"NanoCpus": 1_500_000_000, "Memory": 256 << 20}, 1.5, 256 << 20),
    ({"CpuShares": 2}, 2.0, 0),  # -c read as a CPU count, as Swarm classic did
    ({"NanoCpus": 500_000_000, "CpuShares": 1024}, 0.5, 0),
    ({}, 0.0, 0),
])
def test_cpus_and_memory(host, cpus, memory):
    req, _ = request_from_create({"Image": "x", "HostConfig": host})
    assert (req.cpus, req.memory) == (cpus, memory)


def test_ports_and_dependencies():
    req, _ = request_from_create({"Image": "x", "HostConfig": {
        "PortBindings": {"80/tcp": [{"HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}],
                         "53/udp": [{"HostPort": "5353-5354"}], "443/tcp": [{"HostPort": ""}]},
        "VolumesFrom": ["data:ro"], "Links": ["/cache:c"], "NetworkMode": "container:db"}})
    assert req.ports == [("", 8080, "tcp"), ("127.0.0.1", 8081, "tcp"), ("", 5353, "udp"), ("", 5354, "udp")]
    assert req.dependencies == ["data", "cache", "db"]
    host, _ = request_from_create({"Image": "x", "ExposedPorts": {"9000/tcp": {}},
                                   "HostConfig": {"NetworkMode": "host"}})
    assert host.ports == [("", 9000, "tcp")]


@pytest.mark.parametrize(("body", "message"), [
    ({"Env": ["reschedule:always"]}, "invalid reschedule policy 'always'"),
    ({"Labels": {"com.docker.swarm.constraints": "node==n1"}}, "expected a JSON list of strings"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "http"}]}}}, "invalid host port 'http'"),
])
def test_bad_bodies_are_invalid(body, message):
    with pytest.raises(InvalidArgument, match=message):
        request_from_create({"Image": "x", **body})


def test_soft_expressions_and_hard():
    req = PlacementRequest(constraints=["a==~b", "c!=d"], affinities=["image==~redis"])
    assert req.has_soft() and not req.hard().has_soft()
    assert req.hard().constraints == ["c!=d"] and req.hard().affinities == []


def test_node_keeps_containers_reservations_and_ports():
    n = Node("n1", cpus=4, memory=1 << 30)
    n.add(NodeContainer("abc123def", "web", "nginx:1", ports=(("", 80, "tcp"),), cpus=1, memory=1 << 20))
    n.add(NodeContainer("fff000", "db", "redis:7", ports=(("10.0.0.1", 6379, "tcp"),)))
    assert n.container("web") is n.container("/web") is n.container("abc1") is n.container("abc123def")
    assert n.container("zzz") is None and n.container("ab") is None  # prefixes of three or more
    assert (n.reserved_cpus, n.reserved_memory) == (1, 1 << 20)
    assert {"nginx:1", "redis:7"} <= n.images
    assert n.port_in_use(("127.0.0.1", 80, "tcp")) == "0.0.0.0"
    assert n.port_in_use(("", 80, "udp")) is None
    assert n.port_in_use(("10.0.0.2", 6379, "tcp")) is None
    assert n.port_in_use(("", 6379, "tcp")) == "10.0.0.1"
    assert n.remove("web").name == "web" and n.container("abc1") is None
    assert (n.reserved_cpus, n.reserved_memory) == (0, 0) and n.port_in_use(("", 80, "tcp")) is None
