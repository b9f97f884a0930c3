"""``OverlayDriver``: VXLAN networks spanning every engine that shares a cluster store
(entry point ``dockyard.drivers.network:overlay``), Docker 1.9's ``--cluster-store`` overlay.

Cluster state (keys relative to the store's prefix, JSON values):

``overlay/networks/<network id>``
    ``{"vni", "network": <the Network, as every engine lists it>}``: the definition the engines
    mirror (same ID, scope ``global``). Written once by the engine that creates the network.
``overlay/vni/<VNI>``, ``overlay/names/<name>``
    The network ID: VNIs (4096 and up, as Docker) and names are taken create-if-absent, in the
    same transaction as the definition (a name is the cluster's, as with Docker's KV store).
``overlay/endpoints/<network id>/<endpoint id>``
    ``{"container_id", "name", "aliases", "ipv4", "ipv6", "mac", "vtep"}`` on the engine's lease
    (``endpoint-ttl`` seconds, kept alive while it runs): a lost node's endpoints go with it.

Each engine watches ``overlay/`` from the revision it listed. For a network with a local
endpoint it builds the data plane (:mod:`dockyard_network_overlay.plane`) and programs a
neighbour and an FDB entry per remote endpoint as they come and go; the network service hears
of every change (:meth:`cluster_changes`) and refreshes the embedded DNS with :meth:`peers`.

Settings (``network-opts`` driver option, else the daemon config key):

``vtep``
    The underlay address (or interface) VXLAN packets leave from; default: the address of
    ``--cluster-advertise`` (``ADDR:PORT`` or ``IFACE:PORT``).
``endpoint-ttl``
    Seconds a lost engine's endpoints stay published (its lease; default: ``discovery.ttl`` of
    ``--cluster-store-opt``, when a node counts as lost, else 10; at least 2).
``datapath``
    ``macvlan`` (default: containers' interfaces are macvlan children of the VXLAN device) or
    ``bridge`` (a bridge, and a veth per container): see :mod:`dockyard_network_overlay.plane`.
``fastpath``
    ``on`` (default) or ``off``: the eBPF fast path of ``macvlan`` networks
    (:mod:`dockyard_network_overlay.fastpath`): tcx programs encapsulate on the VXLAN device's
    egress and decapsulate on the underlay device's ingress for known unicast peers, skipping
    the kernel device's second pass through the host's IP stack; the kernel device carries the
    rest. Its maps follow the same watch as the FDB entries. When it cannot be had (no clang to
    build it, no CAP_BPF, a kernel without tcx) the driver says so once and uses the kernel path.

Network options: ``com.docker.network.driver.mtu`` (default: the underlay's MTU minus 50),
``com.docker.network.driver.overlay.vxlanid_list`` (a given VNI), ``dockyard.overlay.datapath``
(this network's data path on every host; default: each engine's ``datapath`` setting),
``dockyard.overlay.fastpath=off`` (this network without the fast path, on every host).
``encrypted`` is refused: IPsec between hosts is not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from dockyard.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from dockyard.jsonfile import write_json
from dockyard.model import Network, from_dict, to_dict
from dockyard.specs import ConfigOption, DriverContext, DriverInfo
from dockyard.specs.cluster import (
    ClusterStore,
    Compare,
    Delete,
    Get,
    KeptLease,
    Listing,
    Put,
    WatchEvent,
    discovery_ttl,
    follow,
)
from dockyard.specs.network import (
    GLOBAL_SCOPE,
    ChangeSubscription,
    ClusterNetworkChange,
    ClusterNetworkRecords,
    EndpointRequest,
    EndpointResult,
    GlobalScopeDriver,
    PeerEndpoint,
)
from dockyard_network_overlay import fastpath as F
from dockyard_network_overlay import plane as P

log = logging.getLogger(__name__)

ROOT = "overlay/"
NETWORKS = ROOT + "networks/"
VNIS = ROOT + "vni/"
NAMES = ROOT + "names/"
ENDPOINTS = ROOT + "endpoints/"
FIRST_VNI = 4096
MAX_VNI = (1 << 24) - 1
MTU_OPTION = "com.docker.network.driver.mtu"
VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
DATAPATH_OPTION = "dockyard.overlay.datapath"
FASTPATH_OPTION = "dockyard.overlay.fastpath"
ON_OFF = ("on", "off")
KNOWN_OPTIONS = frozenset({MTU_OPTION, VNI_OPTION, DATAPATH_OPTION, FASTPATH_OPTION, "encrypted"})
RACE_RETRIES = 20
RETIRE_GRACE = 10.0  # seconds a retired interface may wait for its namespace's end before it is deleted
NEED_STORE = ("overlay networks live in the cluster store: start the engine with "
              "--cluster-store etcd://HOST:PORT/PREFIX --cluster-advertise ADDR:PORT")


def _setting(context: DriverContext, key: str, default: str) -> str:
    value = context.options.get(key)
    if value is None:
        value = context.daemon_config.get(key)
    return default if value is None or value == "" else str(value)


class OverlayDriver(GlobalScopeDriver):
    info = DriverInfo(
        name="overlay", kind="network",
        description="VXLAN networks across the engines of a cluster store (etcd): VNI per network, "
                    "static FDB and ARP entries from the store, cluster-wide addresses",
        capabilities=frozenset({"connectivity", "isolation", "internal", GLOBAL_SCOPE}),
    )
    config_options = (
        ConfigOption("vtep", str, None, "underlay address or interface of the VXLAN tunnel endpoint"),
        ConfigOption("endpoint-ttl", int, None, "seconds a lost engine's overlay endpoints stay published"),
        ConfigOption("datapath", str, None, "containers' interfaces: macvlan children of the VXLAN device "
                     "(macvlan, the default) or veths on a bridge (bridge)"),
        ConfigOption("fastpath", str, None, "eBPF encapsulation/decapsulation in front of the VXLAN device for "
                     "macvlan networks: on (default) or off"),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.owner = context.owner
        self._store: ClusterStore | None = context.provided.get(ClusterStore)
        self._ttl = max(2, int(_setting(context, "endpoint-ttl", discovery_ttl(context.daemon_config, "10"))))
        advertise = str(context.daemon_config.get("cluster-advertise") or "")
        self._vtep_spec = _setting(context, "vtep", advertise.rsplit(":", 1)[0] if ":" in advertise else advertise)
        self._datapath = _setting(context, "datapath", P.MACVLAN)
        if self._datapath not in P.MODES:
            raise InvalidArgument(f"overlay: datapath must be one of {', '.join(P.MODES)}, not {self._datapath!r}")
        self._fastpath = _setting(context, "fastpath", "on")
        if self._fastpath not in ON_OFF:
            raise InvalidArgument(f"overlay: fastpath must be on or off, not {self._fastpath!r}")
        self._fast: F.FastPath | None = None
        self._fast_off = "off (driver setting fastpath=off)" if self._fastpath == "off" else "off (no cluster store)"
        self._fast_nets: dict[str, int] = {}  # network id -> its VXLAN device's ifindex, while attached
        self._underlay_index = 0
        self._vtep = ""
        self._underlay_mtu = 1500
        self._state_path = Path(context.data_dir) / "overlay.json"
        self._doc: dict[str, Any] = {"networks": {}, "endpoints": {}}
        self._records = ClusterNetworkRecords(ROOT, lambda doc: doc.get("vtep") == self._vtep)
        self._defs = self._records.defs  # network id -> definition document
        self._peers = self._records.endpoints  # network id -> endpoint id -> doc (other hosts')
        self._subscribers: set[asyncio.Queue[ClusterNetworkChange | None]] = set()
        self._lock = asyncio.Lock()
        self._lease: KeptLease | None = None  # this engine's endpoints are on it
        self._tasks: list[asyncio.Task[None]] = []
        self._reapers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        """Load the state; remove what a killed daemon left (links of ours no live endpoint
        explains, endpoints whose namespace died, networks left without endpoints); with a
        store, take a lease, list and watch ``overlay/``, rebuild the networks still in use
        with fresh FDB and neighbour entries and publish their endpoints again."""
        try:
            self._doc = json.loads(self._state_path.read_text())
        except (FileNotFoundError, ValueError):
            self._doc = {"networks": {}, "endpoints": {}}
        links = await asyncio.to_thread(P.list_links)
        eps = self._doc["endpoints"]
        dropped = [e for e, ep in eps.items()
                   if not await asyncio.to_thread(P.endpoint_alive, self._endpoint_plane(ep), links)]
        for eid in dropped:
            del eps[eid]
        used = {ep["network_id"] for ep in eps.values()}
        for net_id in [n for n in self._doc["networks"] if n not in used]:
            del self._doc["networks"][net_id]
        keep = {ep["veth"] for ep in eps.values() if ep.get("veth")}
        for entry in self._doc["networks"].values():
            keep |= {entry["bridge"], entry["vxlan"]}
        for name in links:
            if P.is_ours(self.owner, name) and name not in keep:
                log.info("removing leftover overlay link %s", name)
                await asyncio.to_thread(P.delete_link, name)
        await asyncio.to_thread(self._save)
        if self._store is None:
            return
        if self._vtep_spec:
            self._vtep = await asyncio.to_thread(P.address_of, self._vtep_spec)
            self._underlay_mtu = await asyncio.to_thread(P.mtu_towards, self._vtep)
        if self._fastpath == "on":
            await asyncio.to_thread(self._open_fast_path)
        self._lease = KeptLease(self._store, self._ttl, self._republish, name="overlay")
        await self._lease.grant()
        listing = await self._store.list(ROOT)
        for kv in listing:
            self._load(WatchEvent("put", kv))
        for eid in dropped:  # their keys may still be on the previous run's lease
            for net_id in self._defs:
                await self._store.delete(f"{ENDPOINTS}{net_id}/{eid}")
        for net_id, entry in self._doc["networks"].items():
            await asyncio.to_thread(P.ensure_network, self._plane(entry), True)
            await asyncio.to_thread(self._attach_fast, net_id, entry)
            for peer in self._peers.get(net_id, {}).values():
                await asyncio.to_thread(P.program_peer, entry["vxlan"], peer["ipv4"], peer["mac"], peer["vtep"],
                                        ip6=peer.get("ipv6", ""))
                await asyncio.to_thread(self._fast_peer, net_id, entry, peer)
        await self._republish(self._lease.id)
        self._tasks = [asyncio.create_task(follow(self._store, ROOT, listing.revision + 1, self._apply, self._resync,
                                                   name="overlay"), name="overlay-watch")]

    async def close(self) -> None:
        """Stop watching and refreshing the lease. Endpoints stay published until it expires
        (running containers keep their interfaces; the next start publishes them again)."""
        for task in list(self._reapers):
            task.cancel()  # their interfaces are deleted now
        await asyncio.gather(*self._reapers, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._lease is not None:
            await self._lease.close()
        for q in list(self._subscribers):
            q.put_nowait(None)
        if self._fast is not None:  # the links go with their fds: the kernel devices carry on
            self._fast.close()
            self._fast, self._fast_nets = None, {}
            self._fast_off = "off (driver closed)"

    def status(self) -> list[tuple[str, str]]:
        return [("VTEP", self._vtep or "(none: no cluster store)"),
                ("Networks built here", str(len(self._doc["networks"]))),
                ("Local endpoints", str(len(self._doc["endpoints"]))),
                ("Fast path", self._fast_status())]

    # ------------------------------------------------------------------ the eBPF fast path
    def _fast_status(self) -> str:
        if self._fast is None:
            return self._fast_off
        encap, decap = self._fast.stats()
        return (f"on (tcx BPF) for {len(self._fast_nets)} network(s): {encap} frames encapsulated, "
                f"{decap} decapsulated")

    def hold_addresses(self, addresses: list[str], held: bool) -> None:
        """A live migration's hold: the fast path leaves frames to and from ``addresses`` to
        the kernel's VXLAN device, so they pass the netfilter hooks where the hold drops them."""
        if self._fast is None:
            return
        for address in addresses:
            if ":" not in address:
                self._fast.hold(address, 1 if held else -1)

    def _open_fast_path(self) -> None:
        """The fast path's maps, at start (a live migration may hold addresses from then on);
        the programs are built and loaded with the first network."""
        try:
            self._fast = F.FastPath.create_maps()
        except OSError as exc:
            self._fast_unavailable(f"its maps: {exc}")

    def _fast_unavailable(self, why: str) -> None:
        self._fast_off = f"off (unavailable: {why})"
        log.warning("overlay: no eBPF fast path (%s); the kernel's VXLAN devices carry all traffic", why)
        if self._fast is not None:
            self._fast.close()
        self._fast, self._fast_nets = None, {}

    def _attach_fast(self, net_id: str, entry: dict[str, Any]) -> None:
        """The programs on the underlay's ingress and this network's VXLAN device's egress, and
        its VNI in the map (a macvlan network with the fast path on; in a worker thread)."""
        if self._fast is None or entry.get("mode") != P.MACVLAN or entry.get("fastpath", "on") != "on":
            return
        try:
            self._fast.load(F.build_object(Path(self.context.data_dir) / "bpf"))
            if not self._underlay_index:
                self._underlay_index = P.index_of_address(self._vtep)
            vx = P.link_index(entry["vxlan"])
            if not self._underlay_index or not vx:
                raise Unavailable(f"no link holds {self._vtep}" if vx else f"{entry['vxlan']} is missing")
            self._fast.attach(self._underlay_index, ingress=True)
            self._fast.attach(vx, ingress=False)
            self._fast.set_network(int(entry["vni"]), vx, self._vtep)
        except (OSError, ValueError, Unavailable) as exc:
            self._fast_unavailable(str(exc))
            return
        self._fast_nets[net_id] = vx

    def _detach_fast(self, net_id: str, entry: dict[str, Any]) -> None:
        vx = self._fast_nets.pop(net_id, None)
        if self._fast is None or vx is None:
            return
        for peer in self._peers.get(net_id, {}).values():
            self._fast.del_peer(vx, peer["mac"])
        self._fast.del_network(int(entry["vni"]))
        self._fast.detach(vx, ingress=False)
        if not self._fast_nets:
            self._fast.detach(self._underlay_index, ingress=True)

    def _fast_peer(self, net_id: str, entry: dict[str, Any], doc: dict[str, Any], add: bool = True) -> None:
        """One remote endpoint's fast path entry, after its FDB entry (a worker thread)."""
        vx = self._fast_nets.get(net_id)
        if self._fast is None or vx is None:
            return
        if add:
            self._fast.set_peer(vx, doc["mac"], doc["vtep"], self._vtep, int(entry["vni"]), self._underlay_index)
        else:
            self._fast.del_peer(vx, doc["mac"])

    def _save(self) -> None:
        write_json(self._state_path, self._doc)

    def _need_store(self) -> ClusterStore:
        if self._store is None:
            self._store = self.context.need(ClusterStore, NEED_STORE)
        if not self._vtep:
            raise Unavailable("the overlay driver has no tunnel endpoint address: start the engine with "
                              "--cluster-advertise ADDR:PORT (or set the overlay driver option vtep)")
        return self._store

    # ------------------------------------------------------------------ the store's view
    def _load(self, ev: WatchEvent) -> ClusterNetworkChange | None:
        """Apply one key change to the caches; the change to announce, if any."""
        change = self._records.apply(ev)
        if change is None:
            return None
        kind, net_id = change
        return ClusterNetworkChange(kind, net_id, self._definition(net_id) if kind == "network" else None)

    def _definition(self, net_id: str) -> Network | None:
        doc = self._defs.get(net_id)
        if doc is None:
            return None
        net = from_dict(Network, doc["network"])
        net.scope = net.scope if net.scope not in ("", "local") else "global"
        return net

    async def _resync(self, listing: Listing) -> None:
        changed, old_peers = self._records.reload(listing)
        for net_id in changed:
            self._announce(ClusterNetworkChange("network", net_id, self._definition(net_id)))
        for net_id in set(old_peers) | set(self._peers):
            before, after = old_peers.get(net_id, {}), self._peers.get(net_id, {})
            entry = self._doc["networks"].get(net_id)
            if entry is not None:
                for eid, doc in before.items():
                    if eid not in after:
                        await asyncio.to_thread(P.program_peer, entry["vxlan"], doc["ipv4"], doc["mac"],
                                                doc["vtep"], False, ip6=doc.get("ipv6", ""))
                        await asyncio.to_thread(self._fast_peer, net_id, entry, doc, False)
                for doc in after.values():
                    await asyncio.to_thread(P.program_peer, entry["vxlan"], doc["ipv4"], doc["mac"], doc["vtep"],
                                            ip6=doc.get("ipv6", ""))
                    await asyncio.to_thread(self._fast_peer, net_id, entry, doc)
            if before != after:
                self._announce(ClusterNetworkChange("peers", net_id))

    async def _apply(self, ev: WatchEvent) -> None:
        before = None
        if ev.key.startswith(ENDPOINTS) and ev.type == "delete":
            net_id, _, ep_id = ev.key[len(ENDPOINTS):].partition("/")
            before = self._peers.get(net_id, {}).get(ep_id)
        change = self._load(ev)
        if change is None:
            return
        if change.kind == "peers":
            async with self._lock:
                entry = self._doc["networks"].get(change.network_id)
                if entry is not None:
                    doc = before if ev.type == "delete" else self._peers[change.network_id][ev.key.rsplit("/", 1)[1]]
                    if doc is not None:
                        await asyncio.to_thread(P.program_peer, entry["vxlan"], doc["ipv4"], doc["mac"], doc["vtep"],
                                                ev.type == "put", ip6=doc.get("ipv6", ""))
                        await asyncio.to_thread(self._fast_peer, change.network_id, entry, doc, ev.type == "put")
        self._announce(change)

    def _announce(self, change: ClusterNetworkChange) -> None:
        for q in list(self._subscribers):
            q.put_nowait(change)

    async def _publish(self, ep_id: str, ep: dict[str, Any]) -> None:
        assert self._lease is not None
        await self._lease.put(*self._endpoint_record(ep_id, ep), lambda: ep_id in self._doc["endpoints"])

    def _endpoint_record(self, ep_id: str, ep: dict[str, Any]) -> tuple[str, bytes]:
        doc = {"container_id": ep["container_id"], "name": ep.get("name", ""), "aliases": ep.get("aliases", []),
               "ipv4": ep["ipv4"], "ipv6": ep.get("ipv6", ""), "mac": ep["mac"], "vtep": self._vtep}
        return f"{ENDPOINTS}{ep['network_id']}/{ep_id}", json.dumps(doc).encode()

    async def _republish(self, lease: int) -> None:
        """Every endpoint of this engine, published on ``lease`` (at start, and on a new lease
        when the old one expired)."""
        for ep_id, ep in list(self._doc["endpoints"].items()):
            await self._store.put(*self._endpoint_record(ep_id, ep), lease)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ GlobalScopeDriver
    async def cluster_networks(self) -> list[Network]:
        return [n for n in (self._definition(i) for i in list(self._defs)) if n is not None]

    def peers(self, network_id: str) -> list[PeerEndpoint]:
        """Endpoints on other hosts. A container name two of them hold (a container rescheduled
        while its lost node's endpoint has not expired yet) is given to the newest only."""
        items = sorted(self._peers.get(network_id, {}).items())
        newest: dict[str, int] = {}
        for _eid, d in items:
            if d.get("name"):
                newest[d["name"]] = max(newest.get(d["name"], 0), int(d.get("rev", 0)))
        return [PeerEndpoint(endpoint_id=eid, container_id=d.get("container_id", ""),
                             container_name=d.get("name", "") if int(d.get("rev", 0)) == newest.get(d.get("name"))
                             else "",
                             host=d.get("vtep", ""), ipv4_address=d.get("ipv4", ""),
                             ipv6_address=d.get("ipv6", ""), mac_address=d.get("mac", ""),
                             aliases=tuple(d.get("aliases") or ()))
                for eid, d in items]

    def cluster_changes(self) -> AsyncIterator[ClusterNetworkChange]:
        return ChangeSubscription[ClusterNetworkChange](self._subscribers)

    # ------------------------------------------------------------------ networks
    def _check_options(self, network: Network) -> int:
        unknown = sorted(set(network.options) - KNOWN_OPTIONS)
        if unknown:
            raise InvalidArgument(f"overlay: unknown network option(s) {', '.join(unknown)}")
        if "encrypted" in network.options:
            raise InvalidArgument("overlay: --opt encrypted is refused: IPsec between hosts is not implemented "
                                  "in dockyard-network-overlay (traffic would go unencrypted)")
        if network.options.get(DATAPATH_OPTION, P.MACVLAN) not in P.MODES:
            raise InvalidArgument(f"overlay: {DATAPATH_OPTION} must be one of {', '.join(P.MODES)}")
        if network.options.get(FASTPATH_OPTION, "on") not in ON_OFF:
            raise InvalidArgument(f"overlay: {FASTPATH_OPTION} must be on or off")
        v4 = [p for p in network.ipam_pools if ":" not in p.subnet]
        v6 = [p for p in network.ipam_pools if ":" in p.subnet]
        if not v4:
            raise InvalidArgument("an overlay network needs an IPv4 pool (subnet)")
        if len(v4) > 1 or len(v6) > 1:
            raise InvalidArgument("an overlay network takes one IPv4 subnet (and, with --ipv6, one IPv6 subnet)")
        if v6 and not network.enable_ipv6:
            raise InvalidArgument("overlay: an IPv6 subnet needs --ipv6")
        if MTU_OPTION in network.options:
            try:
                mtu = int(network.options[MTU_OPTION])
            except ValueError as exc:
                raise InvalidArgument(f"overlay: bad {MTU_OPTION} {network.options[MTU_OPTION]!r}") from exc
            if not 576 <= mtu <= 65535:
                raise InvalidArgument(f"overlay: {MTU_OPTION} must be 576..65535")
        vni = 0
        if network.options.get(VNI_OPTION):
            try:
                vni = int(network.options[VNI_OPTION].split(",")[0])
            except ValueError as exc:
                raise InvalidArgument(f"overlay: bad {VNI_OPTION} {network.options[VNI_OPTION]!r}") from exc
            if not 1 <= vni <= MAX_VNI:
                raise InvalidArgument(f"overlay: VNI {vni} is out of range 1..{MAX_VNI}")
        return vni

    async def create_network(self, network: Network) -> dict[str, Any]:
        """Take a VNI and publish the definition, in one transaction. Nothing is built on
        this host until a container joins."""
        wanted = self._check_options(network)
        store = self._need_store()
        key = NETWORKS + network.id
        for _ in range(RACE_RETRIES):
            if wanted:
                vni = wanted
            else:
                used = {int(kv.key[len(VNIS):]) for kv in await store.list(VNIS)}
                vni = next(v for v in range(FIRST_VNI, MAX_VNI + 1) if v not in used)
            definition = to_dict(network)
            definition["scope"] = network.scope if network.scope not in ("", "local") else "global"
            definition["extra"] = {"pool_ids": list(network.extra.get("pool_ids", [])), "vni": vni}
            doc = {"vni": vni, "network": definition}
            name_key = NAMES + network.name
            result = await store.txn(
                [Compare.absent(VNIS + str(vni)), Compare.absent(key), Compare.absent(name_key)],
                [Put(VNIS + str(vni), network.id.encode()), Put(key, json.dumps(doc).encode()),
                 Put(name_key, network.id.encode())],
                [Get(name_key)])
            if result.succeeded:
                self._defs[network.id] = doc
                return {"vni": vni}
            if result.results and result.results[0]:
                raise Conflict(f"network with name {network.name} already exists in the cluster")
            if wanted:
                raise Conflict(f"overlay: VNI {vni} is already used by another network")
        raise Unavailable("overlay: could not take a VNI: too many concurrent network creations")

    async def delete_network(self, network: Network) -> None:
        """Remove the definition (and its VNI) from the cluster; refused while any host has an
        endpoint on it."""
        async with self._lock:
            if any(ep["network_id"] == network.id for ep in self._doc["endpoints"].values()):
                raise Forbidden(f"network {network.name} has active endpoints")
        store = self._store or self.context.need(ClusterStore, NEED_STORE)
        remote = await store.list(f"{ENDPOINTS}{network.id}/")
        if len(remote):
            hosts = sorted({kv.json().get("vtep", "?") for kv in remote})
            raise Forbidden(f"network {network.name} has active endpoints on other hosts ({', '.join(hosts)})")
        kv = await store.get(NETWORKS + network.id)
        vni = kv.json()["vni"] if kv is not None else network.extra.get("vni")
        ops: list[Any] = [Delete(NETWORKS + network.id), Delete(f"{ENDPOINTS}{network.id}/", prefix=True)]
        named = await store.get(NAMES + network.name)
        if named is not None and named.value.decode() == network.id:
            ops.append(Delete(NAMES + network.name))
        if vni:
            owner = await store.get(VNIS + str(vni))
            if owner is not None and owner.value.decode() == network.id:
                ops.append(Delete(VNIS + str(vni)))
        await store.txn([], ops)
        self._defs.pop(network.id, None)
        await self._teardown_if_unused(network.id)

    async def restore(self, network: Network) -> None:
        """Nothing: networks in use were rebuilt at :meth:`setup`; others are built at a join."""

    def _plane(self, entry: dict[str, Any]) -> P.NetworkPlane:
        # a state file of a version before the macvlan data path: bridge
        return P.NetworkPlane(bridge=entry["bridge"], vxlan=entry["vxlan"], vni=entry["vni"], vtep=self._vtep,
                              mtu=entry["mtu"], gateways=list(entry["gateways"]), mode=entry.get("mode", P.BRIDGE))

    def _endpoint_plane(self, ep: dict[str, Any], entry: dict[str, Any] | None = None) -> P.EndpointPlane:
        """The endpoint record ``ep`` (its network's ``entry``, when built) as the plane sees it."""
        entry = entry or self._doc["networks"].get(ep["network_id"]) or {}
        return P.EndpointPlane(bridge=entry.get("bridge", ""), veth=ep.get("veth", ""),
                               netns_path=ep.get("netns", ""), ifname=ep.get("ifname", "eth0"), mac=ep["mac"],
                               mtu=entry.get("mtu", 0), address=ep["ipv4"], gateway=entry.get("gateway", ""),
                               mode=ep.get("mode", P.BRIDGE), vxlan=entry.get("vxlan", ""),
                               address6=ep.get("ipv6", ""), gateway6=entry.get("gateway6", ""))

    async def _build(self, network: Network) -> dict[str, Any]:
        """The network's bridge and VXLAN device on this host, with every known peer (under
        ``_lock``)."""
        entry = self._doc["networks"].get(network.id)
        if entry is not None:
            return entry
        doc = self._defs.get(network.id)
        if doc is None and self._store is not None:
            kv = await self._store.get(NETWORKS + network.id)
            doc = kv.json() if kv is not None else None
        if doc is None:
            raise NotFound(f"overlay network {network.name} is not defined in the cluster store")
        vni = int(doc["vni"])
        pool = next(p for p in network.ipam_pools if ":" not in p.subnet)
        pool6 = next((p for p in network.ipam_pools if ":" in p.subnet), None)
        gateways = []
        for p in (pool, pool6):
            if p is not None and p.gateway and not network.internal:
                gateways.append(f"{p.gateway}/{ipaddress.ip_network(p.subnet, strict=False).prefixlen}")
        mtu = int(network.options.get(MTU_OPTION) or self._underlay_mtu - P.VXLAN_OVERHEAD)
        entry = {"vni": vni, "bridge": P.bridge_name(self.owner, vni), "vxlan": P.vxlan_name(self.owner, vni),
                 "mtu": mtu, "gateways": gateways, "gateway": "" if network.internal else pool.gateway,
                 "gateway6": "" if network.internal or pool6 is None else pool6.gateway,
                 "mode": network.options.get(DATAPATH_OPTION) or self._datapath,
                 "fastpath": network.options.get(FASTPATH_OPTION) or "on"}
        self._doc["networks"][network.id] = entry
        self._save()
        try:
            await asyncio.to_thread(P.ensure_network, self._plane(entry), True)
            await asyncio.to_thread(self._attach_fast, network.id, entry)
            for peer in self._peers.get(network.id, {}).values():
                await asyncio.to_thread(P.program_peer, entry["vxlan"], peer["ipv4"], peer["mac"], peer["vtep"],
                                        ip6=peer.get("ipv6", ""))
                await asyncio.to_thread(self._fast_peer, network.id, entry, peer)
        except BaseException:
            del self._doc["networks"][network.id]
            self._save()
            await asyncio.to_thread(self._detach_fast, network.id, entry)
            await asyncio.to_thread(P.delete_network, self._plane(entry))
            raise
        return entry

    async def _teardown_if_unused(self, net_id: str) -> None:
        async with self._lock:
            if any(ep["network_id"] == net_id for ep in self._doc["endpoints"].values()):
                return
            entry = self._doc["networks"].pop(net_id, None)
            if entry is None:
                return
            self._save()
            await asyncio.to_thread(self._detach_fast, net_id, entry)
            await asyncio.to_thread(P.delete_network, self._plane(entry))

    # ------------------------------------------------------------------ endpoints
    async def join(self, request: EndpointRequest) -> EndpointResult:
        if not request.ipv4_address:
            raise InvalidArgument("the overlay driver needs an IPv4 address (from IPAM) to join")
        if request.ports and request.network.internal:
            raise InvalidArgument("an --internal overlay network publishes no ports (it has no gateway bridge)")
        self._need_store()
        net = request.network
        mac = request.mac_address or P.mac_for(request.ipv4_address)
        async with self._lock:
            if request.endpoint_id in self._doc["endpoints"]:
                raise Conflict(f"endpoint {request.endpoint_id[:12]} already joined")
            entry = await self._build(net)
            mode = entry.get("mode", P.BRIDGE)
            veth = P.veth_name(self.owner, request.endpoint_id) if mode == P.BRIDGE else ""
            ep = {"network_id": net.id, "veth": veth, "container_id": request.container_id,
                  "name": request.container_name, "aliases": list(request.aliases),
                  "ipv4": request.ipv4_address, "ipv6": request.ipv6_address, "mac": mac, "mode": mode,
                  "netns": request.netns_path,
                  "ifname": request.ifname}
            self._doc["endpoints"][request.endpoint_id] = ep
            self._save()
        gateway = entry["gateway"]
        plane = self._endpoint_plane(ep, entry)
        try:
            await asyncio.to_thread(P.add_endpoint, plane)
            await self._publish(request.endpoint_id, ep)
        except BaseException:
            async with self._lock:
                self._doc["endpoints"].pop(request.endpoint_id, None)
                self._save()
            await asyncio.to_thread(P.remove_endpoint, plane)
            with contextlib.suppress(Exception):
                await self._store.delete(f"{ENDPOINTS}{net.id}/{request.endpoint_id}")  # type: ignore[union-attr]
            await self._teardown_if_unused(net.id)
            raise
        return EndpointResult(ifname=request.ifname, mac_address=mac, ipv4_address=request.ipv4_address,
                              ipv6_address=request.ipv6_address,
                              gateway=gateway, extra={"veth": veth, "vni": str(entry["vni"]), "datapath": mode,
                                                      "fastpath": "on" if net.id in self._fast_nets else "off"},
                              # egress (NAT) and published ports: the engine's gateway bridge
                              gateway_bridge=not net.internal)

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        """Unpublish the endpoint, delete its interface, and take the network's devices down with
        its last local endpoint. Succeeds when anything is already gone."""
        net_id = request.network.id
        async with self._lock:
            ep = self._doc["endpoints"].pop(request.endpoint_id, None)
            self._save()
        mode = (ep or {}).get("mode") or result.extra.get("datapath") or P.BRIDGE
        veth = (ep or {}).get("veth") or result.extra.get("veth") or P.veth_name(self.owner, request.endpoint_id)
        if self._store is not None:
            try:
                await self._store.delete(f"{ENDPOINTS}{net_id}/{request.endpoint_id}")
            except Exception:  # noqa: BLE001 - on the lease: gone with it at the latest
                log.warning("could not unpublish overlay endpoint %s", request.endpoint_id[:12], exc_info=True)
        if mode == P.MACVLAN:
            plane = P.EndpointPlane(bridge="", veth="", netns_path=request.netns_path, ifname=request.ifname,
                                    mac="", mtu=0, address="", mode=P.MACVLAN)
            if request.sandbox_closing and await asyncio.to_thread(P.set_endpoint_down, plane):
                # a macvlan child inside the namespace: the kernel deletes it with the
                # namespace; a reaper deletes it if something keeps the namespace (down, it
                # keeps no other child from taking its MAC, so its address)
                self._retire(request.ifname, functools.partial(P.remove_endpoint, plane))
            else:
                await asyncio.to_thread(P.remove_endpoint, plane)
        elif request.sandbox_closing and await asyncio.to_thread(P.set_down, veth):
            # the kernel deletes the pair with the namespace, without the RCU grace period an
            # explicit deletion waits for (~25 ms); a reaper deletes it if something keeps it
            self._retire(veth, functools.partial(P.delete_link, veth))
        else:
            await asyncio.to_thread(P.delete_link, veth)
        await self._teardown_if_unused(net_id)

    def _retire(self, name: str, delete: Callable[[], object]) -> None:
        task = asyncio.create_task(self._reap(delete), name=f"reap-{name}")
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def _reap(self, delete: Callable[[], object]) -> None:
        try:
            await asyncio.sleep(RETIRE_GRACE)
        finally:  # cancelled by close(): delete now
            await asyncio.to_thread(delete)
