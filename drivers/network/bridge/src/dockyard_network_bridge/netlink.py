"""Every netlink call of the bridge driver, through :class:`~dockyard_network_bridge.rtnl.Rtnl`
(no ``ip`` subprocesses, no pyroute2).

These functions are synchronous (blocking socket calls); the driver runs them with
``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dockyard.errors import Conflict, NotFound
from dockyard_network_bridge.rtnl import LinkInfo, NetlinkError, Rtnl

PROC_CONF4 = Path("/proc/sys/net/ipv4/conf")
LOOPBACK_INDEX = 1  # "lo" is always the first link of a network namespace
T = TypeVar("T")


Link = LinkInfo


@dataclass
class EndpointSpec:
    """What one endpoint needs in the kernel."""

    bridge: str
    veth: str  # host end
    netns_path: str
    ifname: str  # container end
    mac: str
    mtu: int
    addresses: list[str] = field(default_factory=list)  # CIDR, v4 and v6
    gateway4: str = ""  # "" = no default route
    gateway6: str = ""
    isolated: bool = False  # bridge port isolation: endpoints cannot talk to each other (icc=false)


def list_links() -> list[Link]:
    with Rtnl() as rt:
        return rt.links()


def get_link(name: str) -> Link | None:
    with Rtnl() as rt:
        return rt.link(name)


def write_sysctl(path: Path, value: str) -> None:
    path.write_text(value)


def ensure_bridge(name: str, addresses: list[str], mtu: int) -> bool:
    """Create bridge ``name`` (or check the existing one is a bridge: ours from before a restart,
    or one the user named), with ``addresses`` (CIDR; missing ones are added) and up. Returns
    whether it was created here."""
    created = False
    with Rtnl() as rt:
        link = rt.link(name)
        if link is not None and link.kind != "bridge":
            raise Conflict(f"interface {name} exists and is not a bridge ({link.kind or 'unknown'})")
        if link is None:
            try:
                rt.add_bridge(name, mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            created = True
            link = rt.link(name)
            assert link is not None
        have = {f"{a.address}/{a.prefixlen}" for a in rt.addresses(link.index)}
        for cidr in addresses:
            iface = ipaddress.ip_interface(cidr)
            if f"{iface.ip}/{iface.network.prefixlen}" in have:
                continue
            try:
                rt.add_address(link.index, f"{iface.ip}/{iface.network.prefixlen}")
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
        if not link.up:
            rt.set_up(link.index)
    conf = PROC_CONF4 / name
    # 127.0.0.1:PORT published ports DNAT host-local traffic onto the bridge; the kernel drops
    # such packets as martians unless route_localnet is set on the outgoing interface.
    write_sysctl(conf / "route_localnet", "1")
    # Routing between this bridge and others is decided by the driver's nft forward chain; only
    # this bridge's forwarding flag is touched, never the host-wide one.
    write_sysctl(conf / "forwarding", "1")
    return created


def delete_link(name: str) -> bool:
    """Delete link ``name``; False when it did not exist."""
    with Rtnl() as rt:
        try:
            rt.delete(name)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return False
            raise
    return True


def set_down(name: str) -> bool:
    """Set link ``name`` down; False when it does not exist. (A bridge port that goes down
    stops forwarding and its learned MAC addresses are flushed, without the RCU grace period a
    deletion waits for.)"""
    with Rtnl() as rt:
        try:
            rt.set_down_by_name(name)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise
    return True


def enslave(veth: str, bridge: str) -> bool:
    """Attach ``veth`` to ``bridge`` when it is not already; False when either is missing."""
    with Rtnl() as rt:
        v, b = rt.link(veth), rt.link(bridge)
        if v is None or b is None:
            return False
        if v.master != b.index:
            rt.set_master(v.index, b.index)
        if not v.up:
            rt.set_up(v.index)
    return True


def mac_for(ipv4: str) -> str:
    """Docker's MAC scheme: 02:42 followed by the IPv4 address; random (locally administered)
    when there is no IPv4 address."""
    if ipv4:
        packed = ipaddress.IPv4Address(ipv4.split("/")[0]).packed
    else:
        packed = secrets.token_bytes(4)
    return ":".join(f"{b:02x}" for b in b"\x02\x42" + packed)


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that first enters the namespace at ``netns_path``. ``setns``
    changes only the calling thread, and the thread ends afterwards, so no pooled thread is ever
    left in a container's namespace. (pyroute2's ``IPRoute(netns=...)`` forks a helper process
    for the same thing, ten times slower.)"""
    from dockyard.netns import run_in

    return run_in(netns_path, fn)


def create_endpoint(spec: EndpointSpec) -> None:
    """veth pair: host end on the bridge, container end created directly in the container's
    namespace as ``spec.ifname``; addresses, MTU, loopback up, default routes."""
    try:
        netns_fd = os.open(spec.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {spec.netns_path} does not exist") from None
    try:
        with Rtnl() as rt:
            bridge = rt.link_index(spec.bridge)
            if bridge is None:
                raise NotFound(f"bridge {spec.bridge} does not exist")
            try:  # one request: created on the bridge and up, the peer made inside the namespace
                rt.add_veth(spec.veth, mtu=spec.mtu, master=bridge, peer_name=spec.ifname,
                            peer_netns_fd=netns_fd, peer_mac=spec.mac)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"interface {spec.veth} or {spec.ifname} in the container exists") from exc
                raise
            try:
                idx = rt.link_index(spec.veth)
                if idx is None:
                    raise NotFound(f"{spec.veth} vanished while it was being set up")
                # hairpin: a container reaches its own published ports; isolated: icc=false
                rt.set_bridge_port(idx, hairpin=True, isolated=spec.isolated)
                in_netns(spec.netns_path, lambda: _configure_container_end(spec))
            except BaseException:
                delete_link(spec.veth)
                raise
    finally:
        os.close(netns_fd)


def _configure_container_end(spec: EndpointSpec) -> None:
    with Rtnl() as ns:
        idx = ns.link_index(spec.ifname)
        if idx is None:
            raise NotFound(f"{spec.ifname} is missing in {spec.netns_path}")
        for cidr in spec.addresses:
            ns.add_address(idx, cidr)
        ns.set_up(idx)
        ns.set_up(LOOPBACK_INDEX)
        for gateway in (spec.gateway4, spec.gateway6):
            if gateway:
                ns.replace_default_route(gateway.split("/")[0], idx)


def _loopback_up() -> None:
    with Rtnl() as ns:
        ns.set_up(LOOPBACK_INDEX)


def loopback_up(netns_path: str) -> None:
    if not os.path.exists(netns_path):
        raise NotFound(f"network namespace {netns_path} does not exist")
    in_netns(netns_path, _loopback_up)
