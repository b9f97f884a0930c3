"""``dockyard`` CLI groups shipped with the Docker API front (thin clients of its routes)."""
