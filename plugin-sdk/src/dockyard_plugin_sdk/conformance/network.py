"""Conformance kits for network drivers (:class:`NetworkContract`) and IPAM drivers
(:class:`IpamContract`).

A driver's tests subclass a kit in one line and supply the ``driver`` fixture (an instance whose
``setup()`` has run, built on a :class:`~dockyard.specs.DriverContext` with a throwaway
``owner``)::

    class TestBridge(NetworkContract):
        @pytest_asyncio.fixture
        async def driver(self, tmp_path):
            drv = BridgeDriver(make_context(tmp_path, owner=random_owner()))
            await drv.setup()
            yield drv
            await drv.close()

Network cases stand a throwaway network namespace (``pyroute2.netns.create``, removed at
teardown) in for each container and talk between them with sockets created inside those
namespaces (a short-lived thread calls ``setns``; the socket stays in its namespace). They need
root, ``CAP_NET_ADMIN`` and pyroute2. Capabilities a driver declares in ``info.capabilities``
enable the cases that need them:

``connectivity``
    Endpoints get the requested interface and address; two endpoints on one network reach each
    other; a non-internal network gives a default route.
``isolation``
    An endpoint on another network of the same driver cannot be reached.
``port-publishing``
    ``EndpointRequest.ports`` are published: reachable from the host at ``127.0.0.1``.
``internal``
    ``Network.internal`` is honoured: no default route in the container.
``embedded-dns``
    The driver is a :class:`~dockyard.specs.network.EmbeddedDnsDriver`: a resolver attached to a
    container's namespace answers, at ``127.0.0.11:53`` over UDP and TCP, the names set for the
    networks it was attached for (and only those), forwards other names to its upstreams, and
    stops at ``dns_detach``. These cases need dnslib (the SDK's ``network`` extra).

Every driver's class must agree with its declared capabilities: one declaring ``embedded-dns``
subclasses ``EmbeddedDnsDriver`` and the other way round (``dockyard.registry.check_driver_class``,
the check the registry makes at load).

Every network case ends by checking that no link, named network namespace or nft table whose
name contains the driver's ``context.owner`` is left behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.model import IpamPool, Network
from dockyard.specs import Driver, IpamDriver, NetworkDriver
from dockyard.specs.network import (
    EMBEDDED_DNS,
    EmbeddedDnsDriver,
    EndpointRequest,
    EndpointResult,
    PortMapping,
)
from dockyard_plugin_sdk.conformance import requires
from dockyard_plugin_sdk.conformance._common import DriverContract
from dockyard_plugin_sdk.testing import WaitTimeout, async_wait_for

#: Where test subnets come from unless a kit subclass overrides ``test_subnet_base``.
TEST_SUBNET_BASE = "10.213.128.0/17"

__all__ = [
    "IpamContract", "NetworkContract", "NetworkHarness", "dns_query", "free_test_subnet", "host_networks",
    "leftovers", "random_owner", "socket_in_netns", "wait_for_leftovers",
]


# ------------------------------------------------------------------------------ host helpers
def random_owner(prefix: str = "dyt") -> str:
    """A fresh owner token (8 characters, like the daemon's) so a test's objects are its own."""
    return prefix + secrets.token_hex(4)[: 8 - len(prefix)]


def _off_loop(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread and wait: pyroute2's synchronous API starts an event loop of
    its own, which fails in a thread where one (the test's) is already running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every non-default route destination and interface network of the host (pyroute2)."""
    return _off_loop(_host_networks)


def _host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    from pyroute2 import IPRoute

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    with IPRoute() as ipr:
        for route in ipr.route("dump"):
            if route.get("dst") and route["dst_len"]:
                nets.append(ipaddress.ip_network(f"{route.get('dst')}/{route['dst_len']}", strict=False))
        for addr in ipr.addr("dump"):
            if addr.get("address"):
                nets.append(ipaddress.ip_network(f"{addr.get('address')}/{addr['prefixlen']}", strict=False))
    return nets


def free_test_subnet(base: str = TEST_SUBNET_BASE, prefixlen: int = 24,
                     avoid: tuple[str, ...] = ()) -> str:
    """A random ``/prefixlen`` of ``base`` that overlaps no host route, no host address and
    nothing in ``avoid`` (random, so parallel test sessions rarely pick the same one)."""
    taken = host_networks() + [ipaddress.ip_network(a) for a in avoid]
    candidates = list(ipaddress.ip_network(base).subnets(new_prefix=prefixlen))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.version == t.version and net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError(f"no free /{prefixlen} left in {base}")


def _nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return []
    return [f"{i['table']['family']} {i['table']['name']}"
            for i in json.loads(out.stdout).get("nftables", []) if "table" in i]


def leftovers(owner: str) -> list[str]:
    """Host objects whose name contains ``owner``: links, named netns, nft tables."""
    return _off_loop(lambda: _leftovers(owner))


def _leftovers(owner: str) -> list[str]:
    from pyroute2 import IPRoute, netns

    found = []
    with IPRoute() as ipr:
        found += [f"link {link.get('ifname')}" for link in ipr.link("dump")
                  if owner in (link.get("ifname") or "")]
    found += [f"netns {n}" for n in netns.listnetns() if owner in n]
    found += [f"nft table {t}" for t in _nft_tables() if owner in t]
    return found


async def wait_for_leftovers(owner: str, allowed: set[str], timeout: float) -> list[str]:
    """Poll :func:`leftovers` until nothing outside ``allowed`` remains or ``timeout`` passes
    (the kernel deletes a dead namespace's interfaces asynchronously); what remains."""
    extra: list[str] = []

    async def gone() -> bool:
        extra[:] = sorted(set(await asyncio.to_thread(leftovers, owner)) - allowed)
        return not extra

    try:
        await async_wait_for(gone, timeout, f"the objects of owner {owner} to go")
    except WaitTimeout:
        pass
    return extra


def socket_in_netns(netns_path: str, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside the network namespace at ``netns_path``. A dedicated thread
    enters the namespace (``setns`` changes only the calling thread) and ends there."""
    from dockyard.netns import run_in

    return run_in(netns_path, lambda: socket.socket(family, kind))


def dns_query(netns_path: str, name: str, qtype: str = "A", tcp: bool = False,
              server: tuple[str, int] = ("127.0.0.11", 53), timeout: float = 2.0) -> Any:
    """Ask ``server`` (the embedded resolver's address) for ``name`` from inside the namespace at
    ``netns_path``, over UDP or TCP; the parsed reply (a ``dnslib.DNSRecord``). Raises
    ``OSError`` when nothing answers (refused or timed out). Blocking: call it in a thread."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name, qtype).pack()
    sock = socket_in_netns(netns_path, kind=socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(timeout)
        if not tcp:
            sock.sendto(query, server)
            return DNSRecord.parse(sock.recv(65535))
        sock.connect(server)
        sock.sendall(len(query).to_bytes(2, "big") + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(65535)
            if not chunk:
                raise ConnectionResetError("the resolver closed the connection before answering")
            data += chunk
        return DNSRecord.parse(data[2:2 + int.from_bytes(data[:2], "big")])


def _answers(reply: Any) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def _is_nxdomain(reply: Any) -> bool:
    from dnslib import RCODE

    return reply.header.rcode == RCODE.NXDOMAIN and not reply.rr


class _FakeUpstream(asyncio.DatagramProtocol):
    """An upstream resolver on the host's loopback answering every A query with ``address``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        from dnslib import QTYPE, RR, A, DNSRecord

        query = DNSRecord.parse(data)
        reply = query.reply()
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.address), ttl=5))
        self.transport.sendto(reply.pack(), addr)


def _routes_in(netns_path: str) -> list[dict[str, Any]]:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns_path, flags=0) as ipr:
        return [{"dst": r.get("dst"), "dst_len": r["dst_len"], "gateway": r.get("gateway"),
                 "table": r.get("table")} for r in ipr.route("dump", family=socket.AF_INET)]


def _addresses_in(netns_path: str, ifname: str) -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns_path, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [f"{a.get('address')}/{a['prefixlen']}" for a in ipr.addr("dump", index=idx[0])]


def _exchange(client: socket.socket, server: socket.socket, target: tuple[str, int],
              timeout: float) -> bytes:
    """Connect ``client`` to ``target``, accept on ``server``, echo one message; the reply."""
    client.settimeout(timeout)
    server.settimeout(timeout)
    client.connect(target)
    conn, _ = server.accept()
    with conn:
        client.sendall(b"ping")
        conn.sendall(conn.recv(16).upper())
        return client.recv(16)


# ------------------------------------------------------------------------------ harness
class NetworkHarness:
    """Creates networks, stand-in containers (netns) and endpoints for one test, and removes all
    of them, in reverse order, at teardown."""

    def __init__(self, driver: NetworkDriver, subnet_base: str) -> None:
        self.driver = driver
        self.owner = driver.context.owner
        self.subnet_base = subnet_base
        self.networks: list[Network] = []
        self.netns: list[str] = []
        self.endpoints: list[tuple[EndpointRequest, EndpointResult]] = []
        self.dns_sandboxes: list[str] = []  # attached resolvers, detached at teardown
        self.dns_networks: list[str] = []  # networks given records, forgotten at teardown
        self._next_host: dict[str, int] = {}
        self._serial = 0

    @property
    def dns_driver(self) -> EmbeddedDnsDriver:
        """The driver as an embedded-DNS server (a case calls ``requires(driver, "embedded-dns")``
        first; a driver declaring it that is no ``EmbeddedDnsDriver`` fails the kind check)."""
        if not isinstance(self.driver, EmbeddedDnsDriver):
            raise TypeError(f"{type(self.driver).__qualname__} declares {EMBEDDED_DNS!r} but is not an "
                            "EmbeddedDnsDriver")
        return self.driver

    async def set_dns_records(self, network: Network, records: dict[str, list[str]]) -> None:
        if network.id not in self.dns_networks:
            self.dns_networks.append(network.id)
        await self.dns_driver.dns_set_records(network.id, records)

    async def attach_dns(self, req: EndpointRequest, networks: list[Network],
                         upstreams: list[tuple[str, int]] | None = None) -> str:
        """Attach a resolver to the namespace of ``req``'s stand-in container, answering the
        names of ``networks``; the sandbox ID (the container's)."""
        if req.container_id not in self.dns_sandboxes:
            self.dns_sandboxes.append(req.container_id)
        await self.dns_driver.dns_attach(req.container_id, req.netns_path, [n.id for n in networks],
                                         list(upstreams or []))
        return req.container_id

    def make_network(self, *, internal: bool = False, options: dict[str, str] | None = None,
                     subnet: str = "") -> Network:
        """A :class:`Network` model with a fresh test subnet (not created yet)."""
        subnet = subnet or free_test_subnet(
            self.subnet_base, avoid=tuple(p.subnet for n in self.networks for p in n.ipam_pools))
        gateway = str(next(ipaddress.ip_network(subnet).hosts()))
        return Network(id=secrets.token_hex(32), name=f"{self.owner}-net{len(self.networks)}",
                       driver=self.driver.info.name, internal=internal,
                       ipam_pools=[IpamPool(subnet=subnet, gateway=gateway)], options=dict(options or {}))

    async def create_network(self, **kw: Any) -> Network:
        network = self.make_network(**kw)
        self.networks.append(network)  # before the call: teardown deletes even a half-made one
        network.extra.update(await self.driver.create_network(network) or {})
        return network

    async def delete_network(self, network: Network) -> None:
        await self.driver.delete_network(network)
        self.networks.remove(network)

    def create_netns(self) -> str:
        from pyroute2 import netns

        self._serial += 1
        name = f"{self.owner}-ns{self._serial}"
        netns.create(name)
        self.netns.append(name)
        return f"/run/netns/{name}"

    def remove_netns(self, path: str) -> None:
        from pyroute2 import netns

        name = os.path.basename(path)
        netns.remove(name)
        self.netns.remove(name)

    def request(self, network: Network, netns_path: str, ports: list[PortMapping] | None = None,
                ifname: str = "eth0") -> EndpointRequest:
        address = gateway = ""
        if not self.driver.allocates_addresses and network.ipam_pools:
            net = ipaddress.ip_network(network.ipam_pools[0].subnet)
            n = self._next_host.get(network.id, 2)
            self._next_host[network.id] = n + 1
            address = f"{net.network_address + n}/{net.prefixlen}"
            gateway = network.ipam_pools[0].gateway
        return EndpointRequest(network=network, container_id=secrets.token_hex(32),
                               endpoint_id=secrets.token_hex(32), netns_path=netns_path,
                               ifname=ifname, ipv4_address=address, gateway=gateway,
                               ports=list(ports or []))

    async def join(self, network: Network, netns_path: str = "", **kw: Any
                   ) -> tuple[EndpointRequest, EndpointResult]:
        req = self.request(network, netns_path or self.create_netns(), **kw)
        result = await self.driver.join(req)
        self.endpoints.append((req, result))
        return req, result

    async def leave(self, req: EndpointRequest, result: EndpointResult) -> None:
        await self.driver.leave(req, result)
        with contextlib.suppress(ValueError):
            self.endpoints.remove((req, result))

    @staticmethod
    def address_of(req: EndpointRequest, result: EndpointResult) -> str:
        return (result.ipv4_address or req.ipv4_address).split("/")[0]

    async def teardown(self) -> list[str]:
        errors: list[str] = []
        for sandbox_id in reversed(self.dns_sandboxes):
            try:
                await self.dns_driver.dns_detach(sandbox_id)
            except Exception as exc:  # reported, teardown goes on
                errors.append(f"dns_detach {sandbox_id[:12]}: {exc!r}")
        self.dns_sandboxes.clear()
        for network_id in self.dns_networks:
            try:
                await self.dns_driver.dns_set_records(network_id, {})
            except Exception as exc:
                errors.append(f"dns_set_records {network_id[:12]} {{}}: {exc!r}")
        self.dns_networks.clear()
        for req, result in reversed(self.endpoints):
            try:
                await self.driver.leave(req, result)
            except Exception as exc:  # reported, teardown goes on
                errors.append(f"leave {req.endpoint_id[:12]}: {exc!r}")
        self.endpoints.clear()
        for network in reversed(self.networks):
            try:
                await self.driver.delete_network(network)
            except NotFound:
                pass
            except Exception as exc:
                errors.append(f"delete network {network.id[:12]}: {exc!r}")
        self.networks.clear()
        for name in list(self.netns):
            try:
                self.remove_netns(name)
            except Exception as exc:
                errors.append(f"remove netns {name}: {exc!r}")
        return errors


class NetworkContract(DriverContract):
    """Cases every network driver meets. See the module docstring for the capabilities."""

    kind: ClassVar[str] = "network"
    #: The range test subnets are drawn from (a random free /24 per network).
    test_subnet_base: ClassVar[str] = TEST_SUBNET_BASE
    #: Seconds a connection that must fail is given before it counts as blocked.
    blocked_timeout: ClassVar[float] = 1.0
    #: Seconds the kernel is given to delete interfaces of a namespace that ended.
    namespace_end_timeout: ClassVar[float] = 10.0

    @pytest_asyncio.fixture
    async def harness(self, driver: NetworkDriver) -> AsyncIterator[NetworkHarness]:
        h = NetworkHarness(driver, self.test_subnet_base)
        yield h
        errors = await h.teardown()
        left = leftovers(h.owner)
        assert not errors, f"teardown failed: {errors}"
        assert not left, f"left behind after the test: {left}"

    @pytest.fixture
    def container_netns(self, harness: NetworkHarness) -> str:
        """A throwaway network namespace standing in for a container: its path, removed (with
        everything else of the test) at teardown. ``harness.create_netns()`` makes more."""
        return harness.create_netns()

    # ------------------------------------------------------------------ life cycle
    async def test_create_delete_leaves_nothing(self, harness: NetworkHarness) -> None:
        network = await harness.create_network()
        await harness.delete_network(network)
        assert leftovers(harness.owner) == []

    async def test_unknown_option_is_invalid(self, harness: NetworkHarness) -> None:
        network = harness.make_network(options={"com.example.no-such-option": "1"})
        with pytest.raises(InvalidArgument):
            await harness.driver.create_network(network)
        assert leftovers(harness.owner) == []

    async def test_leave_is_idempotent(self, harness: NetworkHarness, container_netns: str) -> None:
        network = await harness.create_network()
        req, result = await harness.join(network, netns_path=container_netns)
        await harness.leave(req, result)
        await harness.driver.leave(req, result)

    async def test_leave_after_netns_is_gone(self, harness: NetworkHarness) -> None:
        network = await harness.create_network()
        req, result = await harness.join(network)
        harness.remove_netns(req.netns_path)
        await harness.leave(req, result)
        await harness.delete_network(network)
        assert leftovers(harness.owner) == []

    async def test_closing_leave_stops_traffic_and_ends_with_the_namespace(self, harness: NetworkHarness) -> None:
        """``sandbox_closing``: the endpoint carries nothing once leave returns, and whatever
        the driver left inside the namespace goes when the namespace does."""
        requires(harness.driver, "connectivity")
        network = await harness.create_network()
        req1, _res1 = await harness.join(network)
        before = set(leftovers(harness.owner))
        req2, res2 = await harness.join(network)
        req2.sandbox_closing = True
        await harness.leave(req2, res2)
        server = socket_in_netns(req2.netns_path)
        client = socket_in_netns(req1.netns_path)
        with server, client:
            server.bind(("0.0.0.0", 7779))
            server.listen(1)
            with pytest.raises(OSError):
                await asyncio.to_thread(_exchange, client, server, (harness.address_of(req2, res2), 7779),
                                        self.blocked_timeout)
        harness.remove_netns(req2.netns_path)
        left = await wait_for_leftovers(harness.owner, before, self.namespace_end_timeout)
        assert not left, f"still there after the namespace ended: {left}"

    # ------------------------------------------------------------------ connectivity
    async def test_join_configures_the_interface(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "connectivity")
        network = await harness.create_network()
        req, result = await harness.join(network, ifname="eth7")
        address = harness.address_of(req, result)
        assert address
        have = await asyncio.to_thread(_addresses_in, req.netns_path, "eth7")
        assert any(a.split("/")[0] == address for a in have), have

    async def test_endpoints_on_one_network_reach_each_other(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "connectivity")
        network = await harness.create_network()
        req1, res1 = await harness.join(network)
        req2, res2 = await harness.join(network)
        server = socket_in_netns(req2.netns_path)
        client = socket_in_netns(req1.netns_path)
        with server, client:
            server.bind(("0.0.0.0", 7777))
            server.listen(1)
            reply = await asyncio.to_thread(
                _exchange, client, server, (harness.address_of(req2, res2), 7777), 5.0)
        assert reply == b"PING"

    async def test_endpoint_on_another_network_is_unreachable(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "isolation")
        net_a = await harness.create_network()
        net_b = await harness.create_network()
        req_a, res_a = await harness.join(net_a)
        req_b, res_b = await harness.join(net_b)
        server = socket_in_netns(req_b.netns_path)
        client = socket_in_netns(req_a.netns_path)
        with server, client:
            server.bind(("0.0.0.0", 7778))
            server.listen(1)
            with pytest.raises(OSError):  # timeout, unreachable or refused: anything but a connection
                await asyncio.to_thread(_exchange, client, server,
                                        (harness.address_of(req_b, res_b), 7778), self.blocked_timeout)

    async def test_default_route_via_gateway(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "connectivity")
        network = await harness.create_network()
        req, result = await harness.join(network)
        routes = await asyncio.to_thread(_routes_in, req.netns_path)
        defaults = [r for r in routes if r["dst_len"] == 0 and r["table"] == 254]
        assert defaults, routes
        expected = (result.gateway or req.gateway).split("/")[0]
        assert defaults[0]["gateway"] == expected

    async def test_internal_network_has_no_default_route(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "internal")
        network = await harness.create_network(internal=True)
        req, result = await harness.join(network)
        routes = await asyncio.to_thread(_routes_in, req.netns_path)
        assert [r for r in routes if r["dst_len"] == 0 and r["table"] == 254] == []
        assert any(r["dst_len"] for r in routes), "the endpoint has no route to its own subnet"

    # ------------------------------------------------------------------ ports
    async def test_published_port_reachable_from_localhost(self, harness: NetworkHarness) -> None:
        requires(harness.driver, "port-publishing")
        network = await harness.create_network()
        req, result = await harness.join(network, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
        assert len(result.ports) == 1
        bound = result.ports[0]
        assert bound.container_port == 80 and bound.protocol == "tcp" and bound.host_port > 0
        server = socket_in_netns(req.netns_path)
        with server, socket.socket() as client:
            server.bind(("0.0.0.0", 80))
            server.listen(1)
            reply = await asyncio.to_thread(_exchange, client, server, ("127.0.0.1", bound.host_port), 5.0)
        assert reply == b"PING"

    async def test_published_port_is_gone_after_leave(self, harness: NetworkHarness) -> None:
        """After leave, a host process can bind the port and connections reach it (a stale
        DNAT rule would still send them towards the departed container)."""
        requires(harness.driver, "port-publishing")
        network = await harness.create_network()
        req, result = await harness.join(network, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
        host_port = result.ports[0].host_port
        await harness.leave(req, result)
        with socket.socket() as server, socket.socket() as client:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", host_port))
            server.listen(1)
            reply = await asyncio.to_thread(_exchange, client, server, ("127.0.0.1", host_port),
                                            self.blocked_timeout)
        assert reply == b"PING"

    # ------------------------------------------------------------------ embedded DNS
    async def test_embedded_dns_resolves_a_joined_container(self, harness: NetworkHarness) -> None:
        """A container's resolver answers a peer's name with the address it joined with, over
        UDP and TCP, whatever the case or a trailing dot; an unknown name without upstreams is
        NXDOMAIN."""
        requires(harness.driver, EMBEDDED_DNS)
        network = await harness.create_network()
        req_web, res_web = await harness.join(network)
        req_cli, res_cli = await harness.join(network)
        web = harness.address_of(req_web, res_web)
        await harness.set_dns_records(network, {"web": [web], "client": [harness.address_of(req_cli, res_cli)]})
        await harness.attach_dns(req_cli, [network])
        assert _answers(await asyncio.to_thread(dns_query, req_cli.netns_path, "web")) == [web]
        assert _answers(await asyncio.to_thread(dns_query, req_cli.netns_path, "WEB.")) == [web]
        assert _answers(await asyncio.to_thread(dns_query, req_cli.netns_path, "web", tcp=True)) == [web]
        assert _is_nxdomain(await asyncio.to_thread(dns_query, req_cli.netns_path, "nobody-here"))

    async def test_embedded_dns_answers_only_its_networks(self, harness: NetworkHarness) -> None:
        """Names of a network the sandbox is not attached for are NXDOMAIN; attaching again
        with both networks updates the resolver in place; ``{}`` forgets a network."""
        requires(harness.driver, EMBEDDED_DNS)
        net_a = await harness.create_network()
        net_b = await harness.create_network()
        req, _res = await harness.join(net_a)
        await harness.set_dns_records(net_a, {"web": ["192.0.2.10"]})
        await harness.set_dns_records(net_b, {"cache": ["192.0.2.20"]})
        await harness.attach_dns(req, [net_a])
        assert _is_nxdomain(await asyncio.to_thread(dns_query, req.netns_path, "cache"))
        await harness.attach_dns(req, [net_a, net_b])
        assert _answers(await asyncio.to_thread(dns_query, req.netns_path, "cache")) == ["192.0.2.20"]
        await harness.set_dns_records(net_b, {"cache": ["192.0.2.21"]})  # seen at the next query
        assert _answers(await asyncio.to_thread(dns_query, req.netns_path, "cache")) == ["192.0.2.21"]
        await harness.set_dns_records(net_b, {})
        assert _is_nxdomain(await asyncio.to_thread(dns_query, req.netns_path, "cache"))
        assert _answers(await asyncio.to_thread(dns_query, req.netns_path, "web")) == ["192.0.2.10"]

    async def test_embedded_dns_forwards_other_names_upstream(self, harness: NetworkHarness) -> None:
        """A name no attached network has goes to the upstreams (here a resolver on the host's
        loopback, reached from the daemon's namespace)."""
        requires(harness.driver, EMBEDDED_DNS)
        network = await harness.create_network()
        req, _res = await harness.join(network)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _FakeUpstream("192.0.2.123"),
                                                           local_addr=("127.0.0.1", 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            await harness.attach_dns(req, [network], upstreams=[("127.0.0.1", port)])
            reply = await asyncio.to_thread(dns_query, req.netns_path, "example.test")
            assert _answers(reply) == ["192.0.2.123"]
        finally:
            transport.close()

    async def test_embedded_dns_detach_stops_the_resolver(self, harness: NetworkHarness) -> None:
        requires(harness.driver, EMBEDDED_DNS)
        network = await harness.create_network()
        req, _res = await harness.join(network)
        await harness.set_dns_records(network, {"web": ["192.0.2.10"]})
        sandbox = await harness.attach_dns(req, [network])
        assert _answers(await asyncio.to_thread(dns_query, req.netns_path, "web")) == ["192.0.2.10"]
        await harness.dns_driver.dns_detach(sandbox)
        with pytest.raises(OSError):  # nothing listens any more: refused or timed out
            await asyncio.to_thread(dns_query, req.netns_path, "web", timeout=self.blocked_timeout)
        await harness.dns_driver.dns_detach(sandbox)  # none runs: nothing to do
        harness.remove_netns(req.netns_path)
        await harness.dns_driver.dns_detach(sandbox)  # and the namespace is gone


# ---------------------------------------------------------------------------------- IPAM
class IpamContract(DriverContract):
    """Cases every IPAM driver meets. Subclasses supply ``driver`` and, for the persistence
    case (capability ``persistent``), ``driver_factory``: an async callable returning a *new*
    set-up instance on the same data directory. Drivers should draw automatic pools from
    ``test_subnet_base`` in tests."""

    kind: ClassVar[str] = "ipam"
    test_subnet_base: ClassVar[str] = TEST_SUBNET_BASE

    @pytest.fixture
    def driver_factory(self) -> Callable[[], Any]:
        raise NotImplementedError("a conformance subclass must supply `driver_factory`")

    @pytest_asyncio.fixture
    async def pools(self, driver: IpamDriver) -> AsyncIterator[list[str]]:
        """Pool ids to release at teardown (ignoring those already released)."""
        ids: list[str] = []
        yield ids
        for pool_id in ids:
            with contextlib.suppress(NotFound):
                await driver.release_pool(pool_id)

    def subnet(self, prefixlen: int = 24, avoid: tuple[str, ...] = ()) -> str:
        return free_test_subnet(self.test_subnet_base, prefixlen, avoid)

    async def test_explicit_pool(self, driver: IpamDriver, pools: list[str]) -> None:
        subnet = self.subnet()
        pool = await driver.request_pool(subnet=subnet)
        pools.append(pool.pool_id)
        assert ipaddress.ip_network(pool.subnet) == ipaddress.ip_network(subnet)
        if pool.gateway:
            assert ipaddress.ip_address(pool.gateway.split("/")[0]) in ipaddress.ip_network(subnet)

    async def test_explicit_gateway_and_range(self, driver: IpamDriver, pools: list[str]) -> None:
        subnet = ipaddress.ip_network(self.subnet())
        rng = list(subnet.subnets(new_prefix=26))[2]
        gateway = str(subnet.network_address + 1)
        pool = await driver.request_pool(subnet=str(subnet), ip_range=str(rng), gateway=gateway)
        pools.append(pool.pool_id)
        assert pool.gateway.split("/")[0] == gateway
        for _ in range(3):
            address = await driver.request_address(pool.pool_id)
            assert ipaddress.ip_address(address.split("/")[0]) in rng

    async def test_automatic_pools_do_not_overlap(self, driver: IpamDriver, pools: list[str]) -> None:
        got = []
        for _ in range(3):
            pool = await driver.request_pool()
            pools.append(pool.pool_id)
            got.append(ipaddress.ip_network(pool.subnet))
        host = host_networks()
        for i, net in enumerate(got):
            assert not any(net.overlaps(other) for other in got[i + 1:]), got
            assert not any(net.version == h.version and net.overlaps(h) for h in host), (net, host)

    async def test_overlapping_explicit_pool_conflicts(self, driver: IpamDriver, pools: list[str]) -> None:
        subnet = self.subnet(prefixlen=24)
        pool = await driver.request_pool(subnet=subnet)
        pools.append(pool.pool_id)
        inner = str(next(ipaddress.ip_network(subnet).subnets(new_prefix=25)))
        with pytest.raises(Conflict):
            pools.append((await driver.request_pool(subnet=inner)).pool_id)

    async def test_range_without_subnet_is_invalid(self, driver: IpamDriver) -> None:
        with pytest.raises(InvalidArgument):
            await driver.request_pool(ip_range=self.subnet(prefixlen=26))

    async def test_addresses_are_unique_and_inside(self, driver: IpamDriver, pools: list[str]) -> None:
        subnet = ipaddress.ip_network(self.subnet())
        pool = await driver.request_pool(subnet=str(subnet))
        pools.append(pool.pool_id)
        got = [await driver.request_address(pool.pool_id) for _ in range(10)]
        hosts = [ipaddress.ip_address(a.split("/")[0]) for a in got]
        assert all("/" in a and a.endswith(f"/{subnet.prefixlen}") for a in got), got
        assert len(set(hosts)) == len(hosts)
        assert all(h in subnet and h not in (subnet.network_address, subnet.broadcast_address) for h in hosts)
        if pool.gateway:
            assert ipaddress.ip_address(pool.gateway.split("/")[0]) not in hosts

    async def test_explicit_address_once(self, driver: IpamDriver, pools: list[str]) -> None:
        subnet = ipaddress.ip_network(self.subnet())
        pool = await driver.request_pool(subnet=str(subnet))
        pools.append(pool.pool_id)
        want = subnet.network_address + 77
        got = await driver.request_address(pool.pool_id, str(want))
        assert ipaddress.ip_address(got.split("/")[0]) == want
        with pytest.raises(Conflict):
            await driver.request_address(pool.pool_id, str(want))
        assert ipaddress.ip_address((await driver.request_address(pool.pool_id)).split("/")[0]) != want

    async def test_release_address_exactly_once(self, driver: IpamDriver, pools: list[str]) -> None:
        pool = await driver.request_pool(subnet=self.subnet())
        pools.append(pool.pool_id)
        address = await driver.request_address(pool.pool_id)
        await driver.release_address(pool.pool_id, address)
        with pytest.raises(NotFound):
            await driver.release_address(pool.pool_id, address)
        again = await driver.request_address(pool.pool_id, address.split("/")[0])
        assert again == address

    async def test_release_pool_exactly_once(self, driver: IpamDriver) -> None:
        pool = await driver.request_pool(subnet=self.subnet())
        await driver.release_pool(pool.pool_id)
        with pytest.raises(NotFound):
            await driver.release_pool(pool.pool_id)
        with pytest.raises(NotFound):
            await driver.request_address(pool.pool_id)
        second = await driver.request_pool(subnet=pool.subnet)  # the subnet is free again
        await driver.release_pool(second.pool_id)

    async def test_exhausted_pool_refuses(self, driver: IpamDriver, pools: list[str]) -> None:
        pool = await driver.request_pool(subnet=self.subnet(prefixlen=29))
        pools.append(pool.pool_id)
        free = 6 - (1 if pool.gateway else 0)
        got = {await driver.request_address(pool.pool_id) for _ in range(free)}
        assert len(got) == free
        with pytest.raises(DockyardError):
            await driver.request_address(pool.pool_id)

    async def test_allocations_survive_a_new_instance(self, driver: IpamDriver, pools: list[str],
                                                      driver_factory: Callable[[], Any]) -> None:
        requires(driver, "persistent")
        pool = await driver.request_pool(subnet=self.subnet())
        pools.append(pool.pool_id)
        address = await driver.request_address(pool.pool_id)
        other: Driver = await driver_factory()
        try:
            assert isinstance(other, IpamDriver)
            with pytest.raises(Conflict):
                await other.request_address(pool.pool_id, address.split("/")[0])
            with pytest.raises(Conflict):
                await other.request_pool(subnet=pool.subnet)
            await other.release_address(pool.pool_id, address)
            with pytest.raises(NotFound):
                await driver.release_address(pool.pool_id, address)
        finally:
            await other.close()

