"""Pure address arithmetic: default pools, choosing a free subnet, choosing a free address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dockyard.errors import Conflict, InvalidArgument

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Default address pools: docker's bases (``daemon.json`` ``default-address-pools``), 172.17.0.0/16
#: whole (the default ``bridge`` network, docker0's subnet) and the rest cut into /24s, so
#: automatic networks take a /24 each instead of docker's /16 (172.18-31) and /20 (192.168).
DEFAULT_POOLS = "172.17.0.0/16:16,172.18.0.0/15:24,172.20.0.0/14:24,172.24.0.0/14:24," \
                "172.28.0.0/14:24,192.168.0.0/16:24"

@dataclass(frozen=True)
class DefaultPool:
    """A base network cut into subnets of ``size`` prefix length."""

    base: IPNetwork
    size: int

    def subnets(self) -> Iterator[IPNetwork]:
        return self.base.subnets(new_prefix=self.size)


def parse_pools(text: str, v6: bool) -> list[DefaultPool]:
    """Parse ``"10.213.0.0/16:24,10.214.0.0/16"`` (``base[:size]``, size defaulting to /24, or /64
    for IPv6). Every pool must be of the requested family."""
    pools = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        base_text, size_text = item, ""
        if ":" in item.partition("/")[2]:  # "base/len:size" (the base itself may hold colons)
            base_text, size_text = item.rsplit(":", 1)
        try:
            base = ipaddress.ip_network(base_text, strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"bad default address pool {item!r}: {exc}") from exc
        if (base.version == 6) != v6:
            raise InvalidArgument(f"default address pool {item!r} is not IPv{6 if v6 else 4}")
        default_size = 64 if v6 else 24
        try:
            size = int(size_text) if size_text else max(default_size, base.prefixlen)
        except ValueError as exc:
            raise InvalidArgument(f"bad size in default address pool {item!r}") from exc
        if not base.prefixlen <= size <= base.max_prefixlen - 2:
            raise InvalidArgument(f"size /{size} does not fit default address pool {item!r}")
        pools.append(DefaultPool(base, size))
    return pools


def parse_network(text: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: {exc}") from exc


def parse_address(text: str, what: str) -> IPAddress:
    """An address, with or without a ``/prefix`` suffix."""
    try:
        return ipaddress.ip_address(text.strip().split("/", 1)[0])
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: {exc}") from exc


def overlaps_any(net: IPNetwork, others: Iterable[IPNetwork]) -> bool:
    return any(o.version == net.version and net.overlaps(o) for o in others)


def pick_subnet(pools: list[DefaultPool], taken: list[IPNetwork]) -> IPNetwork | None:
    """The first subnet of ``pools`` overlapping nothing in ``taken``."""
    for pool in pools:
        relevant = [t for t in taken if t.version == pool.base.version and t.overlaps(pool.base)]
        if not relevant:
            return next(pool.subnets())
        for candidate in pool.subnets():
            if not any(candidate.overlaps(t) for t in relevant):
                return candidate
    return None


def requested_subnet(subnet: str, v6: bool, existing: list[IPNetwork], where: str = "") -> IPNetwork:
    """A pool's explicit ``subnet``, checked: of the family asked for, big enough, overlapping no
    pool of ``existing`` (``where`` ends the conflict's message)."""
    net = parse_network(subnet, "subnet")
    if (net.version == 6) != v6:
        raise InvalidArgument(f"subnet {subnet} is not an IPv{6 if v6 else 4} network")
    if net.num_addresses < (2 if v6 else 4):
        raise InvalidArgument(f"subnet {subnet} is too small")
    if overlaps_any(net, existing):
        raise Conflict(f"subnet {net} overlaps a pool already in use{where}")
    return net


def range_and_gateway(net: IPNetwork, ip_range: str, gateway: str) -> tuple[IPNetwork | None, IPAddress]:
    """A pool's ``ip_range`` (inside ``net``; None when not given) and gateway (``gateway`` when
    given and usable, else ``net``'s first host)."""
    rng = None
    if ip_range:
        rng = parse_network(ip_range, "ip-range")
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidArgument(f"ip-range {ip_range} is not inside subnet {net}")
    if not gateway:
        return rng, first_host(net)
    gw = parse_address(gateway, "gateway")
    if not usable(net, gw):
        raise InvalidArgument(f"gateway {gateway} is not a usable address of {net}")
    return rng, gw


def usable(subnet: IPNetwork, address: IPAddress) -> bool:
    """Whether ``address`` may be handed out in ``subnet`` (IPv4 network/broadcast excluded)."""
    if address not in subnet:
        return False
    if subnet.version == 4 and subnet.prefixlen <= 30:
        return address not in (subnet.network_address, subnet.broadcast_address)
    if subnet.version == 6 and address == subnet.network_address:
        return False  # the subnet-router anycast address
    return True


def first_host(subnet: IPNetwork) -> IPAddress:
    return next(a for a in _addresses(subnet, subnet.network_address) if usable(subnet, a))


def _addresses(net: IPNetwork, start: IPAddress) -> Iterator[IPAddress]:
    """Addresses of ``net`` from ``start`` (inclusive), wrapping around once."""
    first, last = int(net.network_address), int(net.broadcast_address)
    s = int(start)
    cls = type(net.network_address)
    for value in range(s, last + 1):
        yield cls(value)
    for value in range(first, s):
        yield cls(value)


def next_free(subnet: IPNetwork, ip_range: IPNetwork, allocated: set[str],
              after: IPAddress | None, limit: int = 1 << 20) -> IPAddress | None:
    """The next usable, unallocated address of ``ip_range`` after ``after`` (round robin, so a
    just-released address is not handed out again at once). ``limit`` bounds the scan of huge
    (IPv6) ranges."""
    start = ip_range.network_address
    if after is not None and after in ip_range and int(after) < int(ip_range.broadcast_address):
        start = type(after)(int(after) + 1)
    for n, addr in enumerate(_addresses(ip_range, start)):
        if n >= limit:
            break
        if usable(subnet, addr) and str(addr) not in allocated:
            return addr
    return None
