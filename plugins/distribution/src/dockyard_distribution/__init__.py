"""dockyard-distribution: the registry client plugin."""

__version__ = "0.1.0"
