"""Provisioning helpers the host service builds on (Docker Machine's role)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Host


def engine_flags(kernel: Kernel, host: Host) -> list[str]:
    """Extra ``dockyardd`` flags plugins ask for on a host being provisioned, in call order."""
    flags: list[str] = []
    for result in kernel.hook.dockyard_engine_flags(kernel=kernel, host=host):
        flags.extend(result or ())
    return flags
