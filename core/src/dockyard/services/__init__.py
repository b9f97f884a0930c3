"""Core services: they own state transitions, compose drivers, and emit events.

A service is constructed by the kernel on first use (``kernel.service("networks")`` or the
typed accessors ``kernel.networks`` ...). At daemon start the kernel starts every service in
:data:`START_ORDER` (reconciling what happened while the daemon was down); at shutdown it
stops them in reverse. A service never imports a driver: it asks the kernel for one by kind
and name (``await kernel.driver_ready("network", "bridge")``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

#: Services started at daemon start, in this order (volumes and images before containers,
#: networks before containers so endpoints can be restored).
START_ORDER: tuple[str, ...] = ("volumes", "images", "networks", "containers")


class Service:
    """Base of the core services. ``start`` reconciles, ``stop`` must leave containers running."""

    name: str = ""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    @property
    def store(self):  # noqa: ANN201 - the kernel's Store
        return self.kernel.open_store()

    async def start(self) -> None:
        """Reconcile persisted state with the host at daemon start."""

    async def stop(self) -> None:
        """Release resources at daemon shutdown (never stop containers: live-restore)."""
