"""The embedded DNS: records scoped per network, answers, forwarding, and serving inside a
container's namespace at 127.0.0.11:53 over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from dockyard_network_bridge.dns import DnsRecords, EmbeddedDns
from dockyard_plugin_sdk.conformance.network import socket_in_netns


def records() -> DnsRecords:
    r = DnsRecords()
    r.set_network("net-a", {"web": ["10.213.200.2/24"], "db": ["10.213.200.3", "fd00:213::3"]})
    r.set_network("net-b", {"cache": ["10.213.201.2"]})
    r.add("net-a", "WWW", ["10.213.200.2"])  # an alias of web
    return r


async def ask(dns: EmbeddedDns, name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(await dns.answer(DNSRecord.question(name, qtype).pack()))


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


async def test_answers_are_scoped_to_the_containers_networks():
    dns = EmbeddedDns(records(), networks=["net-a"])
    assert addresses(await ask(dns, "web")) == ["10.213.200.2"]
    assert addresses(await ask(dns, "Www.")) == ["10.213.200.2"]
    reply = await ask(dns, "cache")  # on net-b only
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.rr == []
    dns.networks.append("net-b")
    assert addresses(await ask(dns, "cache")) == ["10.213.201.2"]


async def test_record_types_ptr_and_nodata():
    dns = EmbeddedDns(records(), networks=["net-a"])
    assert addresses(await ask(dns, "db", "AAAA")) == ["fd00:213::3"]
    nodata = await ask(dns, "web", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == [] and nodata.header.aa == 1
    ptr = await ask(dns, "3.200.213.10.in-addr.arpa", "PTR")
    assert addresses(ptr) == ["db."]
    assert await dns.answer(b"\x00garbage") is None


async def test_records_can_be_removed():
    r = records()
    dns = EmbeddedDns(r, networks=["net-a"])
    r.remove("net-a", "db", ["10.213.200.3"])
    assert addresses(await ask(dns, "db", "ANY")) == ["fd00:213::3"]
    r.remove("net-a", "db")
    assert (await ask(dns, "db")).header.rcode == RCODE.NXDOMAIN
    r.drop_network("net-a")
    assert (await ask(dns, "web")).header.rcode == RCODE.NXDOMAIN


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver on 127.0.0.1 in the host namespace answering every A query with 192.0.2.123."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = DNSRecord.parse(data)
        reply = q.reply()
        reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.123"), ttl=5))
        self.transport.sendto(reply.pack(), addr)


async def test_unknown_names_go_upstream():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(FakeUpstream, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        dns = EmbeddedDns(records(), networks=["net-a"], upstreams=[("127.0.0.1", port)])
        assert addresses(await ask(dns, "example.test")) == ["192.0.2.123"]
        assert addresses(await ask(dns, "web")) == ["10.213.200.2"]  # local names stay local
    finally:
        transport.close()


def udp_query(sock: socket.socket, name: str, qtype: str = "A") -> DNSRecord:
    sock.settimeout(3)
    sock.sendto(DNSRecord.question(name, qtype).pack(), ("127.0.0.11", 53))
    return DNSRecord.parse(sock.recv(4096))


def tcp_query(sock: socket.socket, name: str) -> DNSRecord:
    sock.settimeout(3)
    sock.connect(("127.0.0.11", 53))
    q = DNSRecord.question(name).pack()
    sock.sendall(struct.pack("!H", len(q)) + q)
    (length,) = struct.unpack("!H", sock.recv(2))
    data = b""
    while len(data) < length:
        data += sock.recv(length - len(data))
    return DNSRecord.parse(data)


async def test_served_inside_each_container_namespace(harness):
    """Two networks; containers resolve their own network's names by UDP and TCP, not the other
    network's, and reach the peer at the address they resolved."""
    app = await harness.create_network()
    other = await harness.create_network()
    req_web, res_web = await harness.join(app)
    req_cli, res_cli = await harness.join(app)
    req_far, res_far = await harness.join(other)
    r = DnsRecords()
    r.set_network(app.id, {"web": [res_web.ipv4_address], "client": [res_cli.ipv4_address]})
    r.set_network(other.id, {"far": [res_far.ipv4_address]})
    servers = [EmbeddedDns(r, [app.id]), EmbeddedDns(r, [other.id])]
    await servers[0].start(req_cli.netns_path)
    await servers[1].start(req_far.netns_path)
    try:
        udp = socket_in_netns(req_cli.netns_path, kind=socket.SOCK_DGRAM)
        with udp:
            web = await asyncio.to_thread(udp_query, udp, "web")
            far = await asyncio.to_thread(udp_query, udp, "far")
        assert addresses(web) == [harness.address_of(req_web, res_web)]
        assert far.header.rcode == RCODE.NXDOMAIN
        tcp = socket_in_netns(req_cli.netns_path)
        with tcp:
            assert addresses(await asyncio.to_thread(tcp_query, tcp, "client")) == [
                harness.address_of(req_cli, res_cli)]
        udp = socket_in_netns(req_far.netns_path, kind=socket.SOCK_DGRAM)
        with udp:
            assert (await asyncio.to_thread(udp_query, udp, "web")).header.rcode == RCODE.NXDOMAIN
            assert addresses(await asyncio.to_thread(udp_query, udp, "far")) == [
                harness.address_of(req_far, res_far)]
        # the host namespace has no resolver at 127.0.0.11: the servers really are in the netns
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
            host.settimeout(0.3)
            host.sendto(DNSRecord.question("web").pack(), ("127.0.0.11", 53))
            with pytest.raises(OSError):
                host.recv(512)
        # and the resolved address is the peer: connect to it by name
        server = socket_in_netns(req_web.netns_path)
        client = socket_in_netns(req_cli.netns_path)
        with server, client:
            server.bind(("0.0.0.0", 8080))
            server.listen(1)
            client.settimeout(3)
            await asyncio.to_thread(client.connect, (addresses(web)[0], 8080))
    finally:
        for s in servers:
            await s.stop()


