"""The ``dockyard`` command line: a thin client of the daemon, like the docker CLI."""
