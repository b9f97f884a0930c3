"""A blocking rtnetlink channel for the requests on a container's start and stop path.

Messages are pyroute2's (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``: their encoders and decoders);
only the transport is ours: one ``AF_NETLINK`` socket, one request at a time, read until the
kernel's acknowledgement. pyroute2 0.9's synchronous ``IPRoute`` runs a private asyncio loop
for every call, about 1 ms per request on this kind of machine against about 0.1 ms here, and
an endpoint takes nine requests. Everything off the hot path (dumps, bridges, sysctls) still
goes through ``IPRoute``.

A :class:`Rtnl` is bound to the network namespace of the thread that creates it, for as long as
it lives (a socket keeps its namespace), so a short-lived thread can ``setns``, open one and
configure a container's side of a veth pair.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_SETLINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

__all__ = ["NetlinkError", "Rtnl"]

IFA_F_NODAD = 0x02  # no duplicate address detection: an IPv6 address is usable at once
AF_BRIDGE = 7
NLA_F_NESTED = 1 << 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_RECV_SIZE = 1 << 16


class Rtnl:
    """One rtnetlink socket in the calling thread's network namespace (see the module doc)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def request(self, msg: Any, msg_type: int, flags: int = 0) -> list[bytes]:
        """Send ``msg`` (a pyroute2 message with its fields and ``attrs`` set) and return the
        raw replies before the acknowledgement. A kernel error raises ``NetlinkError``."""
        self._seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        replies: list[bytes] = []
        while True:
            data = self._sock.recv(_RECV_SIZE)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, seq, _port = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EPROTO, "malformed netlink message")
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue  # a late answer to an earlier request
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, _HEADER.size)
                    if code:
                        raise NetlinkError(-code, os.strerror(-code))
                    return replies
                if kind == NLMSG_DONE:
                    return replies
                replies.append(chunk)

    # ------------------------------------------------------------------ links
    def link_index(self, name: str) -> int | None:
        """The index of link ``name`` in this namespace, None when there is none."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            (reply,) = self.request(msg, RTM_GETLINK)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return int(struct.unpack_from("=i", reply, _HEADER.size + 4)[0])  # ifinfomsg.ifi_index

    def add_veth(self, name: str, *, mtu: int, master: int, peer_name: str, peer_netns_fd: int,
                 peer_mac: str) -> None:
        """A veth pair: ``name`` here, up, on bridge ``master``; ``peer_name`` made directly in
        the namespace open at ``peer_netns_fd`` with ``peer_mac`` (both ends ``mtu``)."""
        msg = ifinfmsg()
        msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = [
            ("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": [
                    ("IFLA_IFNAME", peer_name), ("IFLA_NET_NS_FD", peer_netns_fd),
                    ("IFLA_ADDRESS", peer_mac), ("IFLA_MTU", mtu)]})]}),
            ]}),
        ]
        self.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)

    def set_up(self, index: int, up: bool = True) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
        self.request(msg, RTM_SETLINK)

    def set_down_by_name(self, name: str) -> None:
        msg = ifinfmsg()
        msg["change"] = IFF_UP
        msg["attrs"] = [("IFLA_IFNAME", name)]
        self.request(msg, RTM_SETLINK)

    def delete(self, name: str) -> None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        self.request(msg, RTM_DELLINK)

    def set_bridge_port(self, index: int, *, hairpin: bool, isolated: bool) -> None:
        """``bridge link set dev INDEX hairpin on|off isolated on|off``."""
        msg = ifinfmsg()
        msg["family"] = AF_BRIDGE
        msg["index"] = index
        msg["attrs"] = [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", int(hairpin)),
                                                      ("IFLA_BRPORT_ISOLATED", int(isolated))]},
                         NLA_F_NESTED)]
        self.request(msg, RTM_SETLINK)

    # ------------------------------------------------------------------ addresses and routes
    def add_address(self, index: int, cidr: str) -> None:
        """Add ``cidr`` to link ``index``: IPv4 with its broadcast address (as ``ip addr add
        ... brd +`` and docker do), IPv6 without duplicate address detection."""
        iface = ipaddress.ip_interface(cidr)
        msg = ifaddrmsg()
        msg["index"] = index
        msg["prefixlen"] = iface.network.prefixlen
        if iface.version == 4:
            msg["family"] = socket.AF_INET
            msg["attrs"] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
            if iface.network.prefixlen < 31:
                msg["attrs"].append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
        else:
            msg["family"] = socket.AF_INET6
            msg["flags"] = IFA_F_NODAD
            msg["attrs"] = [("IFA_ADDRESS", str(iface.ip))]
        self.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def replace_default_route(self, gateway: str, oif: int) -> None:
        """``ip route replace default via GATEWAY dev OIF`` (IPv4 or IPv6 by the gateway)."""
        gw = ipaddress.ip_address(gateway)
        msg = rtmsg()
        msg["family"] = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", str(gw)), ("RTA_OIF", oif)]
        self.request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)
