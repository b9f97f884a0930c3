"""The netns driver's network plumbing, all through netlink (pyroute2) and two syscalls.

One bridge on the machine per driver (owner) carries the first address of the driver's range;
each host is a named network namespace joined to it by a veth pair, its end inside called
``eth0`` with the host's address. Nothing routes off the machine: a host gets no default route
(only its range is reachable), the bridge has IPv4 forwarding off (the kernel drops anything
arriving on it for another network instead of routing it), IPv6 off, and no NAT rule exists.
Hosts talk to each other on the bridge (layer 2) and to the machine at the bridge's address.

These functions block; the driver runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dockyard.errors import InvalidArgument
from dockyard.netns import in_thread, run_in

# pyroute2 (~8 MiB, 120 ms) is imported inside the functions that use it: every daemon imports
# this driver's class (to read the drivers' settings), few use the driver.

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
PROC_SYS = Path("/proc/sys/net")
RT_TABLE_LOCAL = 255
LOOPBACK = "lo"
HOST_IFNAME = "eth0"

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------- the range
def overlaps(subnet: ipaddress.IPv4Network, bridge_name: str) -> list[str]:
    """What on the machine overlaps ``subnet``: routes (every table but ``local``; default
    routes cover everything and are not counted) and interface addresses, except those of the
    driver's own bridge. Each as ``ip route``/``ip addr`` would show it."""
    from pyroute2 import IPRoute

    found: list[str] = []
    with IPRoute() as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.link("dump")}
        own = {i for i, n in names.items() if n == bridge_name}
        for route in ipr.route("dump", family=socket.AF_INET):
            table = route.get_attr("RTA_TABLE") or route["table"]
            if table == RT_TABLE_LOCAL or route["dst_len"] == 0 or route.get_attr("RTA_OIF") in own:
                continue
            dst = ipaddress.ip_network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}", strict=False)
            if dst.overlaps(subnet):
                dev = names.get(route.get_attr("RTA_OIF"), "?")
                found.append(f"route {dst} dev {dev}" + ("" if table == 254 else f" table {table}"))
        for addr in ipr.addr("dump", family=socket.AF_INET):
            if addr["index"] in own:
                continue
            net = ipaddress.ip_interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}").network
            if net.overlaps(subnet):
                found.append(f"address {addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']} "
                             f"dev {names.get(addr['index'], '?')}")
    return found


