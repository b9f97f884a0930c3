"""dockyard-arch-windows: a runtime driver speaking the Host Compute Service."""

__version__ = "0.1.0"
