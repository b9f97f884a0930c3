"""Dockyard's overlay network driver (VXLAN across the engines of a cluster store)."""

__version__ = "0.1.0"
