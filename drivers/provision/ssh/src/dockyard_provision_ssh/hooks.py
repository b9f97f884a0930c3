"""This distribution's hooks: the SSH engine installer, offered to every driver.

``dockyard_provides`` hands :class:`~dockyard_provision_ssh.installer.SshEngineInstaller` to
every driver's context as the :class:`dockyard.specs.provision.EngineInstaller`: the ``ssh``
provision driver installs with it, and so does any driver that boots a machine and then reaches
it over SSH (``qemu``: ``self.context.need(EngineInstaller)``). Its wheelhouse cache is the
``ssh`` driver's data directory (``<data-root>/provision/ssh/wheelhouse``), shared by all of
them. Constructing it does no I/O and imports no SSH library (asyncssh loads on first use).
It gets the kernel's supervisor backends: a systemd target's engine unit is the ``systemd``
backend's (dockyard-supervisor-systemd), never a copy of the ssh driver's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.specs import hookimpl
from dockyard.specs.provides import Provided
from dockyard.specs.provision import EngineInstaller

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@hookimpl
def dockyard_provides(kernel: Kernel) -> list[Provided]:
    from dockyard_provision_ssh.installer import SshEngineInstaller

    cache = kernel.config.data_root / "provision" / "ssh" / "wheelhouse"
    return [Provided(EngineInstaller, SshEngineInstaller(cache, supervisors=kernel.supervisors()), "ssh")]
