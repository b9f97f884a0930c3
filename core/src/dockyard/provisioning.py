"""Provisioning helpers the host service builds on (Docker Machine's role)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Host
    from dockyard.specs.provision import EngineTLS, HostRequest, Provisioner


def engine_flags(kernel: Kernel, host: Host) -> list[str]:
    """Extra ``dockyardd`` flags plugins ask for on a host being provisioned, in call order."""
    flags: list[str] = []
    for result in kernel.hook.dockyard_engine_flags(kernel=kernel, host=host):
        flags.extend(result or ())
    return flags


async def provision(kernel: Kernel, driver: Provisioner, request: HostRequest,
                    server_tls: Callable[[Host], EngineTLS | Awaitable[EngineTLS]]) -> Host:
    """Create a host in the order the spec gives: ``driver.prepare(request)`` (name and
    addresses), the engine flags (``request.engine_options``, then the
    ``dockyard_engine_flags`` hook's), ``server_tls(host)`` (the caller's certificate for
    ``host.addresses``; a plain or async callable), then ``driver.create``.

    Returns the running host. When any step after ``prepare`` fails (or is cancelled), the
    host is removed before the exception propagates, so nothing is left half-made.
    """
    host = await driver.prepare(request)
    try:
        flags = [*request.engine_options, *engine_flags(kernel, host)]
        tls = server_tls(host)
        if inspect.isawaitable(tls):
            tls = await tls
        return await driver.create(host, tls, flags)
    except BaseException:
        await driver.remove(host)
        raise
