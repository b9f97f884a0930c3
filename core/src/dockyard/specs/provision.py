"""Area ``provision``: machines that run the engine (Docker Machine's role).

Provision drivers register under ``dockyard.drivers.provision`` and are chosen per host:
``netns`` (a local test host in a network namespace running its own dockyardd), ``ssh`` (a
generic host reached over SSH). The host service stores :class:`dockyard.model.Host` objects;
drivers only act and report.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Host, HostTLS


@dataclass
class HostRequest:
    name: str
    options: dict[str, str] = field(default_factory=dict)  # driver flags (address, ssh user...)
    engine_options: list[str] = field(default_factory=list)  # extra dockyardd flags
    labels: dict[str, str] = field(default_factory=dict)


class Provisioner(Driver):
    """The ABC of a provision driver (mirrors Docker Machine's driver interface)."""

    @abc.abstractmethod
    async def create(self, request: HostRequest, tls: HostTLS) -> Host:
        """Create the host, install and start its engine with ``tls`` server material."""

    @abc.abstractmethod
    async def start(self, host: Host) -> None:
        """Start a stopped host and its engine."""

    @abc.abstractmethod
    async def stop(self, host: Host) -> None:
        """Stop the host's engine (and the host, where that means something)."""

    @abc.abstractmethod
    async def remove(self, host: Host) -> None:
        """Destroy the host and everything created for it."""

    @abc.abstractmethod
    async def state(self, host: Host) -> str:
        """``running``, ``stopped``, ``error`` or ``none``."""

    @abc.abstractmethod
    async def engine_url(self, host: Host) -> str:
        """The engine's API address (``tcp://ip:2376``)."""


class ProvisionSpecs:
    """Hook specifications of the ``provision`` area."""

    @hookspec
    def dockyard_engine_flags(self, kernel: Kernel, host: Host) -> list[str] | None:
        """Extra ``dockyardd`` flags for an engine being provisioned on ``host``.

        All results are concatenated in call order. Return ``None`` for none.

        .. versionadded:: 0.1
        """
