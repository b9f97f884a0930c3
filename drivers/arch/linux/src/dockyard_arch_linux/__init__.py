"""Dockyard runtime driver for Linux (OCI spec, conmon, crun/runc)."""

__version__ = "0.1.0"
