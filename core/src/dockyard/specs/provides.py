"""Cross-area needs: an interface one plugin implements and a driver of another area uses.

DESIGN ("Cross-area needs go through core, never sideways"): a distribution depends on
dockyard-core only and no driver imports another. When a driver needs another area's
capability -- the qemu provisioner needs the SSH engine installer, the overlay network needs
the cluster's key-value store, provenance needs a registry session -- core defines a narrow
interface for it (an ABC in the spec module of the area it belongs to), a plugin offers an
implementation through :meth:`ProvidesSpecs.dockyard_provides`, and the kernel hands it to the
driver in :attr:`dockyard.specs.DriverContext.provided`. The driver asks with
``self.context.need(Interface)``, which names what is missing when nothing provides it. Any
third-party implementation can stand in: the interface, not the distribution, is the contract.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@dataclass(frozen=True)
class Provided:
    """An implementation of ``interface`` (a class, usually an ABC of a spec module).

    ``implementation`` is an instance of it (checked by the kernel). ``name`` says which
    plugin it is, for listings and for the error two providers of one interface raise.
    """

    interface: type
    implementation: Any
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.interface, type):
            raise TypeError(f"Provided.interface must be a class, not {self.interface!r}")
        if not isinstance(self.implementation, self.interface):
            raise TypeError(f"{self.name}: {type(self.implementation).__qualname__} is not an "
                            f"implementation of {self.interface.__qualname__}")


class ProvidesSpecs:
    @hookspec
    def dockyard_provides(self, kernel: Kernel) -> Iterable[Provided]:
        """Implementations of cross-area interfaces this plugin offers to drivers.

        Collected once per kernel, when the first driver is constructed; every driver's
        context then holds them (``context.provided``, ``context.need(Interface)``). Two
        plugins providing one interface are a :class:`~dockyard.errors.PluginConflictError`
        naming both, and neither is handed out.

        Example::

            @hookimpl
            def dockyard_provides(kernel):
                return [Provided(EngineInstaller, SshEngineInstaller(), "ssh")]

        .. versionadded:: 0.2
        """
