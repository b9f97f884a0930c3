"""Feature extension point: CLI command groups.

CLI groups are not hooks: they are click commands named in the entry-point group
``dockyard.cli`` (``compose = "dockyard_compose.cli:group"``). The root ``dockyard`` command
lists their names from metadata and imports one only when it is invoked, so that
``dockyard --help`` and ``dockyard --version`` import no plugin. Two distributions giving one
name is a PluginConflictError. A group talks to the daemon through
``dockyard.client.Client`` (the Docker Engine API), never through the kernel.

.. versionadded:: 0.1
"""

CLI_GROUP = "dockyard.cli"
