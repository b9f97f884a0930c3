"""This distribution's hooks: Swarm classic's filters and strategies for core's scheduler."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dockyard.specs import hookimpl
from dockyard.specs.cluster import SchedulerFilter, SchedulerStrategy
from dockyard_cluster_scheduler.filters import FILTERS
from dockyard_cluster_scheduler.strategies import STRATEGIES

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@hookimpl
def dockyard_scheduler_filters(kernel: Kernel) -> Iterable[SchedulerFilter]:
    return FILTERS


@hookimpl
def dockyard_scheduler_strategies(kernel: Kernel) -> Iterable[SchedulerStrategy]:
    return STRATEGIES
