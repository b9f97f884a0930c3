"""Area ``cluster``: a pool of engines behind one API. Node stores and the scheduler.

The node store (``dockyard.drivers.cluster``, one selected by ``cluster-store``, e.g. ``etcd``)
keeps node membership and placements. The scheduler is Swarm classic's shape: every enabled
filter removes nodes, then one strategy ranks the survivors (see
``shared/reference/orchestration.md``). Filters and strategies are hook-provided descriptors,
so any plugin can add one.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@dataclass
class Node:
    """One engine in the pool, as the scheduler sees it."""

    name: str
    engine_url: str
    labels: dict[str, str] = field(default_factory=dict)
    cpus: int = 0
    memory: int = 0
    reserved_cpus: float = 0.0
    reserved_memory: int = 0
    containers: int = 0
    healthy: bool = True
    info: dict[str, Any] = field(default_factory=dict)  # the node's /info


@dataclass
class PlacementRequest:
    """A container to place: its config as the API received it, and what it asks for."""

    name: str
    image: str
    cpus: float = 0.0
    memory: int = 0
    constraints: list[str] = field(default_factory=list)  # "storage==ssd", "node!=n1", "~" soft
    affinities: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # host ports wanted: "8080/tcp"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerFilter:
    """Removes nodes that cannot take ``request``. ``func(request, nodes) -> nodes``."""

    name: str
    func: Callable[[PlacementRequest, list[Node]], list[Node]]
    description: str = ""


@dataclass(frozen=True)
class SchedulerStrategy:
    """Orders candidate nodes, best first. ``func(request, nodes) -> nodes``."""

    name: str
    func: Callable[[PlacementRequest, list[Node]], list[Node]]
    description: str = ""


class NodeStore(Driver):
    """The ABC of a cluster node store."""

    @abc.abstractmethod
    async def register(self, node: Node, ttl: int) -> None:
        """Register or refresh ``node``; it expires unless refreshed within ``ttl`` seconds."""

    @abc.abstractmethod
    async def deregister(self, name: str) -> None:
        """Remove a node."""

    @abc.abstractmethod
    async def nodes(self) -> list[Node]:
        """Live nodes."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes) -> None:
        """Store cluster state (placements, global networks) under ``key``."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Read a key; ``None`` when absent."""

    @abc.abstractmethod
    def watch(self, prefix: str) -> AsyncIterator[tuple[str, bytes | None]]:
        """Changes under ``prefix`` as ``(key, value or None when deleted)``."""


class ClusterSpecs:
    """Hook specifications of the ``cluster`` area."""

    @hookspec
    def dockyard_scheduler_filters(self, kernel: Kernel) -> Iterable[SchedulerFilter]:
        """Scheduler filters this plugin provides. All results are collected; names are unique.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_scheduler_strategies(self, kernel: Kernel) -> Iterable[SchedulerStrategy]:
        """Scheduler strategies this plugin provides (``spread``, ``binpack``, ``random``...).

        .. versionadded:: 0.1
        """
