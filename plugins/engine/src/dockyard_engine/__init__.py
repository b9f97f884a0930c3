"""dockyard-engine: the local engine's services (containers, images, networks, volumes)."""

__version__ = "0.1.0"
