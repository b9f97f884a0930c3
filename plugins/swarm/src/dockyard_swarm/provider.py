"""The swarm manager's services, as the kernel finds them (entry point ``dockyard.services:
swarm``), all for the daemon role ``manager``: the cluster's implementations of core's service
Protocols stand in for the local engine's behind the same API front. Each factory imports its
module only when the kernel builds the service (``dockyard plugins list`` stays cheap).

Others add their service's entry here with a small edit (one factory, one ``ServiceInfo``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.services import Service, ServiceInfo

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

ROLES = ("manager",)


def _engines(kernel: Kernel) -> Service:
    from dockyard_swarm.engines import EnginesService

    return EnginesService(kernel)


def _node_events(kernel: Kernel) -> Service:
    from dockyard_swarm.events import NodeEvents

    return NodeEvents(kernel)


def _images(kernel: Kernel) -> Service:
    from dockyard_swarm.images import ClusterImages

    return ClusterImages(kernel)


def _networks(kernel: Kernel) -> Service:
    from dockyard_swarm.networks import ClusterNetworks

    return ClusterNetworks(kernel)


def _volumes(kernel: Kernel) -> Service:
    from dockyard_swarm.volumes import ClusterVolumes

    return ClusterVolumes(kernel)


def _system(kernel: Kernel) -> Service:
    from dockyard_swarm.system import ClusterSystem

    return ClusterSystem(kernel)


def _containers(kernel: Kernel) -> Service:
    from dockyard_swarm.containers import ClusterContainers

    return ClusterContainers(kernel)


def _nodes(kernel: Kernel) -> Service:
    from dockyard_swarm.membership import NodeDirectory

    return NodeDirectory(kernel)


def _leadership(kernel: Kernel) -> Service:
    from dockyard_swarm.leader import Leadership

    return Leadership(kernel)


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo("nodes", _nodes, roles=ROLES,
                description="the pool's engines from their heartbeat records (healthy or not), and their changes"),
    ServiceInfo("leadership", _leadership, roles=ROLES,
                description="which replicated manager leads (elected through the cluster store)"),
    ServiceInfo("engines", _engines, roles=ROLES,
                description="the manager's client of the nodes' engines (one session, mutual TLS)"),
    ServiceInfo("node-events", _node_events, after=("engines", "nodes"), roles=ROLES,
                description="every node's events relayed with the node's fields, node connects and disconnects"),
    ServiceInfo("images", _images, after=("node-events",), roles=ROLES,
                description="every node's images (grouped by ID); pull, load, tag and rm fan out to the nodes"),
    ServiceInfo("networks", _networks, after=("node-events",), roles=ROLES,
                description="every node's networks (local ones named NODE/NAME); changes routed to the nodes"),
    ServiceInfo("volumes", _volumes, after=("node-events",), roles=ROLES,
                description="every node's volumes (local ones named NODE/NAME); changes routed to the nodes"),
    ServiceInfo("system", _system, after=("node-events", "containers"), roles=ROLES,
                description="Swarm classic's /info (nodes, status, reservations) and /system/df over the nodes"),
    ServiceInfo("containers", _containers, after=("engines", "nodes", "images", "networks", "volumes"), roles=ROLES,
                description="containers placed over the cluster's nodes, every call routed to the node"),
)
