"""dockyard-migrate: live migration of running containers between engines (issue 17)."""

__version__ = "0.1.0"
