"""The driver source: Docker plugins found by name at run time, one adapter class per kind.

The kernel asks :meth:`DockerPlugins.driver_class` for a network, IPAM or volume driver name no
installed distribution provides (``docker network create -d NAME``, ``--ipam-driver NAME``,
``docker volume create -d NAME``). When a socket or spec file of that name exists, it gets a
class of the kind's adapter bound to the name; the kernel constructs it, and its ``setup()``
activates the plugin (``/Plugin.Activate``, retried as dockerd retries) and checks that the
plugin implements the kind's interface. One :class:`PluginClient` per plugin is shared by the
adapters of every kind it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.specs._base import DriverInfo
from dockyard.specs.provides import DriverSource, ExternalPlugin
from dockyard_docker_plugins.client import (
    CALL_TIMEOUT,
    RETRY_WINDOW,
    SOCKET_DIRS,
    SPEC_DIRS,
    Discovery,
    PluginClient,
    not_found,
)

if TYPE_CHECKING:
    from dockyard.specs._base import Driver

SOURCE = "docker-plugins"
#: driver kind -> the interface name a plugin lists in ``Implements``
INTERFACES = {"network": "NetworkDriver", "ipam": "IpamDriver", "volume": "VolumeDriver"}


class DockerPlugins:
    """Per kernel: where plugins are looked for, and the clients of those in use."""

    def __init__(self, config: Any) -> None:
        get = config.get
        self.discovery = Discovery(tuple(get("docker-plugin-sockets") or SOCKET_DIRS),
                                   tuple(get("docker-plugin-specs") or SPEC_DIRS))
        self.retry_window = float(get("docker-plugin-retry") or RETRY_WINDOW)
        self.timeout = float(get("docker-plugin-timeout") or CALL_TIMEOUT)
        self.clients: dict[str, PluginClient] = {}

    def client(self, name: str) -> PluginClient:
        """The plugin's client, found afresh when it is not in use yet or its address moved."""
        found = self.discovery.find(name)
        current = self.clients.get(name)
        if found is None:
            if current is not None:
                return current  # went away: its calls retry, then fail naming it
            raise not_found(name, self.discovery)
        if current is None or current.found != found:
            current = self.clients[name] = PluginClient(found, self.retry_window, self.timeout)
        return current

    # ------------------------------------------------------------------ the DriverSource
    def driver_class(self, kind: str, name: str) -> type[Driver] | None:
        if kind not in INTERFACES or (name not in self.clients and self.discovery.find(name) is None):
            return None
        from dockyard_docker_plugins import ipam, network, volume

        base = {"network": network.RemoteNetworkDriver, "ipam": ipam.RemoteIpamDriver,
                "volume": volume.RemoteVolumeDriver}[kind]
        info = DriverInfo(name=name, kind=kind, description=f"Docker plugin {name} ({INTERFACES[kind]})")
        return type(f"{base.__name__}[{name}]", (base,), {"info": info, "plugins": self, "plugin_name": name})

    def names(self, kind: str) -> list[str]:
        """Plugins activated so far that implement ``kind`` (dockerd lists plugins it has used)."""
        want = INTERFACES.get(kind)
        return sorted(n for n, c in self.clients.items() if c.implements and want in c.implements)

    def plugins(self) -> list[ExternalPlugin]:
        out = []
        for name in sorted(set(self.discovery.names()) | set(self.clients)):
            try:
                c = self.client(name)
            except Exception:  # noqa: BLE001 - a broken spec file: listed without an address
                out.append(ExternalPlugin(name, (), "", SOURCE))
                continue
            out.append(ExternalPlugin(name, tuple(c.implements or ()), c.found.address, SOURCE))
        return out

    def missing(self, kind: str, name: str) -> str:
        return f"no Docker plugin {name!r} either (no socket or spec file in {self.discovery.where()})"

    def source(self) -> DriverSource:
        return DriverSource(SOURCE, frozenset(INTERFACES), driver_class=self.driver_class, names=self.names,
                            plugins=self.plugins, missing=self.missing)
