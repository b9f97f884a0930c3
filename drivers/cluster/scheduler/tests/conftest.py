from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import pytest

from dockyard.scheduler import Scheduler
from dockyard.specs.cluster import Node, PlacementRequest
from dockyard_cluster_scheduler.filters import FILTERS
from dockyard_cluster_scheduler.strategies import STRATEGIES

STRATEGY = {s.name: s for s in STRATEGIES}


def make(nodes: Iterable[Node], strategy: str = "spread", filters: Sequence[str] | None = None,
         overcommit: float = 0.05, seed: int = 0) -> Scheduler:
    """A scheduler with this distribution's filters (all, or those named) and a strategy."""
    flts = [f for f in FILTERS if filters is None or f.name in filters]
    return Scheduler(STRATEGY[strategy], flts, nodes, overcommit, rng=random.Random(seed))


def names(sched: Scheduler, request: PlacementRequest) -> set[str]:
    """Every node that can take ``request``."""
    return {n.name for n in sched.place(request, limit=None)}


@pytest.fixture
def request_of():
    def build(**kw) -> PlacementRequest:
        return PlacementRequest(name=kw.pop("name", "c"), image=kw.pop("image", "busybox"), **kw)
    return build
