"""The overlay's data plane on one host, through pyroute2 (no ``ip`` subprocesses).

Per network built here: a bridge ``<tag>o<VNI>`` carrying the subnet's gateway (unless the
network is internal) and a VXLAN device ``<tag>x<VNI>`` (VNI, local VTEP address, UDP 4789,
learning off, ARP proxy on, no outer UDP checksum) enslaved to it; per local endpoint a veth pair, host end
``<tag>e<endpoint>`` on the bridge, the other end made directly in the container's namespace.
Per remote endpoint: a permanent neighbour entry (IP -> MAC) on the VXLAN device, which answers
ARP for it locally, and a permanent FDB entry (MAC -> remote VTEP). Nothing is flooded between
hosts. This is libnetwork's "host mode" layout: the bridge lives in the engine's namespace (a
netns test host's own), so no extra namespace per network exists.

Functions are synchronous; the driver runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dockyard.errors import Conflict, InvalidArgument, NotFound

# pyroute2 (~8 MiB, 120 ms) is imported inside the functions that use it: every daemon imports
# this driver's class (to read the drivers' settings), few use the driver.

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
LOOPBACK_INDEX = 1
IFNAMSIZ = 15
T = TypeVar("T")


# ---------------------------------------------------------------------------- names
def tag(owner: str) -> str:
    """The owner itself when it fits in 8 characters (``dy`` + 6 hex does), else 2 characters
    plus 6 hex of its hash: the same tag the daemon's other network drivers use."""
    if 0 < len(owner) <= 8 and re.fullmatch(r"[A-Za-z0-9_.-]+", owner):
        return owner
    return (owner[:2] or "dy") + hashlib.sha256(owner.encode()).hexdigest()[:6]


def bridge_name(owner: str, vni: int) -> str:
    return f"{tag(owner)}o{vni:06x}"


def vxlan_name(owner: str, vni: int) -> str:
    return f"{tag(owner)}x{vni:06x}"


def veth_name(owner: str, endpoint_id: str) -> str:
    t = tag(owner)
    return f"{t}e{endpoint_id[:IFNAMSIZ - len(t) - 1]}"


def is_ours(owner: str, name: str) -> bool:
    t = tag(owner)
    return len(name) > len(t) and name.startswith(t) and name[len(t)] in "oxe"


def mac_for(ipv4: str) -> str:
    """Docker's MAC scheme: 02:42 followed by the IPv4 address."""
    packed = ipaddress.IPv4Address(ipv4.split("/")[0]).packed
    return ":".join(f"{b:02x}" for b in b"\x02\x42" + packed)


# ---------------------------------------------------------------------------- host facts
def address_of(spec: str) -> str:
    """The IPv4 address ``spec`` names: an address, or an interface name (its first IPv4)."""
    from pyroute2 import IPRoute

    try:
        return str(ipaddress.IPv4Address(spec))
    except ValueError:
        pass
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=spec)
        if not idx:
            raise InvalidArgument(f"no interface or IPv4 address {spec!r} for the VXLAN tunnel endpoint")
        for a in ipr.addr("dump", index=idx[0], family=2):
            return str(a.get("IFA_ADDRESS"))
    raise InvalidArgument(f"interface {spec} has no IPv4 address for the VXLAN tunnel endpoint")


def mtu_towards(address: str) -> int:
    """The MTU of the interface holding ``address`` (the underlay), 1500 when unknown."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for a in ipr.addr("dump", family=2):
            if a.get("IFA_ADDRESS") == address:
                (link,) = ipr.link("get", index=a["index"])
                return int(link.get("IFLA_MTU") or 1500)
    return 1500


def list_links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [str(m.get("IFLA_IFNAME")) for m in ipr.link("dump")]


def _on_link(name: str, command: str, **changes: Any) -> bool:
    """``ip link COMMAND`` on link ``name``; False when there is no such link (or it went meanwhile)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return False
        try:
            ipr.link(command, index=idx[0], **changes)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise
    return True


def delete_link(name: str) -> bool:
    return _on_link(name, "del")


def set_down(name: str) -> bool:
    """Set link ``name`` down (a bridge port stops forwarding at once); False when absent."""
    return _on_link(name, "set", state="down")


# ---------------------------------------------------------------------------- networks
@dataclass
class NetworkPlane:
    bridge: str
    vxlan: str
    vni: int
    vtep: str  # local underlay address
    mtu: int
    gateways: list[str] = field(default_factory=list)  # CIDR on the bridge (none when internal)


