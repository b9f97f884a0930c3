"""dockyard compose: compose files driven through the Docker Engine API (client side only)."""

__version__ = "0.1.0"
