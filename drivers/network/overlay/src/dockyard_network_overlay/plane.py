"""The overlay's data plane on one host, through pyroute2 (no ``ip`` subprocesses).

Per network built here: a VXLAN device ``<tag>x<VNI>`` (VNI, local VTEP address, UDP 4789,
learning off, ARP proxy on, no outer UDP checksum) and, per remote endpoint, a permanent
neighbour entry (IP -> MAC) on it, which answers ARP for it locally, and a permanent FDB entry
(MAC -> remote VTEP). Nothing is flooded between hosts. Two data paths (``NetworkPlane.mode``):

``macvlan`` (the default)
    Each container's interface is a macvlan child (bridge mode) of the VXLAN device, made
    directly in the container's namespace; the gateway address sits on one more child in the
    engine's namespace, ``<tag>o<VNI>`` (none when internal). Children reach each other on the
    device itself (same-host traffic never leaves it), and a frame for a remote MAC is
    encapsulated at once: no veth and no bridge on the way, so no bridge netfilter pass.
``bridge``
    libnetwork's layout: a bridge ``<tag>o<VNI>`` carrying the gateway with the VXLAN device
    enslaved to it, and per container a veth pair, host end ``<tag>e<endpoint>`` on the bridge.
    Every frame crosses a veth and the bridge on each host, and the bridge calls the
    namespace's netfilter hooks (``bridge-nf-call-iptables``, 1 by default in every namespace).

Both are libnetwork's "host mode" layout: the devices live in the engine's namespace (a netns
test host's own), so no extra namespace per network exists.

Functions are synchronous; the driver runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable

# pyroute2 (~8 MiB, 120 ms) is imported inside the functions that use it: every daemon imports
# this driver's class (to read the drivers' settings), few use the driver.

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
NUD_PERMANENT = 0x80
MACVLAN, BRIDGE = "macvlan", "bridge"  # the data paths
MODES = (MACVLAN, BRIDGE)
NTF_SELF = 0x02
IFA_F_NODAD = 0x02
AF_INET, AF_INET6 = 2, 10
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


def link_index(name: str) -> int:
    """The ifindex of link ``name`` in this namespace, 0 when absent."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        return int(idx[0]) if idx else 0


def index_of_address(address: str) -> int:
    """The ifindex of the interface holding ``address`` (the underlay), 0 when none does."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for a in ipr.addr("dump", family=2):
            if a.get("IFA_ADDRESS") == address:
                return int(a["index"])
    return 0


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
    bridge: str  # the bridge (bridge mode) or the gateway's macvlan child (macvlan mode)
    vxlan: str
    vni: int
    vtep: str  # local underlay address
    mtu: int
    gateways: list[str] = field(default_factory=list)  # CIDR on the bridge (none when internal)
    mode: str = BRIDGE


def ensure_network(plane: NetworkPlane, fresh_vxlan: bool = False) -> None:
    """The VXLAN device, and the bridge or gateway child with the gateway addresses, made when
    missing, up. ``fresh_vxlan`` drops every FDB and neighbour entry a previous run left (the
    caller programs the current peers next): bridge mode re-creates the device (the veths
    stay on the bridge); macvlan mode flushes its entries, as deleting it would delete the
    containers' interfaces (its children) too."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        if plane.mode == BRIDGE:
            if not ipr.link_lookup(ifname=plane.bridge):
                ipr.link("add", ifname=plane.bridge, kind="bridge", mtu=plane.mtu)
            _gateway(ipr, plane)
        existing = ipr.link_lookup(ifname=plane.vxlan)
        if existing and fresh_vxlan:
            if plane.mode == BRIDGE:
                ipr.link("del", index=existing[0])
                existing = []
            else:
                _flush_peers(ipr, existing[0])
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
        if plane.mode == BRIDGE:
            ipr.link("set", index=vx, master=ipr.link_lookup(ifname=plane.bridge)[0], state="up")
        else:
            ipr.link("set", index=vx, state="up")
            if plane.gateways and not ipr.link_lookup(ifname=plane.bridge):
                try:
                    ipr.link("add", ifname=plane.bridge, kind="macvlan", link=vx, macvlan_mode="bridge", mtu=plane.mtu)
                except NetlinkError as exc:
                    if exc.code == errno.EOPNOTSUPP:
                        raise _no_macvlan() from exc
                    raise
            if plane.gateways:
                _gateway(ipr, plane)
    # Egress reaches this host's own addresses through the gateway; nothing is routed on (to
    # the underlay, or to another network's bridge: the overlays stay isolated, and no NAT).
    _write(f"/proc/sys/net/ipv4/conf/{plane.bridge}/forwarding", "0")


