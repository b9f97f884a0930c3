"""dockyard-machine: machines that run a dockyard engine (Docker Machine's role)."""

__version__ = "0.1.0"
