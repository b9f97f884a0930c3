"""Host port choice for published ports: explicit ports are checked, port 0 picks a free one."""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.errors import Conflict, InvalidArgument, Unavailable
from dockyard.specs.network import PortMapping

PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_RANGE = (49153, 65535)  # dockerd's dynamic port range


@dataclass(frozen=True)
class Binding:
    protocol: str
    host_ip: str  # "" = every address
    host_port: int


def parse_range(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        lo, hi = int(low), int(high or low)
    except ValueError as exc:
        raise InvalidArgument(f"bad port range {text!r}") from exc
    if not 1 <= lo <= hi <= 65535:
        raise InvalidArgument(f"bad port range {text!r}")
    return lo, hi


def _clashes(a: Binding, b: Binding) -> bool:
    return (a.protocol == b.protocol and a.host_port == b.host_port
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def bindable(b: Binding) -> bool:
    """Whether nothing on the host holds the port now (a bind on it succeeds)."""
    if b.protocol == "sctp":
        return True  # no portable check; our own bookkeeping still prevents clashes
    kind = socket.SOCK_STREAM if b.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((b.host_ip or "0.0.0.0", b.host_port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"host address {b.host_ip} is not an address of this host") from exc
            raise
    return True


def normalise(mapping: PortMapping, default_host_ip: str) -> PortMapping:
    protocol = (mapping.protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"unsupported protocol {mapping.protocol!r} (one of {', '.join(PROTOCOLS)})")
    if not 1 <= mapping.container_port <= 65535:
        raise InvalidArgument(f"container port {mapping.container_port} is out of range")
    if not 0 <= mapping.host_port <= 65535:
        raise InvalidArgument(f"host port {mapping.host_port} is out of range")
    host_ip = mapping.host_ip or default_host_ip
    if host_ip in ("0.0.0.0", ""):
        host_ip = ""
    else:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError as exc:
            raise InvalidArgument(f"bad host IP {host_ip!r}") from exc
        if addr.version != 4:
            raise InvalidArgument(f"publishing on IPv6 address {host_ip} is not supported")
    return PortMapping(container_port=mapping.container_port, protocol=protocol, host_ip=host_ip,
                       host_port=mapping.host_port)


def allocate(wanted: list[PortMapping], in_use: Iterable[Binding], port_range: tuple[int, int],
             default_host_ip: str = "") -> list[PortMapping]:
    """Host ports for ``wanted``; explicit ones must be free, 0 picks a free one of
    ``port_range``. ``in_use`` holds the bindings this driver already made."""
    taken = list(in_use)
    out: list[PortMapping] = []
    for raw in wanted:
        m = normalise(raw, default_host_ip)
        if m.host_port:
            b = Binding(m.protocol, m.host_ip, m.host_port)
            if any(_clashes(b, t) for t in taken) or not bindable(b):
                where = f"{m.host_ip or '0.0.0.0'}:{m.host_port}/{m.protocol}"
                raise Conflict(f"Bind for {where} failed: port is already allocated")
        else:
            lo, hi = port_range
            start = random.randint(lo, hi)
            for n in range(hi - lo + 1):
                port = lo + (start - lo + n) % (hi - lo + 1)
                b = Binding(m.protocol, m.host_ip, port)
                if not any(_clashes(b, t) for t in taken) and bindable(b):
                    break
            else:
                raise Unavailable(f"no free host port in {lo}-{hi} for {m.protocol}")
            m = PortMapping(container_port=m.container_port, protocol=m.protocol,
                            host_ip=m.host_ip, host_port=port)
        taken.append(Binding(m.protocol, m.host_ip, m.host_port))
        out.append(m)
    return out
