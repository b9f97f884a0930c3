"""``BridgeDriver``: a Linux bridge per network, a veth pair per endpoint, nftables for
published ports, masquerading and isolation (entry point ``dockyard.drivers.network:bridge``).

Settings (a driver option in ``DriverContext.options``, else the daemon config key of the same
name, as in docker's ``daemon.json``):

``mtu``
    Default MTU of networks without ``com.docker.network.driver.mtu`` (1500).
``port-range``
    Where ``host_port=0`` picks a port (``49153-65535``, dockerd's).
``ip-forward``
    ``true`` sets the host-wide ``net.ipv4.ip_forward`` at setup, which container egress and
    ports published to other hosts need (dockerd always does). Default ``false``: only our own
    bridges forward (per-interface ``forwarding``), the host-wide switch is left alone.
``live-restore``
    ``true`` keeps the nft rules at :meth:`close`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, Forbidden, InvalidArgument, NotFound
from dockyard.model import Network
from dockyard.specs import ConfigOption, DriverContext, DriverInfo
from dockyard.specs.network import (
    EMBEDDED_DNS,
    EmbeddedDnsDriver,
    EndpointRequest,
    EndpointResult,
    PortMapping,
)
from dockyard_network_bridge import names, netlink, nft, ports
from dockyard_network_bridge.dns import DnsRecords, EmbeddedDns
from dockyard_network_bridge.options import parse_options
from dockyard_network_bridge.state import StateFile

log = logging.getLogger(__name__)
_TRUE = {"1", "t", "true", "yes", "on"}
RETIRE_GRACE = 10.0  # seconds a retired veth may wait for its namespace's end before it is deleted


def _setting(context: DriverContext, key: str, default: str) -> str:
    """A driver option, else the daemon config key of the same name (docker's ``daemon.json``
    has ``mtu``, ``ip-forward``, ``live-restore``), else ``default``."""
    value = context.options.get(key)
    if value is None:
        value = context.daemon_config.get(key)
    return default if value is None else str(value)


def _first_host(subnet: str) -> str:
    net = ipaddress.ip_network(subnet, strict=False)
    return str(net.network_address + 1)


async def _all(*aws: Any) -> None:
    """Run ``aws`` concurrently; every one finishes before the first failure is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class BridgeDriver(EmbeddedDnsDriver):
    info = DriverInfo(
        name="bridge", kind="network",
        description="Linux bridge per network, veth per endpoint, nftables port publishing",
        capabilities=frozenset({"connectivity", "isolation", "port-publishing", "internal", "ipv6",
                                EMBEDDED_DNS}),
    )
    config_options = (
        ConfigOption("mtu", int, 1500, "MTU of bridge networks without their own option"),
        ConfigOption("ip-forward", bool, False, "enable net.ipv4.ip_forward (dockerd: on)"),
        ConfigOption("port-range", str, None, "host ports chosen for -p CONTAINER_PORT: LOW-HIGH"),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.owner = context.owner
        self.table = names.table_name(context.owner)
        mtu = _setting(context, "mtu", "1500")
        try:
            self._default_mtu = int(mtu)
        except ValueError as exc:
            raise InvalidArgument(f"bridge driver option mtu: {mtu!r}") from exc
        self._port_range = ports.parse_range(_setting(context, "port-range", "{}-{}".format(*ports.DEFAULT_RANGE)))
        self._ip_forward = _setting(context, "ip-forward", "false").lower() in _TRUE
        self._live_restore = _setting(context, "live-restore", "false").lower() in _TRUE
        self._state = StateFile(Path(context.data_dir) / "bridge.json")
        self._doc: dict[str, Any] = {"networks": {}, "endpoints": {}}
        self._lock = asyncio.Lock()
        self._ready = False
        self._dns_records = DnsRecords()
        self._dns: dict[str, EmbeddedDns] = {}
        self._reapers: set[asyncio.Task[None]] = set()  # retired veths awaiting their namespace's end

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        """Load the state, forget endpoints whose veth vanished (their namespace died), delete
        our links no record explains, re-create missing bridges, and rebuild the nft table."""
        async with self._lock:
            self._doc = await asyncio.to_thread(self._state.load)
            links = {link.name: link for link in await asyncio.to_thread(netlink.list_links)}
            eps = self._doc["endpoints"]
            for eid in [e for e, ep in eps.items() if ep["veth"] not in links]:
                del eps[eid]
            known_veths = {ep["veth"] for ep in eps.values()}
            known_bridges = {n["bridge"] for n in self._doc["networks"].values()}
            for link in links.values():
                stray = ((link.kind == "veth" and names.is_veth_name(self.owner, link.name)
                          and link.name not in known_veths)
                         or (link.kind == "bridge" and names.is_bridge_name(self.owner, link.name)
                             and link.name not in known_bridges))
                if stray:
                    log.info("removing leftover %s %s", link.kind, link.name)
                    await asyncio.to_thread(netlink.delete_link, link.name)
            for net_id in self._doc["networks"]:
                await self._plumb_network(net_id)
            await asyncio.to_thread(self._state.save, self._doc)
            if self._ip_forward:
                await asyncio.to_thread(netlink.write_sysctl, Path("/proc/sys/net/ipv4/ip_forward"), "1")
            await self._sync_rules()
            self._ready = True

    async def close(self) -> None:
        """Remove this daemon's nft table (kept with ``live-restore``); bridges and veths stay,
        so running containers keep their interfaces and a restart re-creates the rules."""
        for sandbox_id in list(self._dns):
            await self.dns_detach(sandbox_id)
        for task in list(self._reapers):
            task.cancel()  # their veths are deleted now, not after the grace
        await asyncio.gather(*self._reapers, return_exceptions=True)
        async with self._lock:
            if self._ready and not self._live_restore and nft.available():
                await nft.delete_table(self.table)
            self._ready = False

    def status(self) -> list[tuple[str, str]]:
        return [("Networks", str(len(self._doc["networks"]))),
                ("Endpoints", str(len(self._doc["endpoints"]))),
                ("nftables table", f"{nft.FAMILY} {self.table}")]

    # ------------------------------------------------------------------ networks
    def _network_entry(self, network: Network) -> dict[str, Any]:
        opts = parse_options(dict(network.options), self._default_mtu)
        if not network.ipam_pools:
            raise InvalidArgument("a bridge network needs at least one IPAM pool (subnet)")
        gateways, subnets4 = [], []
        for pool in network.ipam_pools:
            try:
                subnet = ipaddress.ip_network(pool.subnet, strict=False)
                gw = ipaddress.ip_address((pool.gateway or _first_host(pool.subnet)).split("/")[0])
            except ValueError as exc:
                raise InvalidArgument(f"bad IPAM pool {pool.subnet!r}/{pool.gateway!r}: {exc}") from exc
            if gw not in subnet:
                raise InvalidArgument(f"gateway {gw} is not inside {subnet}")
            gateways.append(f"{gw}/{subnet.prefixlen}")
            if subnet.version == 4:
                subnets4.append(str(subnet))
        bridge = opts.bridge_name or names.bridge_name(self.owner, network.id)
        return {"bridge": bridge, "owned": not opts.bridge_name, "gateways": gateways,
                "subnets4": subnets4, "internal": bool(network.internal), "options": opts.to_state()}

    async def create_network(self, network: Network) -> dict[str, Any]:
        entry = self._network_entry(network)
        async with self._lock:
            if network.id in self._doc["networks"]:
                raise Conflict(f"network {network.id[:12]} already exists in the bridge driver")
            for other_id, other in self._doc["networks"].items():
                if other["bridge"] == entry["bridge"]:
                    raise Conflict(f"bridge {entry['bridge']} is already used by network {other_id[:12]}")
            if not entry["owned"]:  # a user-named bridge: removed with the network only if made here
                entry["owned"] = await asyncio.to_thread(netlink.get_link, entry["bridge"]) is None
            self._doc["networks"][network.id] = entry
            try:
                # the rules name the bridge, they do not need it to exist: both at once
                await _all(self._plumb_network(network.id), self._sync_rules())
                await asyncio.to_thread(self._state.save, self._doc)
            except BaseException:
                del self._doc["networks"][network.id]
                if entry["owned"]:
                    await asyncio.to_thread(netlink.delete_link, entry["bridge"])
                await asyncio.to_thread(self._state.save, self._doc)
                raise
        return {"bridge": entry["bridge"]}

    async def delete_network(self, network: Network) -> None:
        """Remove the bridge (when this driver made it) and the network's rules. Refused while
        endpoints are attached; a network the driver does not know is already gone."""
        async with self._lock:
            entry = self._doc["networks"].get(network.id)
            if entry is None:
                derived = names.bridge_name(self.owner, network.id)
                await asyncio.to_thread(netlink.delete_link, derived)
                return
            attached = [e for e, ep in self._doc["endpoints"].items() if ep["network_id"] == network.id]
            if attached:
                raise Forbidden(f"network {network.id[:12]} has active endpoints")
            del self._doc["networks"][network.id]
            await asyncio.to_thread(self._state.save, self._doc)
            if entry["owned"]:
                await _all(self._sync_rules(), asyncio.to_thread(netlink.delete_link, entry["bridge"]))
            else:
                await self._sync_rules()

    async def restore(self, network: Network) -> None:
        """Re-create the bridge (addresses, sysctls) when missing, re-attach our veths of this
        network that lost it, and re-install the rules. Existing veths are left as they are."""
        async with self._lock:
            if network.id not in self._doc["networks"]:
                self._doc["networks"][network.id] = self._network_entry(network)
            await self._plumb_network(network.id)
            await asyncio.to_thread(self._state.save, self._doc)
            await self._sync_rules()

    async def _plumb_network(self, net_id: str) -> None:
        entry = self._doc["networks"][net_id]
        await asyncio.to_thread(netlink.ensure_bridge, entry["bridge"], entry["gateways"],
                                entry["options"]["mtu"])
        for ep in self._doc["endpoints"].values():
            if ep["network_id"] == net_id:
                await asyncio.to_thread(netlink.enslave, ep["veth"], entry["bridge"])

    # ------------------------------------------------------------------ endpoints
    async def join(self, request: EndpointRequest) -> EndpointResult:
        if not request.ipv4_address and not request.ipv6_address:
            raise InvalidArgument("the bridge driver needs an address (from IPAM) to join")
        if not names.valid_ifname(request.ifname):
            raise InvalidArgument(f"bad interface name {request.ifname!r}")
        if request.network.id not in self._doc["networks"]:
            await self.restore(request.network)
        async with self._lock:
            if request.endpoint_id in self._doc["endpoints"]:
                raise Conflict(f"endpoint {request.endpoint_id[:12]} already joined")
            entry = self._doc["networks"][request.network.id]
            gw4 = gw6 = ""
            if not entry["internal"]:
                for gw in entry["gateways"]:
                    if ipaddress.ip_interface(gw).version == 4:
                        gw4 = gw4 or (request.gateway or gw)
                    else:
                        gw6 = gw6 or gw
            bound: list[PortMapping] = []
            if request.ports and not entry["internal"]:
                in_use = [ports.Binding(p["protocol"], p["host_ip"], p["host_port"])
                          for ep in self._doc["endpoints"].values() for p in ep["ports"]]
                bound = await asyncio.to_thread(ports.allocate, request.ports, in_use, self._port_range,
                                                entry["options"]["host_binding_ipv4"])
                if bound and not request.ipv4_address:
                    raise InvalidArgument("publishing ports needs an IPv4 address")
            veth = names.veth_name(self.owner, request.endpoint_id)
            mac = request.mac_address or netlink.mac_for(request.ipv4_address)
            spec = netlink.EndpointSpec(
                bridge=entry["bridge"], veth=veth, netns_path=request.netns_path, ifname=request.ifname,
                mac=mac, mtu=entry["options"]["mtu"],
                addresses=[a for a in (request.ipv4_address, request.ipv6_address, *request.link_local_ips) if a],
                gateway4=gw4, gateway6=gw6, isolated=not entry["options"]["icc"])
            # recorded before the kernel work so a concurrent join sees its ports as taken
            self._doc["endpoints"][request.endpoint_id] = {
                "network_id": request.network.id, "veth": veth, "container_id": request.container_id,
                "ipv4": request.ipv4_address.split("/")[0],
                "ports": [{"container_port": p.container_port, "protocol": p.protocol,
                           "host_ip": p.host_ip, "host_port": p.host_port} for p in bound],
            }
        try:
            # outside the lock: the veths of concurrent joins are made in parallel
            await asyncio.to_thread(netlink.create_endpoint, spec)
            async with self._lock:
                await asyncio.to_thread(self._state.save, self._doc)
                if bound:
                    await self._sync_rules()
        except BaseException:
            async with self._lock:
                self._doc["endpoints"].pop(request.endpoint_id, None)
                await asyncio.to_thread(netlink.delete_link, veth)
                await asyncio.to_thread(self._state.save, self._doc)
            raise
        return EndpointResult(ifname=request.ifname, mac_address=mac, ipv4_address=request.ipv4_address,
                              ipv6_address=request.ipv6_address, gateway=gw4.split("/")[0],
                              ports=bound, extra={"veth": veth, "bridge": entry["bridge"]})

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        """Delete the veth (its peer goes with it) and the endpoint's published ports. Succeeds
        when the namespace, the veth or the record is already gone.

        With ``request.sandbox_closing`` the host end is only set down (the bridge stops
        forwarding to it and forgets its MAC addresses at once); the kernel deletes the pair
        with the namespace, off the request's path. A reaper deletes it after
        ``RETIRE_GRACE`` seconds if something still holds the namespace."""
        async with self._lock:
            ep = self._doc["endpoints"].pop(request.endpoint_id, None)
            veth = (ep or {}).get("veth") or result.extra.get("veth") \
                or names.veth_name(self.owner, request.endpoint_id)
            if not names.is_veth_name(self.owner, veth):
                raise NotFound(f"{veth} is not an interface of this driver")
            if request.sandbox_closing and await asyncio.to_thread(netlink.set_down, veth):
                task = asyncio.create_task(self._reap(veth), name=f"reap-{veth}")
                self._reapers.add(task)
                task.add_done_callback(self._reapers.discard)
            else:
                await asyncio.to_thread(netlink.delete_link, veth)
            if ep is not None:
                await asyncio.to_thread(self._state.save, self._doc)
                if ep["ports"]:
                    await self._sync_rules()

    async def _reap(self, veth: str) -> None:
        """Delete a retired veth that outlived ``RETIRE_GRACE`` (or the driver's close)."""
        try:
            await asyncio.sleep(RETIRE_GRACE)
        finally:  # cancelled by close(): delete now
            await asyncio.to_thread(netlink.delete_link, veth)

    # ------------------------------------------------------------------ embedded DNS
    async def dns_set_records(self, network_id: str, records: dict[str, list[str]]) -> None:
        """Replace the name -> addresses records of a network (empty: forget the network).
        Shared by every resolver of this driver (:class:`DnsRecords`)."""
        if records:
            self._dns_records.set_network(network_id, records)
        else:
            self._dns_records.drop_network(network_id)

    async def dns_attach(self, sandbox_id: str, netns_path: str, network_ids: list[str],
                         upstreams: list[tuple[str, int]]) -> None:
        """Serve ``127.0.0.11:53`` in the namespace of ``sandbox_id`` (a container), answering
        names of ``network_ids`` only; others go to ``upstreams`` (none: NXDOMAIN). Called
        again for the same sandbox, it updates the networks and upstreams in place."""
        server = self._dns.get(sandbox_id)
        if server is None:
            server = EmbeddedDns(self._dns_records, network_ids, upstreams)
            await server.start(netns_path)
            self._dns[sandbox_id] = server
        else:
            server.networks = list(network_ids)
            server.upstreams = list(upstreams)

    async def dns_detach(self, sandbox_id: str) -> None:
        """Stop the resolver of ``sandbox_id`` (nothing when none runs)."""
        server = self._dns.pop(sandbox_id, None)
        if server is not None:
            await server.stop()

    # ------------------------------------------------------------------ nft
    def _ruleset(self) -> nft.Ruleset:
        nets = self._doc["networks"]
        rs = nft.Ruleset(self.table)
        for entry in nets.values():
            rs.networks.append(nft.NetworkRules(
                bridge=entry["bridge"], subnets=tuple(entry["subnets4"]), internal=entry["internal"],
                masquerade=entry["options"]["masquerade"]))
        for ep in self._doc["endpoints"].values():
            net = nets.get(ep["network_id"])
            if net is None:
                continue
            for p in ep["ports"]:
                rs.ports.append(nft.PortRule(bridge=net["bridge"], container_ip=ep["ipv4"],
                                             container_port=p["container_port"], protocol=p["protocol"],
                                             host_ip=p["host_ip"], host_port=p["host_port"]))
        return rs

    async def _sync_rules(self) -> None:
        await nft.apply(self._ruleset())
