"""Services: the seam between the API fronts and the mechanisms.

A service owns state transitions for one kind of object (``containers``, ``images``,
``networks``, ``volumes``...): it checks the state machine, composes drivers, writes the store
in one transaction and emits events. Core defines only what a service *is*:

- :class:`Service`, the base (``start`` reconciles at daemon start, ``stop`` releases at
  shutdown and never stops containers);
- :class:`ServiceInfo`, the descriptor a provider declares for each service it offers (name,
  factory, which services must start first, the daemon roles it serves);
- the typed interfaces of the well-known services (``dockyard.services.containers``,
  ``.images``, ``.networks``, ``.volumes``): :class:`typing.Protocol` classes plus the request
  and result dataclasses that cross the seam. The API front, the CLI and the builder are typed
  against these, never against an implementation.

Implementations are distributions registered in the ``dockyard.services`` entry-point group:
the entry point's name is the provider's name and its object an iterable of
:class:`ServiceInfo` (``engine = "dockyard_engine.provider:SERVICES"``). The kernel picks, per
service name, the one provider that serves the daemon's ``role`` (``engine`` by default; a
swarm manager runs with another role and its cluster services stand in for the local ones).
Two installed providers of one name for one role are a :class:`~dockyard.errors.PluginConflictError`.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.store import Store

#: The entry-point group of service providers.
SERVICE_GROUP = "dockyard.services"
#: The role a daemon serves when none is configured.
DEFAULT_ROLE = "engine"


def role_distribution(role: str) -> str:
    """The distribution that conventionally provides a role's services, named in the error a
    kernel without them raises: ``dockyard-<role>`` (``dockyard-engine`` for this host's). Core
    keeps no table of its plugins' names; the convention is the contract."""
    return f"dockyard-{role}"


class Service:
    """Base of every service. ``start`` reconciles, ``stop`` must leave containers running."""

    name: str = ""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    @property
    def store(self) -> Store:
        return self.kernel.open_store()

    async def start(self) -> None:
        """Reconcile persisted state with the host at daemon start."""

    async def stop(self) -> None:
        """Release resources at daemon shutdown (never stop containers: live-restore)."""


@dataclass(frozen=True)
class ServiceInfo:
    """One service a provider offers, described without building it.

    ``factory`` builds the service for a kernel (import heavy modules inside it, so listing
    providers stays cheap). ``after`` names services that must start before this one (and stop
    after it); a name no provider offers is ignored, so a smaller installation still orders
    what it has. ``roles`` are the daemon roles it serves.
    """

    name: str
    factory: Callable[[Kernel], Service]
    after: tuple[str, ...] = ()
    roles: tuple[str, ...] = (DEFAULT_ROLE,)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"invalid service name {self.name!r}: lower-case letters, digits and '-'")
        if self.name in self.after:
            raise ValueError(f"service {self.name!r} cannot start after itself")


def start_order(infos: dict[str, ServiceInfo]) -> list[str]:
    """Service names in an order where each comes after everything it names in ``after``
    (ties by name, so the order is stable). A cycle is a ``ValueError`` naming it."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path[path.index(name):], name))
            raise ValueError(f"services start in a cycle: {cycle}")
        state[name] = 1
        for dep in sorted(infos[name].after):
            if dep in infos:
                visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in sorted(infos):
        visit(name, ())
    return order


__all__ = ["DEFAULT_ROLE", "SERVICE_GROUP", "Service", "ServiceInfo", "role_distribution", "start_order"]
