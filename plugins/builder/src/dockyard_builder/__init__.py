"""dockyard-builder: Dockerfile builds for dockyardd (classic ``POST /build``)."""

__version__ = "0.1.0"