def write_sysctl(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:  # IPv6 disabled on this machine: nothing to turn off
        if "ipv6" not in path.parts:
            raise


def bridge_mac(name: str) -> str:
    """The bridge's own MAC: locally administered, derived from its name (stable)."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface) -> None:
    """The driver's bridge with ``gateway`` (the range's first address), up, forwarding off.

    It is made with a MAC of its own: a bridge without one takes its lowest port's, so a host
    added or removed changed it, and the other hosts' neighbour entry for the gateway (where
    the machine, an etcd of the tests, answers them) named a MAC no longer the bridge's: they
    were cut off from the machine for seconds, until the entry was probed again (a cluster
    lease of 2 s expired meanwhile)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            try:
                ipr.link("add", ifname=name, kind="bridge", address=bridge_mac(name))
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # another host's create made it meanwhile
                    raise
            idx = ipr.link_lookup(ifname=name)
        index = idx[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.addr("dump", index=index)}
        # IPv6 off before the link is up: no link-local address, no router solicitations
        write_sysctl(PROC_SYS / "ipv6" / "conf" / name / "disable_ipv6", "1")
        # The machine never routes what a host sends to anything but the machine itself.
        write_sysctl(PROC_SYS / "ipv4" / "conf" / name / "forwarding", "0")
        if (str(gateway.ip), gateway.network.prefixlen) not in have:
            try:
                ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen,
                         broadcast=str(gateway.network.broadcast_address))
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> bool:
    """Delete link ``name``; False when there was none."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return False
        try:
            ipr.link("del", index=idx[0])
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise
    return True


def link_names() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [m.get_attr("IFLA_IFNAME") for m in ipr.link("dump")]


# ---------------------------------------------------------------------------------- namespaces
def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def _share_netns_dir() -> None:
    """iproute2's set-up of ``/run/netns``: a shared mount, so a namespace bound there and
    later unbound is unbound in every mount namespace copied since (a container's too)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    d = str(NETNS_DIR).encode()
    if _libc.mount(b"none", d, None, MS_SHARED | MS_REC, None) == 0:
        return
    if _libc.mount(d, d, b"none", MS_BIND | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {NETNS_DIR} on itself: {os.strerror(err)}")
    if _libc.mount(b"none", d, None, MS_SHARED | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"making {NETNS_DIR} shared: {os.strerror(err)}")


_shared = threading.Lock()
_shared_done = False


def create_netns(name: str) -> Path:
    """A new network namespace bound at ``/run/netns/NAME`` (what ``ip netns add`` makes),
    without a helper process: a throwaway thread unshares its own network namespace, binds it
    and ends (a network namespace is a per-thread attribute; nothing else moves)."""
    global _shared_done
    with _shared:
        if not _shared_done:
            _share_netns_dir()
            _shared_done = True
    path = netns_path(name)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.close(fd)

    def bind() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(src, str(path).encode(), None, MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind mount of the namespace on {path}: {os.strerror(err)}")

    try:
        in_thread(bind)
    except BaseException:
        remove_netns(name)
        raise
    return path


def remove_netns(name: str) -> bool:
    """Unbind and delete ``/run/netns/NAME``; False when it did not exist. The namespace itself
    goes when its last user (a process, a mount elsewhere) does."""
    path = netns_path(name)
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point, or no such file
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def is_netns(name: str) -> bool:
    """Whether ``/run/netns/NAME`` is a bound namespace (not just a leftover empty file)."""
    path = netns_path(name)
    try:
        return os.stat(path).st_dev != os.stat(NETNS_DIR).st_dev
    except FileNotFoundError:
        return False


def list_netns() -> list[str]:
    try:
        return os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that first enters namespace ``name``; the thread ends
    afterwards, so no pooled thread is ever left inside a host."""
    return run_in(netns_path(name), fn)


# ---------------------------------------------------------------------------------- a host's link
def connect_host(netns: str, veth: str, bridge: str, address: ipaddress.IPv4Interface) -> None:
    """A veth pair: ``veth`` on the machine, on ``bridge`` and up; its peer made directly inside
    the namespace as ``eth0`` with ``address``; ``lo`` and ``eth0`` up there. No default route.
    An existing pair is reused (``start`` after a partial failure): the steps are idempotent."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            (br,) = ipr.link_lookup(ifname=bridge) or (None,)
            if br is None:
                raise InvalidArgument(f"the machine bridge {bridge} is missing")
            if not ipr.link_lookup(ifname=veth):
                ipr.link("add", ifname=veth, kind="veth", peer={"ifname": HOST_IFNAME, "net_ns_fd": fd})
            (idx,) = ipr.link_lookup(ifname=veth)
            write_sysctl(PROC_SYS / "ipv6" / "conf" / veth / "disable_ipv6", "1")
            ipr.link("set", index=idx, master=br, state="up")
            # A host removed earlier may have had this address: the machine's neighbour entry
            # would still name its eth0's MAC, and the new host stays unreachable until the
            # entry times out (seconds). Forget it; the next packet asks again.
            try:
                ipr.neigh("del", dst=str(address.ip), ifindex=br)
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise
    finally:
        os.close(fd)
    in_netns(netns, lambda: _configure_inside(address))


def _configure_inside(address: ipaddress.IPv4Interface) -> None:
    # The host's own IPv4 forwarding (this thread is inside it: /proc/sys/net is the thread's
    # namespace), as dockerd sets it on its machine: replies to the engine's containers arrive
    # on eth0 and are forwarded to its bridge. A new namespace copies the machine's setting or
    # the kernel default (0), so it is set, not inherited. The machine's bridge still routes
    # nothing: hosts have only their range to talk to.
    from pyroute2 import IPRoute

    write_sysctl(PROC_SYS / "ipv4" / "ip_forward", "1")
    with IPRoute() as ipr:
        (lo,) = ipr.link_lookup(ifname=LOOPBACK)
        ipr.link("set", index=lo, state="up")
        idx = ipr.link_lookup(ifname=HOST_IFNAME)
        if not idx:
            raise InvalidArgument(f"{HOST_IFNAME} is missing inside the host")
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.addr("dump", index=idx[0])}
        if (str(address.ip), address.network.prefixlen) not in have:
            ipr.addr("add", index=idx[0], address=str(address.ip), prefixlen=address.network.prefixlen,
                     broadcast=str(address.network.broadcast_address))
        ipr.link("set", index=idx[0], state="up")
