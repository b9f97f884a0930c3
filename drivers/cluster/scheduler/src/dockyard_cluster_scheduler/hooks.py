"""This distribution's hooks: Swarm classic's filters and strategies for core's scheduler."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dockyard.specs import hookimpl
from dockyard.specs.cluster import SchedulerFilter, SchedulerStrategy

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@hookimpl
def dockyard_scheduler_filters(kernel: Kernel) -> Iterable[SchedulerFilter]:
    # imported here: only a manager's scheduler asks; an engine daemon never does (~0.2 MiB of
    # its RSS with the constraint-expression parser, #21 item 10)
    from dockyard_cluster_scheduler.filters import FILTERS

    return FILTERS


@hookimpl
def dockyard_scheduler_strategies(kernel: Kernel) -> Iterable[SchedulerStrategy]:
    from dockyard_cluster_scheduler.strategies import STRATEGIES

    return STRATEGIES
