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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import NAMESPACES, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.specs._base import Driver


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


@dataclass(frozen=True)
class ExternalPlugin:
    """A plugin process a :class:`DriverSource` found at run time, as listings show it (Docker's
    ``GET /plugins``, ``/info`` ``Plugins``). ``implements`` holds the protocol's interface
    names (Docker's ``Implements``: ``NetworkDriver``, ``IpamDriver``, ``VolumeDriver``,
    ``authz``...); ``address`` where it is reached (``unix:///run/docker/plugins/x.sock``).

    .. versionadded:: 0.2
    """

    name: str
    implements: tuple[str, ...]
    address: str
    source: str


@dataclass(frozen=True)
class DriverSource:
    """Drivers found while the daemon runs, not through entry points: one adapter serving many
    names (Docker's plugin API: a socket or spec file per name, DESIGN "Drivers found at run
    time"). The kernel asks a source only for a name no installed driver of the kind has, so an
    entry-point driver always wins, as dockerd's built-in drivers win over plugins.

    - ``driver_class(kind, name)``: a driver class serving ``name`` (its ``info.name`` is
      ``name``), or None when the source has no such name. Synchronous and cheap (a look at
      the file system): reaching the plugin is the driver's ``setup()``, which the kernel runs
      (and runs again on the next use after a failure).
    - ``names(kind)``: the names it serves now for ``kind`` (those known to implement it),
      listed beside installed drivers (``Kernel.driver_names``, ``/info``).
    - ``plugins()``: what it found, for listings.
    - ``missing(kind, name)``: where it looked, appended to the not-installed error.

    .. versionadded:: 0.2
    """

    name: str
    kinds: frozenset[str]
    driver_class: Callable[[str, str], type[Driver] | None]
    names: Callable[[str], list[str]]
    plugins: Callable[[], list[ExternalPlugin]] = field(default=lambda: [])
    missing: Callable[[str, str], str] = field(default=lambda _kind, _name: "")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(NAMESPACES))
        if unknown:
            raise ValueError(f"driver source {self.name}: unknown driver kinds {unknown}")


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

    @hookspec
    def dockyard_driver_sources(self, kernel: Kernel) -> Iterable[DriverSource]:
        """Sources of drivers found at run time (:class:`DriverSource`) this plugin offers.

        Collected once per kernel, when a driver name no installed distribution provides is
        first asked for (``Kernel.driver``), or a listing needs them. Two sources with one
        ``name`` are a :class:`~dockyard.errors.PluginConflictError` (recorded) and neither is
        used; when several sources serve one name, the first registered wins.

        Example::

            @hookimpl
            def dockyard_driver_sources(kernel):
                return [DriverSource("docker-plugins", frozenset({"network", "volume"}),
                                     driver_class=finder.driver_class, names=finder.names)]

        .. versionadded:: 0.2
        """
