"""The ``host`` and ``null`` network drivers (docker's ``host`` and ``none`` networks).

``host``: the container shares the host's network namespace. The runtime must not create a
namespace for it; ``EndpointRequest.netns_path`` is not used (pass the host's, e.g.
``/proc/1/ns/net``, or ""), ``join`` changes nothing in the kernel and publishes no ports
(the container's listeners already are host listeners, as with dockerd).

``null``: the container gets its own namespace with only the loopback interface, which
``join`` brings up; there are no addresses, routes or ports.

Both accept no driver options (an unknown option is an InvalidArgument).
"""

from __future__ import annotations

import asyncio
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.model import Network
from dockyard.specs import DriverInfo, NetworkDriver
from dockyard.specs.network import EndpointRequest, EndpointResult
from dockyard_network_bridge import netlink


def _no_options(network: Network, driver: str) -> None:
    if network.options:
        raise InvalidArgument(f"the {driver} network driver takes no options "
                              f"(got {', '.join(sorted(network.options))})")


class HostDriver(NetworkDriver):
    info = DriverInfo(name="host", kind="network",
                      description="The container uses the host's network namespace")

    async def create_network(self, network: Network) -> dict[str, Any]:
        _no_options(network, "host")
        return {}

    async def delete_network(self, network: Network) -> None:
        return None

    async def join(self, request: EndpointRequest) -> EndpointResult:
        return EndpointResult(ifname="", ports=[])

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        return None


class NullDriver(NetworkDriver):
    info = DriverInfo(name="null", kind="network",
                      description="Loopback only: the container's namespace gets no other interface")

    async def create_network(self, network: Network) -> dict[str, Any]:
        _no_options(network, "null")
        return {}

    async def delete_network(self, network: Network) -> None:
        return None

    async def join(self, request: EndpointRequest) -> EndpointResult:
        if request.ports:
            raise InvalidArgument("a container on the null network cannot publish ports")
        await asyncio.to_thread(netlink.loopback_up, request.netns_path)
        return EndpointResult(ifname="lo", ports=[])

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        return None