def ensure_network(plane: NetworkPlane, fresh_vxlan: bool = False) -> None:
    """The bridge (gateway addresses, up) and the VXLAN device on it, made when missing.
    ``fresh_vxlan`` re-creates the VXLAN device, dropping every FDB and neighbour entry a
    previous run left (the caller programs the current peers next)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=plane.bridge):
            ipr.link("add", ifname=plane.bridge, kind="bridge", mtu=plane.mtu)
        br = ipr.link_lookup(ifname=plane.bridge)[0]
        have = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.addr("dump", index=br)}
        for cidr in plane.gateways:
            if cidr not in have:
                iface = ipaddress.ip_interface(cidr)
                try:
                    ipr.addr("add", index=br, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
        ipr.link("set", index=br, state="up")
        existing = ipr.link_lookup(ifname=plane.vxlan)
        if existing and fresh_vxlan:
            ipr.link("del", index=existing[0])
            existing = []
        if not existing:
            try:
                # no outer UDP checksum (RFC 7348: SHOULD be zero over IPv4; the inner frame
                # keeps its own): measured on veth underlays, 15-18 Gbit/s with it, 22-30 without
                ipr.link("add", ifname=plane.vxlan, kind="vxlan", vxlan_id=plane.vni, vxlan_local=plane.vtep,
                         vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_proxy=1, vxlan_udp_csum=0, mtu=plane.mtu)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"a VXLAN device with VNI {plane.vni} on port {VXLAN_PORT} exists on this "
                                   "host (another daemon's?)") from exc
                raise
        vx = ipr.link_lookup(ifname=plane.vxlan)[0]
        ipr.link("set", index=vx, master=br, state="up")
    # Egress reaches this host's own addresses through the gateway; nothing is routed on (to
    # the underlay, or to another network's bridge: the overlays stay isolated, and no NAT).
    _write(f"/proc/sys/net/ipv4/conf/{plane.bridge}/forwarding", "0")


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError:
        pass


def delete_network(plane: NetworkPlane) -> None:
    delete_link(plane.vxlan)
    delete_link(plane.bridge)


def program_peer(vxlan: str, ip: str, mac: str, vtep: str, add: bool = True) -> None:
    """The neighbour (IP -> MAC) and FDB (MAC -> remote VTEP) entries of one remote endpoint on
    ``vxlan``; ``add=False`` removes them (absent ones are not an error)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=vxlan)
        if not idx:
            return
        vx = idx[0]
        ip = ip.split("/")[0]
        if add:
            ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=vx, state=NUD_PERMANENT)
            ipr.fdb("replace", ifindex=vx, lladdr=mac, NDA_DST=vtep, state=NUD_PERMANENT, flags=NTF_SELF)
            return
        for call in (lambda: ipr.neigh("del", dst=ip, lladdr=mac, ifindex=vx),
                     lambda: ipr.fdb("del", ifindex=vx, lladdr=mac, NDA_DST=vtep, flags=NTF_SELF)):
            try:
                call()
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                    raise


def fdb_entries(vxlan: str) -> list[tuple[str, str]]:
    """``(MAC, remote VTEP)`` of the VXLAN device's FDB entries that carry a destination."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=vxlan)
        if not idx:
            return []
        return [(str(m.get("NDA_LLADDR")), str(m.get("NDA_DST"))) for m in ipr.fdb("dump", ifindex=idx[0])
                if m.get("NDA_DST")]


# ---------------------------------------------------------------------------- endpoints
@dataclass
class EndpointPlane:
    bridge: str
    veth: str
    netns_path: str
    ifname: str
    mac: str
    mtu: int
    address: str  # CIDR
    gateway: str = ""  # "" = no default route (internal)


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that first enters the namespace at ``netns_path`` (the
    thread ends afterwards, so no pooled thread stays in a container's namespace)."""
    from dockyard.netns import run_in

    return run_in(netns_path, fn)


def add_endpoint(ep: EndpointPlane) -> None:
    """veth pair: host end on the bridge (up), the container end made in the container's
    namespace as ``ep.ifname`` with its address, MAC, MTU and default route."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        fd = os.open(ep.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {ep.netns_path} does not exist") from None
    try:
        with IPRoute() as ipr:
            br = ipr.link_lookup(ifname=ep.bridge)
            if not br:
                raise NotFound(f"overlay bridge {ep.bridge} does not exist")
            try:  # one request: on the bridge and up, the peer made inside the namespace
                ipr.link("add", ifname=ep.veth, kind="veth", mtu=ep.mtu, master=br[0], state="up",
                         peer={"ifname": ep.ifname, "net_ns_fd": fd, "address": ep.mac, "mtu": ep.mtu})
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"interface {ep.veth} or {ep.ifname} in the container exists") from exc
                raise
            try:
                in_netns(ep.netns_path, lambda: _configure_container_end(ep))
            except BaseException:
                delete_link(ep.veth)
                raise
    finally:
        os.close(fd)


def _configure_container_end(ep: EndpointPlane) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ep.ifname)
        if not idx:
            raise NotFound(f"{ep.ifname} is missing in {ep.netns_path}")
        iface = ipaddress.ip_interface(ep.address)
        ipr.addr("add", index=idx[0], address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 broadcast=str(iface.network.broadcast_address))
        ipr.link("set", index=idx[0], state="up")
        ipr.link("set", index=LOOPBACK_INDEX, state="up")
        # a default route another network gave (a bridge network's, with NAT) is kept: the
        # overlay's reaches only this host's own addresses
        if ep.gateway:
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=ep.gateway.split("/")[0], oif=idx[0])
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
