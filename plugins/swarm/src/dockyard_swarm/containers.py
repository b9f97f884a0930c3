"""The manager's ``containers`` service (being written by S3; see /work/coord/SWARM.md)."""

from __future__ import annotations

from dockyard.services import Service


class ClusterContainers(Service):
    name = "containers"
