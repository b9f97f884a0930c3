"""The ``volumes`` service: its typed interface.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dockyard.model import Container, Volume


def volume_references(c: Container) -> set[str]:
    """Names of the volumes container ``c`` uses or will use."""
    names = {m.name for m in c.mounts if m.type == "volume" and m.name}
    for m in c.host_config.mounts:
        if m.type == "volume" and (m.name or m.source):
            names.add(m.name or m.source)
    for bind in c.host_config.binds:
        src = bind.split(":", 1)[0]
        if src and not src.startswith("/"):
            names.add(src)
    return names


class Volumes(Protocol):
    """What the fronts may ask of the ``volumes`` service (``name`` is a volume's name)."""

    def list(self) -> list[Volume]: ...
    def get(self, name: str) -> Volume: ...
    def in_use(self) -> set[str]:
        """Names of volumes some container references."""
        ...
    async def usage(self, vol: Volume) -> int:
        """Bytes the volume holds (-1 when its driver cannot tell)."""
        ...
    async def create(self, name: str = "", driver: str = "local", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume: ...
    async def remove(self, name: str, force: bool = False) -> None: ...
    async def prune(self, match: Callable[[Volume], bool] | None = None) -> tuple[list[str], int]: ...
    async def driver(self, name: str) -> Any:
        """The (ready) volume driver ``name``."""
        ...


__all__ = ["Volumes", "volume_references"]