async def test_start_fails_cleanly_when_the_port_is_taken(harness):
    network = await harness.create_network()
    req, _ = await harness.join(network)
    first = EmbeddedDns(DnsRecords(), [network.id])
    await first.start(req.netns_path)
    try:
        with pytest.raises(OSError):
            await EmbeddedDns(DnsRecords(), [network.id]).start(req.netns_path)
    finally:
        await first.stop()


def _query(netns_path: str, name: str) -> DNSRecord:
    sock = socket_in_netns(netns_path, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(2)
        sock.sendto(DNSRecord.question(name).pack(), ("127.0.0.11", 53))
        return DNSRecord.parse(sock.recv(4096))


async def test_driver_dns_methods(harness):
    """The service-facing methods: records per network, one resolver per sandbox, updated in
    place, stopped by dns_detach (and by close)."""
    drv = harness.driver
    net_a = await harness.create_network()
    net_b = await harness.create_network()
    req, _res = await harness.join(net_a)  # brings the namespace's loopback up
    await drv.dns_set_records(net_a.id, {"web": ["10.213.200.2"]})
    await drv.dns_set_records(net_b.id, {"cache": ["10.213.201.2"]})
    await drv.dns_attach("sandbox1", req.netns_path, [net_a.id], [])
    assert addresses(await asyncio.to_thread(_query, req.netns_path, "web")) == ["10.213.200.2"]
    assert (await asyncio.to_thread(_query, req.netns_path, "cache")).header.rcode == RCODE.NXDOMAIN
    await drv.dns_attach("sandbox1", req.netns_path, [net_a.id, net_b.id], [])  # update in place
    assert addresses(await asyncio.to_thread(_query, req.netns_path, "cache")) == ["10.213.201.2"]
    await drv.dns_set_records(net_b.id, {})  # network forgotten
    assert (await asyncio.to_thread(_query, req.netns_path, "cache")).header.rcode == RCODE.NXDOMAIN
    await drv.dns_detach("sandbox1")
    with pytest.raises(OSError):  # nothing listens any more (refused or timed out)
        await asyncio.to_thread(_query, req.netns_path, "web")
    await drv.dns_detach("sandbox1")  # nothing to stop: fine
