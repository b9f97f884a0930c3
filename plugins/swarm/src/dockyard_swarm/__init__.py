"""dockyard-swarm: Swarm classic's manager (one Docker API in front of many engines)."""

__version__ = "0.1.0"
