"""The ``machines`` service, as the kernel finds it (entry point ``dockyard.services:
machine``). It serves every role: an engine and a swarm manager both provision machines.
The factory imports the service only when the kernel builds it, so listing providers stays
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.services import Service, ServiceInfo

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


def _machines(kernel: Kernel) -> Service:
    from dockyard_machine.service import MachineService

    return MachineService(kernel)


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo("machines", _machines, roles=("engine", "manager"),
                description="machines: hosts made by provision drivers, their engines' TLS, every transition"),
)
