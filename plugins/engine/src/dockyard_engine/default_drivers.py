"""Which distribution provides each driver the engine uses by default (entry point
``dockyard.providers:dockyard-engine``).

The engine asks for these drivers without a user naming them: the built-in ``bridge``, ``host``
and ``none`` networks, the ``default`` IPAM driver, ``local`` volumes, the ``overlay`` (or
``vfs``) layer driver and the ``linux`` runtime. When one is not installed, the kernel's
``DriverNotInstalled`` names the distribution declared here. Only the exceptions to
``dockyard-<area>-<name>`` need a line (core falls back to that convention), but the whole
default set is listed so that a reader finds it in one place; ``tests/meta`` checks every line
against the installed metadata.
"""

from __future__ import annotations

from dockyard.specs import DriverProvider

PROVIDERS: tuple[DriverProvider, ...] = (
    DriverProvider("arch", "linux", "dockyard-arch-linux"),
    DriverProvider("storage", "overlay", "dockyard-storage-overlay"),
    DriverProvider("storage", "vfs", "dockyard-storage-vfs"),
    DriverProvider("volume", "local", "dockyard-storage-local"),
    DriverProvider("network", "bridge", "dockyard-network-bridge"),
    DriverProvider("network", "host", "dockyard-network-bridge"),
    DriverProvider("network", "null", "dockyard-network-bridge"),
    DriverProvider("ipam", "default", "dockyard-network-ipam"),
)
