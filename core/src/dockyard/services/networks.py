"""The ``networks`` service: its typed interface and the records that cross the seam.

.. versionadded:: 0.2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from dockyard.errors import DockyardError
from dockyard.model import EndpointSettings, IpamPool, Network, now_iso
from dockyard.specs.network import PortMapping

#: Endpoint states (``Endpoint.state``): the join is in progress, done, or being undone.
JOINING, JOINED, LEAVING = "joining", "joined", "leaving"


class NotConnected(DockyardError):
    """The container has no endpoint on the network (dockerd answers 500)."""


@dataclass
class Endpoint:
    """One container on one network, as the network service keeps it."""

    KIND: ClassVar[str] = "endpoint"
    id: str
    network_id: str
    container_id: str
    container_name: str = ""
    netns_path: str = ""
    netns_inode: str = ""  # "<st_dev>:<st_ino>" of the namespace at join (detects a reused path)
    ifname: str = "eth0"
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""  # CIDR
    ipv6_address: str = ""  # CIDR
    gateway: str = ""
    mac_address: str = ""
    link_local_ips: list[str] = field(default_factory=list)  # --link-local-ip (versionadded 0.3)
    pool_id: str = ""  # the IPAM pool ipv4_address came from ("" when the driver allocated it)
    pool_id6: str = ""
    ports: list[PortMapping] = field(default_factory=list)  # requested
    bound_ports: list[PortMapping] = field(default_factory=list)  # what the driver published
    result_extra: dict[str, Any] = field(default_factory=dict)  # driver-private, handed to leave
    gateway_bridge: bool = False  # the driver asked for the gateway bridge (EndpointResult)
    dns_upstreams: list[str] | None = None  # None: the host's resolv.conf nameservers
    state: str = JOINING
    created: str = field(default_factory=now_iso)




@dataclass
class NetworkCreate:
    """What ``POST /networks/create`` (or the CLI) asks for, in the core's words."""

    name: str
    driver: str = "bridge"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    ipam_pools: list[IpamPool] = field(default_factory=list)  # empty: one automatic IPv4 pool
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    check_duplicate: bool = True
    scope: str = ""



class Networks(Protocol):
    """What the fronts may ask of the ``networks`` service. ``ref`` is an ID, a unique ID prefix
    or a name; an unknown one raises :class:`~dockyard.errors.NotFound`."""

    def list(self) -> list[Network]: ...
    def get(self, ref: str) -> Network: ...
    def endpoints(self, network: Network | str) -> list[Endpoint]: ...
    def container_endpoints(self, container_id: str) -> list[Endpoint]: ...
    def endpoint(self, container_id: str, network: Network | str) -> Endpoint: ...
    def ports_of(self, container_id: str) -> list[PortMapping]: ...
    async def create(self, req: NetworkCreate) -> Network: ...
    async def remove(self, ref: str) -> Network: ...
    async def prune(self, until: str | None = None, labels: list[str] | None = None,
                    not_labels: list[str] | None = None) -> list[str]: ...
    async def connect_container(self, container_ref: str, network: str, settings: EndpointSettings) -> None:
        """``docker network connect``: join a running container now, or record the endpoint
        for a created or stopped one (joined at its next start)."""
        ...
    async def disconnect_container(self, container_ref: str, network: str, force: bool = False) -> None:
        """``docker network disconnect``; :class:`NotConnected` when it is not a member."""
        ...


__all__ = ["Endpoint", "JOINED", "JOINING", "LEAVING", "NetworkCreate", "Networks", "NotConnected"]