def _no_macvlan() -> Unavailable:
    """What a macvlan link's creation answering EOPNOTSUPP means."""
    return Unavailable("this kernel has no macvlan devices (CONFIG_MACVLAN): set the overlay driver option "
                       "datapath=bridge")


def _gateway(ipr: Any, plane: NetworkPlane) -> None:
    """The gateway addresses on ``plane.bridge``, up."""
    from pyroute2.netlink.exceptions import NetlinkError

    br = ipr.link_lookup(ifname=plane.bridge)[0]
    have = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.addr("dump", index=br)}
    for cidr in plane.gateways:
        if cidr not in have:
            iface = ipaddress.ip_interface(cidr)
            try:  # an IPv6 address usable at once: no duplicate detection on a private overlay
                ipr.addr("add", index=br, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                         **({"flags": IFA_F_NODAD} if iface.version == 6 else {}))
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
    ipr.link("set", index=br, state="up")


def _flush_peers(ipr: Any, vx: int) -> None:
    """Delete the VXLAN device's permanent neighbour entries and its FDB entries with a
    destination (the peers a previous run programmed)."""
    from pyroute2.netlink.exceptions import NetlinkError

    for family in (AF_INET, AF_INET6):
        for m in ipr.get_neighbours(ifindex=vx, family=family):
            if m.get("NDA_DST") and m["state"] & NUD_PERMANENT:
                with contextlib.suppress(NetlinkError):
                    ipr.neigh("del", dst=m.get("NDA_DST"), ifindex=vx, family=family)
    for m in ipr.fdb("dump", ifindex=vx):
        if m.get("NDA_DST") and m.get("NDA_LLADDR"):
            with contextlib.suppress(NetlinkError):
                ipr.fdb("del", ifindex=vx, lladdr=m.get("NDA_LLADDR"), NDA_DST=m.get("NDA_DST"), flags=NTF_SELF)


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError:
        pass


def delete_network(plane: NetworkPlane) -> None:
    """The bridge (or gateway child) and the VXLAN device; in macvlan mode the kernel deletes
    any container interface still on it with it."""
    delete_link(plane.bridge)
    delete_link(plane.vxlan)


def program_peer(vxlan: str, ip: str, mac: str, vtep: str, add: bool = True, ip6: str = "") -> None:
    """The neighbour (IP -> MAC) and FDB (MAC -> remote VTEP) entries of one remote endpoint on
    ``vxlan``, and with ``ip6`` its IPv6 neighbour (NDP) entry, permanent like the ARP one (the
    device's proxy answers neighbour solicitations from it); ``add=False`` removes them (absent
    ones are not an error)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=vxlan)
        if not idx:
            return
        vx = idx[0]
        ips = [a.split("/")[0] for a in (ip, ip6) if a]
        if add:
            for a in ips:
                ipr.neigh("replace", dst=a, lladdr=mac, ifindex=vx, state=NUD_PERMANENT, family=_family(a))
            ipr.fdb("replace", ifindex=vx, lladdr=mac, NDA_DST=vtep, state=NUD_PERMANENT, flags=NTF_SELF)
            return
        calls = [functools.partial(ipr.neigh, "del", dst=a, lladdr=mac, ifindex=vx, family=_family(a)) for a in ips]
        calls.append(functools.partial(ipr.fdb, "del", ifindex=vx, lladdr=mac, NDA_DST=vtep, flags=NTF_SELF))
        for call in calls:
            try:
                call()
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                    raise


def _family(address: str) -> int:
    return AF_INET6 if ":" in address else AF_INET


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
    veth: str  # bridge mode: the host end; macvlan mode: unused
    netns_path: str
    ifname: str
    mac: str
    mtu: int
    address: str  # CIDR
    gateway: str = ""  # "" = no default route (internal)
    mode: str = BRIDGE
    vxlan: str = ""  # macvlan mode: the parent device
    address6: str = ""  # CIDR (an IPv6 overlay)
    gateway6: str = ""


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that first enters the namespace at ``netns_path`` (the
    thread ends afterwards, so no pooled thread stays in a container's namespace)."""
    from dockyard.netns import run_in

    return run_in(netns_path, fn)


