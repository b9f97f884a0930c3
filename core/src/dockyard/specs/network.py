"""Area ``network``: the Networking API. Network drivers and IPAM drivers.

Network drivers register under ``dockyard.drivers.network`` (chosen per network by its
``Driver`` field: ``bridge``, ``host``, ``null``, ``cni``, ``overlay``...), IPAM drivers under
``dockyard.drivers.ipam`` (per network, default ``default``). The shapes cover both Docker's
remote driver protocol (CreateNetwork / CreateEndpoint+Join / Leave) and CNI (ADD / DEL /
CHECK, the plugin moving the interface itself): see ``shared/reference/plugin-protocols.md``.
A driver whose ``info.capabilities`` holds ``"global-scope"`` spans hosts (overlay); one holding
``"embedded-dns"`` serves the containers' resolver and subclasses :class:`EmbeddedDnsDriver`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from dockyard.specs._base import Driver, hookspec
from dockyard.specs.cluster import KeyValue, WatchEvent

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Network

T = TypeVar("T")


@dataclass
class PortMapping:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""  # "" = all addresses
    host_port: int = 0  # 0 = choose one
    host_port_end: int = 0  # with host_port: bind the first free port of host_port..host_port_end


@dataclass
class EndpointRequest:
    """One container joining one network."""

    network: Network
    container_id: str
    endpoint_id: str
    netns_path: str  # the container's network namespace
    ifname: str = "eth0"
    ipv4_address: str = ""  # CIDR, allocated by IPAM before join
    ipv6_address: str = ""
    gateway: str = ""
    mac_address: str = ""
    aliases: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    container_name: str = ""  # what other hosts resolve it by on a global-scope network
    #: extra link-local addresses of the interface (Docker's ``--link-local-ip``; versionadded 0.3)
    link_local_ips: list[str] = field(default_factory=list)
    # On leave: the sandbox (``netns_path``) is destroyed right after, as when a container
    # stops. A driver may then leave interfaces inside it for the kernel to delete with the
    # namespace instead of deleting each one (a veth deletion waits for an RCU grace period).
    sandbox_closing: bool = False


@dataclass
class EndpointResult:
    """What the driver made: addresses (when the driver allocates them itself) and ports."""

    ifname: str = "eth0"
    mac_address: str = ""
    ipv4_address: str = ""
    ipv6_address: str = ""
    gateway: str = ""
    ports: list[PortMapping] = field(default_factory=list)  # host ports actually bound
    extra: dict[str, Any] = field(default_factory=dict)  # driver-private, passed back on leave
    #: the endpoint gives the container no way out (an overlay's): unless another network of
    #: the container gives it a default route, the engine also attaches it to the local gateway
    #: bridge network (Docker's ``docker_gwbridge``), which carries its default route (NAT) and
    #: its published ports (``request.ports``). versionadded 0.3
    gateway_bridge: bool = False


class NetworkDriver(Driver):
    """The ABC of a network driver."""

    @abc.abstractmethod
    async def create_network(self, network: Network) -> dict[str, Any]:
        """Create the network's data plane (bridge...). Returns driver-private state.

        Validate ``network.options`` here: an unknown option is InvalidArgument.
        """

    @abc.abstractmethod
    async def delete_network(self, network: Network) -> None:
        """Remove everything the driver created for the network."""

    @abc.abstractmethod
    async def join(self, request: EndpointRequest) -> EndpointResult:
        """Attach the container's namespace to the network (veth, addresses, routes, ports)."""

    @abc.abstractmethod
    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        """Undo :meth:`join`. Must succeed when the namespace is already gone. With
        ``request.sandbox_closing`` the endpoint must stop carrying traffic at once, but its
        interfaces may go with the namespace."""

    async def restore(self, network: Network) -> None:
        """Re-create missing kernel objects of an existing network after a daemon restart."""

    def hold_addresses(self, addresses: list[str], held: bool) -> None:
        """While ``held``, carry the frames to and from ``addresses`` (IPv4) through this host's
        netfilter hooks, where a live migration's restore drops them (nft rules) until the
        source has given the container up; ``held=False`` undoes one such call. A driver whose
        data path skips those hooks (the overlay's eBPF fast path) overrides this; holds nest.
        Called on a worker thread. Default: nothing to do."""

    @property
    def allocates_addresses(self) -> bool:
        """True when the driver (like a CNI plugin) allocates addresses itself."""
        return False


#: The capability of a network driver that serves the embedded DNS. A driver declaring it in
#: ``info.capabilities`` subclasses :class:`EmbeddedDnsDriver`, and a subclass declares it: the
#: registry refuses a driver class where the two disagree when it loads.
EMBEDDED_DNS = "embedded-dns"


