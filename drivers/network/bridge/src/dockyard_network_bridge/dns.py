"""Embedded DNS: names of containers (and aliases) answered inside each container's network
namespace at ``127.0.0.11:53`` (UDP and TCP), scoped to the networks the container is on.

:class:`DnsRecords` holds name → addresses per network (the service fills it from container
names, ``--network-alias`` and the ``dockyard_dns_records`` hook). :class:`EmbeddedDns` serves
one container: its sockets are created inside the container's namespace by a short-lived thread
that calls ``setns`` (the socket stays in that namespace for good), then served by the
daemon's asyncio loop. A container sees only the records of the networks in its
:attr:`EmbeddedDns.networks`; everything else goes to the ``upstreams`` (from the daemon's
namespace, like dockerd's resolver) or, with none, gets NXDOMAIN.

The wire format is dnslib's. Answers are authoritative with TTL 600 (dockerd's); a known name
without records of the asked type gets an empty NOERROR answer; ``PTR`` queries for the
addresses of the container's networks are answered too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable

from dockyard.netns import enter, in_thread

# dnslib is imported where a query is answered: only networks with embedded DNS use it, and
# every daemon imports this module (the default bridge has none).

log = logging.getLogger(__name__)

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
TTL = 600
UPSTREAM_TIMEOUT = 2.0


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


class DnsRecords:
    """name → addresses, per network id. Names are case-insensitive, without trailing dot."""

    def __init__(self) -> None:
        self._nets: dict[str, dict[str, list[str]]] = {}

    def set_network(self, network_id: str, records: dict[str, list[str]]) -> None:
        self._nets[network_id] = {}
        for name, addresses in records.items():
            self.add(network_id, name, addresses)

    def drop_network(self, network_id: str) -> None:
        self._nets.pop(network_id, None)

    def add(self, network_id: str, name: str, addresses: Iterable[str]) -> None:
        have = self._nets.setdefault(network_id, {}).setdefault(_norm(name), [])
        for address in addresses:
            addr = str(ipaddress.ip_address(address.split("/")[0]))
            if addr not in have:
                have.append(addr)

    def remove(self, network_id: str, name: str, addresses: Iterable[str] | None = None) -> None:
        records = self._nets.get(network_id, {})
        key = _norm(name)
        if addresses is None:
            records.pop(key, None)
            return
        drop = {str(ipaddress.ip_address(a.split("/")[0])) for a in addresses}
        left = [a for a in records.get(key, []) if a not in drop]
        if left:
            records[key] = left
        else:
            records.pop(key, None)

    def lookup(self, networks: Iterable[str], name: str) -> list[str] | None:
        """Addresses of ``name`` on ``networks`` (None: the name is unknown there)."""
        found: list[str] | None = None
        key = _norm(name)
        for net in networks:
            addresses = self._nets.get(net, {}).get(key)
            if addresses is not None:
                found = (found or []) + [a for a in addresses if a not in (found or [])]
        return found

    def reverse(self, networks: Iterable[str], address: str) -> list[str]:
        names = []
        for net in networks:
            for name, addresses in self._nets.get(net, {}).items():
                if address in addresses and name not in names:
                    names.append(name)
        return names


def _ptr_address(qname: str) -> str | None:
    labels = _norm(qname).split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None


class EmbeddedDns:
    """The resolver of one container namespace."""

    def __init__(self, records: DnsRecords, networks: Iterable[str] = (),
                 upstreams: Iterable[tuple[str, int]] = (), address: str = DNS_ADDRESS,
                 port: int = DNS_PORT) -> None:
        self.records = records
        self.networks: list[str] = list(networks)
        self.upstreams = list(upstreams)
        self.address = address
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None

    # ------------------------------------------------------------------ answering
    async def answer(self, data: bytes) -> bytes | None:
        """The reply to one DNS message (None for garbage, which is dropped)."""
        from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

        try:
            request = DNSRecord.parse(data)
        except Exception:  # dnslib raises several types on malformed input
            return None
        reply = request.reply()
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply.pack()
        q = request.q
        qname, qtype = str(q.qname), q.qtype
        if qtype == QTYPE.PTR:
            address = _ptr_address(qname)
            names = self.records.reverse(self.networks, address) if address else []
            if names:
                for name in names:
                    reply.add_answer(RR(qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
                return reply.pack()
        else:
            addresses = self.records.lookup(self.networks, qname)
            if addresses is not None:
                for addr in addresses:
                    version = ipaddress.ip_address(addr).version
                    if version == 4 and qtype in (QTYPE.A, QTYPE.ANY):
                        reply.add_answer(RR(qname, QTYPE.A, rdata=A(addr), ttl=TTL))
                    elif version == 6 and qtype in (QTYPE.AAAA, QTYPE.ANY):
                        reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(addr), ttl=TTL))
                return reply.pack()
        forwarded = await self._forward(data)
        if forwarded is not None:
            return forwarded
        reply.header.rcode = RCODE.NXDOMAIN
        reply.header.aa = 0
        return reply.pack()

    async def _forward(self, data: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for host, port in self.upstreams:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                try:
                    await loop.sock_connect(s, (host, port))
                    await loop.sock_sendall(s, data)
                    return await asyncio.wait_for(loop.sock_recv(s, 65535), UPSTREAM_TIMEOUT)
                except (OSError, TimeoutError) as exc:
                    log.debug("upstream %s:%s failed: %r", host, port, exc)
        return None

    # ------------------------------------------------------------------ serving
    async def start(self, netns_path: str | None = None) -> None:
        """Listen on ``address:port`` (UDP and TCP) inside ``netns_path`` (None: right here).
        The namespace's loopback must be up (every dockyard network driver brings it up)."""
        udp, tcp = await asyncio.to_thread(self._sockets, netns_path)
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            await self.stop()
            raise

    def _sockets(self, netns_path: str | None) -> tuple[socket.socket, socket.socket]:
        def make() -> tuple[socket.socket, socket.socket]:
            if netns_path:
                enter(netns_path)  # this thread only
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((self.address, self.port))
                tcp.bind((self.address, self.port))
                tcp.listen(64)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp

        return in_thread(make, "dns-netns-socket")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await self.answer(await reader.readexactly(length))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: EmbeddedDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._reply(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        from dnslib import DNSRecord

        reply = await self.server.answer(data)
        if reply is not None and len(reply) > 512 and b"\x00\x00\x29" not in data[12:]:
            short = DNSRecord.parse(reply)  # too big for plain UDP: truncate, the client retries on TCP
            short.rr = []
            short.header.tc = 1
            reply = short.pack()
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)