def add_endpoint(ep: EndpointPlane) -> None:
    """The container's interface ``ep.ifname``, made directly in its namespace with its
    address, MAC, MTU and default route: a veth whose host end is on the bridge (up), or a
    macvlan child of the VXLAN device."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        fd = os.open(ep.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {ep.netns_path} does not exist") from None
    try:
        with IPRoute() as ipr:
            parent = ep.bridge if ep.mode == BRIDGE else ep.vxlan
            idx = ipr.link_lookup(ifname=parent)
            if not idx:
                raise NotFound(f"overlay {'bridge' if ep.mode == BRIDGE else 'VXLAN device'} {parent} does not exist")
            try:
                if ep.mode == BRIDGE:  # one request: on the bridge and up, the peer made inside the namespace
                    ipr.link("add", ifname=ep.veth, kind="veth", mtu=ep.mtu, master=idx[0], state="up",
                             peer={"ifname": ep.ifname, "net_ns_fd": fd, "address": ep.mac, "mtu": ep.mtu})
                else:  # made in the namespace, its parent named in this one
                    ipr.link("add", ifname=ep.ifname, kind="macvlan", link=idx[0], macvlan_mode="bridge",
                             net_ns_fd=fd, address=ep.mac, mtu=ep.mtu)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"interface {ep.veth} or {ep.ifname} in the container exists") from exc
                if exc.code == errno.EOPNOTSUPP and ep.mode == MACVLAN:
                    raise _no_macvlan() from exc
                raise
            try:
                in_netns(ep.netns_path, lambda: _configure_container_end(ep))
            except BaseException as exc:
                remove_endpoint(ep)
                if isinstance(exc, NetlinkError) and exc.code == errno.EADDRINUSE:
                    # a macvlan child comes up only with a MAC no other child that is up has
                    raise Conflict(f"MAC address {ep.mac} is in use by another endpoint on {parent}") from exc
                raise
    finally:
        os.close(fd)


def remove_endpoint(ep: EndpointPlane) -> bool:
    """Delete the endpoint's interface (the veth pair by its host end, or the macvlan child
    inside the container's namespace); False when it is gone already."""
    if ep.mode == BRIDGE:
        return delete_link(ep.veth)
    if not os.path.exists(ep.netns_path):
        return False
    try:
        return in_netns(ep.netns_path, lambda: delete_link(ep.ifname) if _is_macvlan(ep.ifname) else False)
    except OSError:  # the namespace went meanwhile
        return False


def set_endpoint_down(ep: EndpointPlane) -> bool:
    """Set the endpoint's macvlan child down inside its namespace (it carries nothing from
    then on); False when it is gone."""
    try:
        return in_netns(ep.netns_path, lambda: set_down(ep.ifname) if _is_macvlan(ep.ifname) else False)
    except OSError:
        return False


def endpoint_alive(ep: EndpointPlane, links: list[str]) -> bool:
    """Whether the endpoint's interface still exists (``links``: this namespace's)."""
    if ep.mode == BRIDGE:
        return ep.veth in links
    if not os.path.exists(ep.netns_path):
        return False
    try:
        return in_netns(ep.netns_path, lambda: _is_macvlan(ep.ifname))
    except OSError:
        return False


def _is_macvlan(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return False
        (link,) = ipr.link("get", index=idx[0])
        info = link.get_attr("IFLA_LINKINFO")
        return info is not None and info.get_attr("IFLA_INFO_KIND") == "macvlan"


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
        if ep.address6:  # the runtime may have IPv6 off by default in the container's namespace
            _write(f"/proc/sys/net/ipv6/conf/{ep.ifname}/disable_ipv6", "0")
            iface6 = ipaddress.ip_interface(ep.address6)
            ipr.addr("add", index=idx[0], address=str(iface6.ip), prefixlen=iface6.network.prefixlen,
                     flags=IFA_F_NODAD)
        ipr.link("set", index=idx[0], state="up")
        ipr.link("set", index=LOOPBACK_INDEX, state="up")
        # a default route another network gave (a bridge network's, with NAT) is kept: the
        # overlay's reaches only this host's own addresses
        for dst, gateway in (("0.0.0.0/0", ep.gateway), ("::/0", ep.gateway6)):
            if not gateway:
                continue
            try:
                ipr.route("add", dst=dst, gateway=gateway.split("/")[0], oif=idx[0], family=_family(dst))
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