class EmbeddedDnsDriver(NetworkDriver):
    """A network driver that serves the embedded DNS (capability ``embedded-dns``).

    Containers on a user-defined network of such a driver resolve each other by name at
    ``127.0.0.11:53`` (UDP and TCP) inside their own network namespace, as with dockerd. The
    driver runs the resolvers; the network service owns the records and drives it:

    1. :meth:`dns_set_records` for every network in use whenever its names change (a container
       joins, leaves or is renamed, the ``dockyard_dns_records`` hook), and with ``{}`` when
       the network is removed;
    2. :meth:`dns_attach` once a container is on a user-defined network of this driver, and
       again whenever the set of its user-defined networks changes;
    3. :meth:`dns_detach` when it left the last of them, when another driver's resolver takes
       over, and at daemon shutdown.

    One resolver serves one sandbox (a container's namespace) and answers the names of all the
    networks it was attached for, whichever network each was set for. :meth:`Driver.close`
    stops every resolver still running. A driver without the capability just subclasses
    :class:`NetworkDriver`: its containers get no embedded DNS.

    .. versionadded:: 0.1
    """

    @abc.abstractmethod
    async def dns_set_records(self, network_id: str, records: dict[str, list[str]]) -> None:
        """Replace the records of network ``network_id``: lower-case name -> its IPv4 and IPv6
        addresses (plain, no prefix length). ``{}`` forgets the network.

        Called for networks whose containers may not be attached yet, in any order with
        :meth:`dns_attach`; resolvers already attached answer with the new records from their
        next query. Names are matched without regard to case or a trailing dot.
        """

    @abc.abstractmethod
    async def dns_attach(self, sandbox_id: str, netns_path: str, network_ids: list[str],
                         upstreams: list[tuple[str, int]]) -> None:
        """Serve ``127.0.0.11:53`` over UDP and TCP inside the namespace at ``netns_path`` for
        ``sandbox_id`` (a container ID), answering the names of ``network_ids`` only.

        Other names are forwarded to ``upstreams`` (``(address, port)``, tried in order, from
        the daemon's namespace as dockerd's resolver does; an empty list answers them
        NXDOMAIN). The namespace's loopback is up (a :meth:`join`
        brought it up). Called again for an attached sandbox, it replaces its networks and
        upstreams in place. Raises (an ``OSError``, or a ``DockyardError``) when the resolver
        cannot start; nothing then runs for the sandbox.
        """

    @abc.abstractmethod
    async def dns_detach(self, sandbox_id: str) -> None:
        """Stop the resolver of ``sandbox_id``; nothing to do when none runs. Must succeed when
        the namespace is already gone."""


#: The capability of a network driver whose networks span the hosts sharing a cluster store
#: (overlay). A driver declaring it subclasses :class:`GlobalScopeDriver`, and a subclass
#: declares it (checked by the registry at load, as ``embedded-dns``).
GLOBAL_SCOPE = "global-scope"


@dataclass(frozen=True)
class PeerEndpoint:
    """An endpoint of a global-scope network on another host, as the cluster store holds it:
    what the embedded DNS answers for it (name, aliases) and what the data plane needs.
    ``container_name`` is empty when a newer endpoint holds the name (a container rescheduled
    while its lost node's endpoint has not expired yet): a name answers with its newest place,
    and a local container of that name wins over every peer."""

    endpoint_id: str
    container_id: str
    container_name: str = ""
    host: str = ""  # the engine (its owner token or advertise address) the endpoint lives on
    ipv4_address: str = ""  # CIDR
    ipv6_address: str = ""
    mac_address: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterNetworkChange:
    """One change a global-scope driver saw in the cluster store.

    ``kind="network"``: network ``network_id`` was defined (``network`` holds the definition
    every engine mirrors, same ID) or removed (``network`` is None). ``kind="peers"``: the set
    of its endpoints on other hosts changed (:meth:`GlobalScopeDriver.peers`)."""

    kind: Literal["network", "peers"]
    network_id: str
    network: Network | None = None




