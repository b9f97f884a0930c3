"""The networks already in use on this host, read over netlink with pyroute2: every route's
destination (except default routes) and every interface address's network. A pool chosen
automatically must overlap none of them."""

from __future__ import annotations

import ipaddress
import socket

from pyroute2 import IPRoute

from dockyard_network_ipam.pools import IPNetwork


def host_networks(v6: bool) -> list[IPNetwork]:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    nets: list[IPNetwork] = []
    with IPRoute() as ipr:
        for route in ipr.route("dump", family=family):
            dst, length = route.get("dst"), route["dst_len"]
            if not dst or length == 0:
                continue
            if route.get("type", 1) not in (1,):  # unicast only (not local/broadcast/multicast)
                continue
            nets.append(ipaddress.ip_network(f"{dst}/{length}", strict=False))
        for addr in ipr.addr("dump", family=family):
            address = addr.get("address")
            if address:
                net = ipaddress.ip_network(f"{address}/{addr['prefixlen']}", strict=False)
                if not net.is_loopback and not net.is_link_local:
                    nets.append(net)
    return nets
