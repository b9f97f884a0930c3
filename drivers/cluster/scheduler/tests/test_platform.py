"""The ``platform`` filter and the native-over-emulated tie-break (issue 19 item 4): a container
asking for ``linux/arm64`` lands only on nodes that run it, native ones first."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.scheduler import NoNodeAvailable, request_from_create
from dockyard.specs.cluster import Node, NodeContainer, PlacementRequest

from .conftest import make, names


def pool() -> list[Node]:
    return [
        Node("x86", cpus=4, memory=1 << 30, architecture="x86_64"),  # a legacy record: /info fields only
        Node("x86-qemu", cpus=4, memory=1 << 30, platforms=("linux/amd64",),
             emulated_platforms=("linux/arm64", "linux/arm/v7")),
        Node("pi4", cpus=4, memory=1 << 30, platforms=("linux/arm64",)),
        Node("pi2", cpus=4, memory=1 << 30, platforms=("linux/arm/v7",)),
        Node("win", cpus=4, memory=1 << 30, os_type="windows", platforms=("windows/amd64",)),
    ]


@pytest.mark.parametrize(("platform", "expected"), [
    ("", {"x86", "x86-qemu", "pi4", "pi2", "win"}),         # no platform asked: every node
    ("linux/amd64", {"x86", "x86-qemu"}),
    ("linux/386", {"x86", "x86-qemu"}),                      # amd64 runs 386
    ("linux/arm64", {"x86-qemu", "pi4"}),
    ("linux/arm64/v8", {"x86-qemu", "pi4"}),
    ("linux/arm/v7", {"x86-qemu", "pi4", "pi2"}),            # an arm64 node runs 32-bit arm
    ("linux/arm/v6", {"x86-qemu", "pi4", "pi2"}),            # v7 runs v6
    ("linux/arm/v8", {"pi4"}),                               # the arm64 node's 32-bit mode only
    ("windows/amd64", {"win"}),
])
def test_only_nodes_that_run_the_platform(platform, expected):
    assert names(make(pool()), PlacementRequest("c", platform=platform)) == expected


def test_no_node_names_what_each_runs():
    with pytest.raises(NoNodeAvailable) as info:
        make(pool()).place(PlacementRequest("c", platform="linux/riscv64"))
    reasons = info.value.reasons
    assert reasons["pi4"] == "platform: runs linux/arm64, not linux/riscv64"
    assert reasons["x86"] == "platform: runs linux/x86_64, not linux/riscv64"
    assert reasons["x86-qemu"] == "platform: runs linux/amd64 (emulated: linux/arm64, linux/arm/v7), not linux/riscv64"


@pytest.mark.parametrize("strategy", ["spread", "binpack"])
def test_native_before_emulated_on_equal_weight(strategy):
    nodes = [Node("a-qemu", cpus=4, memory=1 << 30, platforms=("linux/amd64",), emulated_platforms=("linux/arm64",)),
             Node("b-arm", cpus=4, memory=1 << 30, platforms=("linux/arm64",))]
    sched = make(nodes, strategy)
    assert [n.name for n in sched.place(PlacementRequest("c", platform="linux/arm64"), limit=None)] == \
        ["b-arm", "a-qemu"]
    assert sched.place(PlacementRequest("c"))[0].name == "a-qemu"  # no platform: names break the tie


def test_weight_still_comes_first_and_the_kept_order_is_per_platform():
    nodes = [Node(f"q{i}", cpus=4, memory=1 << 30, platforms=("linux/amd64",), emulated_platforms=("linux/arm64",))
             for i in range(40)]
    nodes += [Node(f"n{i}", cpus=4, memory=1 << 30, platforms=("linux/arm64",)) for i in range(40)]
    sched = make(nodes, "spread")
    chosen = []
    for i in range(120):  # > DIRECT_LIMIT nodes: the kept heap orders
        node = sched.place(PlacementRequest(f"c{i}", platform="linux/arm64", cpus=1))[0]
        sched.reserve(node, NodeContainer(f"c{i}", f"c{i}", cpus=1))
        chosen.append(node.name)
    assert all(n.startswith("n") for n in chosen[:40])  # every native node once before any emulated one
    assert sched.place(PlacementRequest("x", platform="linux/amd64", cpus=1))[0].name.startswith("q")


def test_request_from_create_reads_the_platform_parameter():
    req, _ = request_from_create({"Image": "busybox"}, "c", platform="linux/aarch64")
    assert req.platform == "linux/arm64"
    assert request_from_create({"Image": "busybox"}, "c")[0].platform == ""
    with pytest.raises(InvalidArgument):
        request_from_create({"Image": "busybox"}, "c", platform="linux/&arm")