class ChangeSubscription(Generic[T]):
    """One subscriber's queue of changes (what :meth:`GlobalScopeDriver.cluster_changes`
    returns): registered in ``subscribers`` when made, so nothing put after it is missed, and
    seeded with ``first``. A producer puts each change on every queue of the set; a ``None``
    ends the subscription (the producer closing)."""

    def __init__(self, subscribers: set[asyncio.Queue[Any]], first: Iterable[T] = ()) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        for item in first:
            self._queue.put_nowait(item)
        subscribers.add(self._queue)

    def __aiter__(self) -> ChangeSubscription[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._queue.get()
        if item is None:
            self._subscribers.discard(self._queue)
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._subscribers.discard(self._queue)

@dataclass
class ClusterNetworkRecords:
    """A global-scope driver's networks as the cluster store holds them: one definition per
    network at ``prefix + "networks/ID"`` and one endpoint per container at
    ``prefix + "endpoints/ID/EP"`` (JSON documents), kept from a listing and the watch's events
    (:func:`dockyard.specs.cluster.follow`). The engine's own endpoints (``mine``) are left out:
    it knows them first-hand. An endpoint's ``rev`` is the revision it was first published at
    (where a name is in two places, the newest wins). The overlay driver and the Docker plugin
    adapter keep their networks' cluster state in one each."""

    prefix: str
    mine: Callable[[dict[str, Any]], bool]
    defs: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def apply(self, ev: WatchEvent) -> tuple[Literal["network", "peers"], str] | None:
        """Apply one key change: ``("network", ID)`` when a definition came or went,
        ``("peers", ID)`` when the endpoints of other hosts changed, None when nothing did."""
        key, networks, endpoints = ev.key, self.prefix + "networks/", self.prefix + "endpoints/"
        if key.startswith(networks):
            net_id = key[len(networks):]
            if ev.type == "put":
                self.defs[net_id] = ev.kv.json()
            else:
                self.defs.pop(net_id, None)
                self.endpoints.pop(net_id, None)
            return "network", net_id
        if key.startswith(endpoints):
            net_id, _, ep_id = key[len(endpoints):].partition("/")
            if ev.type == "put":
                doc = ev.kv.json()
                if self.mine(doc):
                    return None
                doc["rev"] = ev.kv.create_revision or ev.kv.mod_revision
                self.endpoints.setdefault(net_id, {})[ep_id] = doc
            elif self.endpoints.get(net_id, {}).pop(ep_id, None) is None:
                return None
            return "peers", net_id
        return None

    def reload(self, kvs: Iterable[KeyValue]) -> tuple[list[str], dict[str, dict[str, dict[str, Any]]]]:
        """Replace everything with a fresh listing (after a compaction), in place. Returns the
        networks whose definition changed, and every network's endpoints as they were before
        (compare with :attr:`endpoints` for what changed)."""
        old_defs, before = dict(self.defs), {k: dict(v) for k, v in self.endpoints.items()}
        self.defs.clear()
        self.endpoints.clear()
        for kv in kvs:
            self.apply(WatchEvent("put", kv))
        changed = [n for n in sorted(set(old_defs) | set(self.defs)) if old_defs.get(n) != self.defs.get(n)]
        return changed, before

class GlobalScopeDriver(NetworkDriver):
    """A network driver whose networks are cluster-wide (capability ``global-scope``).

    The definition of a network is in the cluster store (``create_network`` puts it there,
    ``delete_network`` removes it, refusing while another host has endpoints on it); every
    engine sharing the store lists the network with the same ID and scope ``global``. The
    network service mirrors the definitions (:meth:`cluster_networks` at start, then
    :meth:`cluster_changes`) into its own store without calling ``create_network`` again, and
    merges :meth:`peers` into the network's embedded DNS records whenever they change, so a
    container resolves the names of containers on other hosts.

    .. versionadded:: 0.2
    """

    @abc.abstractmethod
    async def cluster_networks(self) -> list[Network]:
        """Every network of this driver defined in the cluster store (empty without a store)."""

    @abc.abstractmethod
    def peers(self, network_id: str) -> list[PeerEndpoint]:
        """Endpoints of ``network_id`` on other hosts, as last seen (a cache the driver keeps
        current from the store's watch; cheap, no I/O)."""

    @abc.abstractmethod
    def cluster_changes(self) -> AsyncIterator[ClusterNetworkChange]:
        """Changes of this driver's networks and peers, from now on, until the driver closes.
        Every caller gets every change (one iterator per caller)."""


#: Docker's IPAM address spaces: a local space's pools and addresses are this host's, a
#: global space's are the cluster's (every engine sharing a cluster store sees them).
LOCAL_ADDRESS_SPACE = "LocalDefault"
GLOBAL_ADDRESS_SPACE = "GlobalDefault"


@dataclass(frozen=True)
class Pool:
    pool_id: str
    subnet: str  # CIDR
    gateway: str = ""


class IpamDriver(Driver):
    """The ABC of an IPAM driver. Allocations persist in the driver's ``data_dir``."""

    def default_address_spaces(self) -> tuple[str, str]:
        """Docker's ``GetDefaultAddressSpaces``: the (local, global) address space names.
        A network of a ``global-scope`` driver asks for its pools in the global one.

        .. versionadded:: 0.2
        """
        return LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE

    @abc.abstractmethod
    async def request_pool(self, subnet: str = "", ip_range: str = "", gateway: str = "",
                           v6: bool = False, options: dict[str, str] | None = None,
                           address_space: str = "") -> Pool:
        """Reserve a pool; ``subnet=""`` picks a free one from the default pools.
        ``address_space`` (``""``: the local one) is one of :meth:`default_address_spaces`; a
        driver that has no global space raises ``InvalidArgument`` for it. The pool ID names
        its space, so the other calls need none."""

    @abc.abstractmethod
    async def release_pool(self, pool_id: str) -> None:
        """Release a pool and every address in it."""

    @abc.abstractmethod
    async def request_address(self, pool_id: str, address: str = "") -> str:
        """Allocate ``address`` (or the next free one); returns it in CIDR form."""

    @abc.abstractmethod
    async def release_address(self, pool_id: str, address: str) -> None:
        """Release an address exactly once; releasing a free address is a NotFound."""


class NetworkSpecs:
    """Hook specifications of the ``network`` area."""

    @hookspec
    def dockyard_dns_records(self, kernel: Kernel, network: Network) -> dict[str, list[str]] | None:
        """Extra name → addresses records served by the embedded DNS on ``network``.

        Results from every plugin are merged. Return ``None`` for none.

        .. versionadded:: 0.1
        """
