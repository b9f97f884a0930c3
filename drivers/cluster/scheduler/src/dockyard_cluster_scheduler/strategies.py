"""Swarm classic's strategies (``docker/swarm`` ``scheduler/strategy/``), as core's
:class:`~dockyard.specs.cluster.SchedulerStrategy` descriptors.

``weighted_node.go``: per node ``cpu = (reserved + requested) * 100 // total`` (100 when the
request asks for no CPUs), the same for memory, ``weight = cpu + memory + factor * health``
(health 100 for a healthy node, else 0). Totals include the overcommit (core refuses nodes
the request does not fit, before any strategy ranks them).

- ``spread`` (the default): lowest weight first (factor -10), ties to fewer containers.
- ``binpack``: highest weight first (factor +10), ties to more containers.
- ``random``: no ranking, a random node among those that passed (for debugging, as Swarm's).

A request with a ``platform`` breaks weight ties towards nodes that run it natively over
those that emulate it (issue 19: emulation is 5-10 times slower), before the container count.

Ties left after that go by node name, so a placement is reproducible. Nodes whose score would
exceed 100 (Swarm drops them) come last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockyard.specs.cluster import Node, PlacementRequest, SchedulerStrategy

_FULL = 1 << 30  # the score of a node with no total of what is asked (it never fits)


def _key(request: PlacementRequest, overcommit: float, factor: int, sign: int) -> Callable[[Node], Any]:
    """``(full, sign * weight, emulated, sign * containers)``: one closure, as it runs for every node
    whose state changes (the scheduler keeps its orders up to date). ``full`` is 1 for a node
    with a score over 100 (Swarm drops those; core refuses them too): last in either order, so
    binpack does not walk past every full node."""
    room = 1.0 + overcommit
    cpus, memory, platform = request.cpus, request.memory, request.platform
    healthy_bonus = factor * 100

    def key(node: Node) -> tuple[int, int, int, int]:
        if cpus > 0:
            total = node.cpus * room
            cpu = int((node.reserved_cpus + cpus) * 100 // total) if total > 0 else _FULL
        else:
            cpu = 100
        if memory > 0:
            total = node.memory * room
            mem = int((node.reserved_memory + memory) * 100 // total) if total > 0 else _FULL
        else:
            mem = 100
        w = cpu + mem + healthy_bonus if node.healthy else cpu + mem
        emulated = 1 if platform and node.runs(platform) == "emulated" else 0
        return (cpu > 100 or mem > 100, sign * w, emulated, sign * len(node.containers))

    return key


def spread(request: PlacementRequest, overcommit: float) -> Callable[[Node], Any]:
    return _key(request, overcommit, -10, 1)


def binpack(request: PlacementRequest, overcommit: float) -> Callable[[Node], Any]:
    return _key(request, overcommit, 10, -1)


def random(request: PlacementRequest, overcommit: float) -> None:
    return None


STRATEGIES = (
    SchedulerStrategy("spread", spread, "fewest reserved resources and containers first (the default)"),
    SchedulerStrategy("binpack", binpack, "fill the most used node that still fits first"),
    SchedulerStrategy("random", random, "a random node among those that pass the filters"),
)
