"""The network service on a fresh kernel with the real bridge and IPAM drivers. Network
namespaces made by the test stand in for containers; every test checks that nothing named after
its daemon owner (links, namespaces, nft tables) is left behind.

Needs root (netlink, netns, nftables). Test subnets are a random free /20 of 10.213.0.0/17;
DNS queries go to 127.0.0.11 inside the test's namespaces, with no upstream resolvers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
from pathlib import Path

import pytest

pytest.importorskip("dockyard_network_bridge")
pytest.importorskip("dockyard_network_ipam")
pytest.importorskip("dnslib")
if os.geteuid() != 0:
    pytest.skip("the network service tests need root", allow_module_level=True)

from dnslib import QTYPE, RCODE, DNSRecord  # noqa: E402

from dockyard.config import Config  # noqa: E402
from dockyard.errors import Conflict, DockyardError, Forbidden, InvalidArgument, NotFound  # noqa: E402
from dockyard.kernel import Kernel  # noqa: E402
from dockyard.model import Container, ContainerConfig, HostConfig, IpamPool, Network, new_id  # noqa: E402
from dockyard.services.networks import JOINING, Endpoint, NetworkCreate, NotConnected  # noqa: E402
from dockyard.specs.network import PortMapping  # noqa: E402
from dockyard.times import parse_until  # noqa: E402
from dockyard_plugin_sdk.conformance.network import free_test_subnet, leftovers, socket_in_netns  # noqa: E402


# ------------------------------------------------------------------------------ fixtures
class World:
    """Roots, kernel(s) and stand-in containers of one test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pool = free_test_subnet("10.213.0.0/17", prefixlen=20)
        self.kernel: Kernel | None = None
        self.netns: list[str] = []
        self.owner = self.config().owner

    def config(self) -> Config:
        return Config(values={"data-root": str(self.tmp / "data"), "exec-root": str(self.tmp / "run"),
                              "default-address-pools": f"{self.pool}:24"})

    async def boot(self) -> Kernel:
        self.kernel = Kernel.build(self.config(), autoload=False)
        self.kernel.open_store()
        await self.kernel.networks.start()
        return self.kernel

    async def halt(self) -> None:
        if self.kernel is not None:
            await self.kernel.stop()
            self.kernel = None

    @property
    def svc(self):  # noqa: ANN201
        assert self.kernel is not None
        return self.kernel.networks

    def container(self, name: str) -> tuple[Container, str]:
        """A container record (not stored) and a fresh namespace standing in for it."""
        from pyroute2 import netns

        ns = f"{self.owner}-{name}"[:40]
        netns.create(ns)
        self.netns.append(ns)
        return (Container(id=new_id(), name=name, image_id="sha256:" + "0" * 64,
                          config=ContainerConfig(image="busybox"), host_config=HostConfig()),
                f"/run/netns/{ns}")

    def remove_netns(self, path: str) -> None:
        from pyroute2 import netns

        name = os.path.basename(path)
        netns.remove(name)
        self.netns.remove(name)


@pytest.fixture
async def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    if w.kernel is None:
        await w.boot()
    svc = w.svc
    for net in svc.list():
        for ep in svc.endpoints(net):
            await svc._teardown(ep, net)
        if not net.builtin:
            await svc.remove(net.id)
    await w.halt()  # takes down the built-in bridge (no endpoint uses it)
    from pyroute2 import netns

    for ns in list(w.netns):
        netns.remove(ns)
    assert leftovers(w.owner) == []


def dns_query(netns_path: str, name: str, qtype: str = "A") -> DNSRecord:
    """Ask 127.0.0.11 inside ``netns_path`` (blocking; run it in a thread)."""
    sock = socket_in_netns(netns_path, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(3)
        sock.sendto(DNSRecord.question(name, qtype).pack(), ("127.0.0.11", 53))
        return DNSRecord.parse(sock.recv(4096))


async def resolve(netns_path: str, name: str) -> list[str] | None:
    reply = await asyncio.to_thread(dns_query, netns_path, name)
    if reply.header.rcode == RCODE.NXDOMAIN:
        return None
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def bridge_links(owner: str) -> list[str]:
    return [x.split()[1] for x in leftovers(owner) if x.startswith(f"link {owner}-")]


# ------------------------------------------------------------------------------ networks
async def test_start_creates_the_builtin_networks(world: World) -> None:
    await world.boot()
    nets = {n.name: n for n in world.svc.list()}
    assert set(nets) == {"bridge", "host", "none"}
    assert nets["none"].driver == "null" and nets["host"].driver == "host"
    bridge = nets["bridge"]
    assert bridge.builtin and bridge.options == {"com.docker.network.bridge.default_bridge": "true"}
    # its pool comes from IPAM (here the configured test pool) and its Linux bridge is named
    # after the daemon's owner
    assert ipaddress.ip_network(bridge.ipam_pools[0].subnet).subnet_of(ipaddress.ip_network(world.pool))
    assert bridge.extra["bridge"].startswith(world.owner)
    assert bridge_links(world.owner) == [bridge.extra["bridge"]]
    with pytest.raises(Forbidden):
        await world.svc.remove("bridge")
    # a stopped daemon leaves no bridge no endpoint needs; a second start brings it back and
    # does not duplicate the networks
    await world.halt()
    assert leftovers(world.owner) == []
    await world.boot()
    assert bridge_links(world.owner) == [bridge.extra["bridge"]]
    assert sorted(n.name for n in world.svc.list()) == ["bridge", "host", "none"]
    assert world.svc.get("bridge").id == bridge.id


async def test_create_inspect_remove_and_events(world: World) -> None:
    await world.boot()
    k = world.kernel
    net = await world.svc.create(NetworkCreate(name="app", labels={"a": "1"}))
    assert len(net.id) == 64 and net.driver == "bridge" and net.labels == {"a": "1"}
    assert world.svc.get("app").id == net.id
    assert world.svc.get(net.id).name == "app"
    assert world.svc.get(net.id[:10]).name == "app"
    assert net.extra["bridge"] in bridge_links(world.owner)
    with pytest.raises(Conflict, match="network with name app already exists"):
        await world.svc.create(NetworkCreate(name="app"))
    # dockerd accepts any name that is not blank (libnetwork's IsValidName)
    for bad, exc in (("bridge", Forbidden), ("none", Forbidden), ("  ", InvalidArgument), ("", InvalidArgument)):
        with pytest.raises(exc):
            await world.svc.create(NetworkCreate(name=bad))
    with pytest.raises(InvalidArgument):  # the bridge driver refuses unknown options
        await world.svc.create(NetworkCreate(name="badopt", options={"com.example.nope": "1"}))
    with pytest.raises(NotFound):
        world.svc.get("badopt")
    with pytest.raises(Forbidden):  # one host network only
        await world.svc.create(NetworkCreate(name="host2", driver="host"))
    await world.svc.remove("app")
    with pytest.raises(NotFound, match="network app not found"):
        world.svc.get("app")
    assert net.extra["bridge"] not in bridge_links(world.owner)
    evs = [(e.action, e.attributes.get("name"), e.attributes.get("type")) for e in k.events.past()
           if e.type == "network" and e.actor_id == net.id]
    assert evs == [("create", "app", "bridge"), ("destroy", "app", "bridge")]


async def test_explicit_ipam_and_release(world: World) -> None:
    await world.boot()
    subnet = ipaddress.ip_network(free_test_subnet("10.213.0.0/17", avoid=(world.pool,)))
    rng = list(subnet.subnets(new_prefix=26))[1]
    gw = str(subnet.network_address + 1)
    req = NetworkCreate(name="fixed", internal=True, options={"com.docker.network.driver.mtu": "1400"},
                        ipam_pools=[IpamPool(subnet=str(subnet), gateway=gw, ip_range=str(rng))])
    net = await world.svc.create(req)
    assert net.internal and net.ipam_pools[0].subnet == str(subnet) and net.ipam_pools[0].gateway == gw
    with pytest.raises(Conflict):  # overlapping subnet: IPAM refuses, nothing is left of the attempt
        await world.svc.create(NetworkCreate(name="overlap", ipam_pools=[IpamPool(subnet=str(subnet))]))
    with pytest.raises(NotFound):
        world.svc.get("overlap")
    c, ns = world.container("c1")
    ep = await world.svc.connect(c, "fixed", ns)
    assert ipaddress.ip_address(ep.ipv4_address) in rng and ep.gateway == gw
    fixed = str(rng.network_address + 7)
    c2, ns2 = world.container("c2")
    ep2 = await world.svc.connect(c2, "fixed", ns2, ipv4=fixed)
    assert ep2.ipv4_address == fixed and ep2.ip_prefix_len == subnet.prefixlen
    c3, ns3 = world.container("c3")
    with pytest.raises(Conflict):  # the address is taken
        await world.svc.connect(c3, "fixed", ns3, ipv4=fixed)
    assert [e.container_id for e in world.svc.endpoints("fixed")] == [c.id, c2.id]
    await world.svc.disconnect(c, "fixed")
    await world.svc.disconnect(c2, "fixed")
    await world.svc.remove("fixed")
    # the pool and its addresses went back to IPAM: the same subnet and address work again
    again = await world.svc.create(NetworkCreate(name="fixed2", ipam_pools=[IpamPool(subnet=str(subnet))]))
    ep3 = await world.svc.connect(c3, again.id, ns3, ipv4=fixed)
    assert ep3.ipv4_address == fixed


async def test_connect_dns_disconnect(world: World) -> None:
    await world.boot()
    svc = world.svc
    app = await svc.create(NetworkCreate(name="app"))
    other = await svc.create(NetworkCreate(name="other"))
    web, ns_web = world.container("web")
    db, ns_db = world.container("db")
    lone, ns_lone = world.container("lone")
    ep_web = await svc.connect(web, "app", ns_web, dns_servers=[])
    ep_db = await svc.connect(db, "app", ns_db, aliases=["database"], dns_servers=[])
    await svc.connect(lone, "other", ns_lone, dns_servers=[])
    assert ep_web.ipv4_address != ep_db.ipv4_address
    assert db.id[:12] in ep_db.aliases and "database" in ep_db.aliases
    assert svc.dns_attached(web.id) and svc.uses_embedded_dns(app) and not svc.uses_embedded_dns("bridge")
    # names, aliases and short IDs of peers on the container's networks resolve ...
    assert await resolve(ns_web, "db") == [ep_db.ipv4_address]
    assert await resolve(ns_web, "DATABASE.") == [ep_db.ipv4_address]
    assert await resolve(ns_web, db.id[:12]) == [ep_db.ipv4_address]
    assert await resolve(ns_db, "web") == [ep_web.ipv4_address]
    # ... peers on other networks do not
    assert await resolve(ns_lone, "web") is None
    assert await resolve(ns_web, "lone") is None
    # a container on two networks resolves peers of both
    await svc.connect(lone, "app", ns_lone)
    assert await resolve(ns_lone, "web") == [ep_web.ipv4_address]
    with pytest.raises(Forbidden):  # already connected
        await svc.connect(lone, "app", ns_lone)
    with pytest.raises(Forbidden, match="has active endpoints"):
        await svc.remove("app")
    web.name = "web2"  # renamed by the container service, which tells the network service
    await svc.container_renamed(web)
    assert await resolve(ns_lone, "web2") == [ep_web.ipv4_address]
    assert await resolve(ns_lone, "web") is None
    await svc.disconnect(lone, "app")
    assert await resolve(ns_lone, "web2") is None
    await svc.disconnect(db, "app")
    assert await resolve(ns_web, "db") is None
    with pytest.raises(NotConnected):
        await svc.disconnect(db, "app")
    assert isinstance(NotConnected("x"), DockyardError)
    await svc.disconnect(db, "app", force=True)  # no error
    await svc.disconnect(web, "app")
    assert not svc.dns_attached(web.id)
    evs = [(e.action, e.attributes["container"]) for e in world.kernel.events.past()
           if e.type == "network" and e.actor_id == app.id and e.action in ("connect", "disconnect")]
    assert evs == [("connect", web.id), ("connect", db.id), ("connect", lone.id), ("disconnect", lone.id),
                   ("disconnect", db.id), ("disconnect", web.id)]
    assert svc.endpoints(app) == [] and [e.network_id for e in svc.container_endpoints(lone.id)] == [other.id]


async def test_default_bridge_refuses_aliases_and_has_no_dns(world: World) -> None:
    await world.boot()
    c, ns = world.container("plain")
    with pytest.raises(InvalidArgument, match="network-scoped alias"):
        await world.svc.connect(c, "bridge", ns, aliases=["x"])
    ep = await world.svc.connect(c, "bridge", ns, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
    assert ep.aliases == [] and not world.svc.dns_attached(c.id)
    bound = world.svc.ports_of(c.id)
    assert len(bound) == 1 and bound[0].host_port > 0
    await world.svc.disconnect(c, "bridge")
    assert world.svc.ports_of(c.id) == []


async def test_restart_restores_endpoints_dns_and_reaps_dead_ones(world: World) -> None:
    k1 = await world.boot()
    svc = k1.networks
    app = await svc.create(NetworkCreate(name="app"))
    a, ns_a = world.container("a")
    b, ns_b = world.container("b")
    gone, ns_gone = world.container("gone")
    ep_a = await svc.connect(a, "app", ns_a, dns_servers=[])
    await svc.connect(b, "app", ns_b, dns_servers=[])
    ep_gone = await svc.connect(gone, "app", ns_gone, dns_servers=[])
    await world.halt()  # the daemon goes away; its resolvers with it
    bridge_name = app.extra["bridge"]
    from dockyard_network_bridge import netlink

    await asyncio.to_thread(netlink.delete_link, bridge_name)  # lost while the daemon was down
    world.remove_netns(ns_gone)  # this container died meanwhile
    k2 = await world.boot()
    svc = k2.networks
    assert bridge_name in bridge_links(world.owner)  # restored
    assert [e.container_id for e in svc.endpoints("app")] == [a.id, b.id]  # the dead one was reaped
    assert await resolve(ns_b, "a") == [ep_a.ipv4_address]  # DNS answers again
    assert await resolve(ns_b, "gone") is None
    # the reaped endpoint's address went back to IPAM (it can be asked for again)
    c, ns_c = world.container("c")
    ep_c = await svc.connect(c, "app", ns_c, ipv4=ep_gone.ipv4_address)
    assert ep_c.ipv4_address == ep_gone.ipv4_address


async def test_start_recovers_half_done_steps(world: World) -> None:
    k1 = await world.boot()
    svc = k1.networks
    app = await svc.create(NetworkCreate(name="app"))
    ipam = await k1.driver_ready("ipam", "default")
    pool_id = app.extra["pool_ids"][0]
    # an endpoint whose address was allocated but whose join never happened (killed daemon)
    address = await ipam.request_address(pool_id)
    c, ns = world.container("half")
    with k1.store.transaction() as tx:
        tx.put(Endpoint(id=new_id(), network_id=app.id, container_id=c.id, container_name="half",
                        netns_path=ns, ipv4_address=address, pool_id=pool_id, state=JOINING))
    # a network whose creation was interrupted after its pool was reserved
    half = Network(id=new_id(), name="halfnet")
    pool = await ipam.request_pool(subnet=free_test_subnet("10.213.0.0/17", avoid=(world.pool,)))
    half.ipam_pools = [IpamPool(subnet=pool.subnet, gateway=pool.gateway)]
    half.extra = {"state": "creating", "pool_ids": [pool.pool_id]}
    with k1.store.transaction() as tx:
        tx.put(half)
    with pytest.raises(NotFound):
        svc.get("halfnet")  # not visible while being created
    await world.halt()
    k2 = await world.boot()
    svc = k2.networks
    assert svc.endpoints("app") == []
    assert k2.store.by_name(Network, "halfnet") is None
    ipam = await k2.driver_ready("ipam", "default")
    # both were released exactly once: releasing again is refused
    with pytest.raises(NotFound):
        await ipam.release_address(pool_id, address.split("/")[0])
    with pytest.raises(NotFound):
        await ipam.release_pool(pool.pool_id)


async def test_prune(world: World) -> None:
    await world.boot()
    svc = world.svc
    await svc.create(NetworkCreate(name="keep", labels={"keep": "1"}))
    await svc.create(NetworkCreate(name="p1", labels={"team": "a"}))
    await svc.create(NetworkCreate(name="p2"))
    used = await svc.create(NetworkCreate(name="used"))
    c, ns = world.container("u")
    await svc.connect(c, used.id, ns, dns_servers=[])
    assert await svc.prune(until="1h") == []  # all are younger than an hour
    assert await svc.prune(labels=["team=a"]) == ["p1"]
    assert sorted(await svc.prune(not_labels=["keep"])) == ["p2"]
    assert sorted(n.name for n in svc.list()) == ["bridge", "host", "keep", "none", "used"]
    assert [e.attributes for e in world.kernel.events.past() if e.action == "prune"] == [{"reclaimed": "0"}] * 3


def test_parse_until() -> None:
    assert parse_until("1700000000") == 1700000000
    assert parse_until("1h30m", now=10_000) == 10_000 - 5400
    assert parse_until("2026-01-01T00:00:00Z") == 1767225600
    with pytest.raises(InvalidArgument):
        parse_until("yesterday")


async def test_a_failed_resolver_undoes_the_connect(world: World) -> None:
    """Something already holds 127.0.0.11:53 in the container's namespace: connect fails and
    leaves no endpoint, veth or address behind."""
    await world.boot()
    app = await world.svc.create(NetworkCreate(name="app"))
    c, ns = world.container("squat")

    def lo_up() -> None:
        from pyroute2 import IPRoute

        with IPRoute(netns=ns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    await asyncio.to_thread(lo_up)
    squatter = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
    with squatter:
        squatter.bind(("127.0.0.11", 53))
        with pytest.raises(OSError):
            await world.svc.connect(c, "app", ns, dns_servers=[])
    assert world.svc.endpoints(app) == [] and not world.svc.dns_attached(c.id)
    assert [x for x in leftovers(world.owner) if x.startswith(f"link {world.owner}v")] == []
    ep = await world.svc.connect(c, "app", ns, dns_servers=[])  # works once the port is free
    assert await resolve(ns, "squat") == [ep.ipv4_address]


async def test_cni_network_through_the_service(world: World) -> None:
    """A foreign implementation behind the same API: the CNI driver (host-local allocates the
    addresses inside the pool the service reserved through IPAM)."""
    pytest.importorskip("dockyard_network_cni")
    await world.boot()
    net = await world.svc.create(NetworkCreate(name="cninet", driver="cni"))
    assert net.extra["bridge"].startswith(world.owner + "c")
    subnet = ipaddress.ip_network(net.ipam_pools[0].subnet)
    assert subnet.subnet_of(ipaddress.ip_network(world.pool))
    a, ns_a = world.container("ca")
    b, ns_b = world.container("cb")
    with pytest.raises(InvalidArgument):  # the driver allocates: no fixed address
        await world.svc.connect(a, "cninet", ns_a, ipv4=str(subnet.network_address + 9))
    ep_a = await world.svc.connect(a, "cninet", ns_a)
    ep_b = await world.svc.connect(b, "cninet", ns_b)
    for ep in (ep_a, ep_b):
        assert ipaddress.ip_address(ep.ipv4_address) in subnet and ep.gateway == net.ipam_pools[0].gateway
    assert ep_a.ipv4_address != ep_b.ipv4_address and not world.svc.dns_attached(a.id)
    with pytest.raises(Forbidden):
        await world.svc.remove("cninet")
    await world.svc.disconnect(a, "cninet")
    await world.svc.disconnect(b, "cninet")
    await world.svc.remove("cninet")
    assert [x for x in leftovers(world.owner) if x.startswith(f"link {world.owner}c")] == []


async def test_ipv6_and_concurrent_connects(world: World) -> None:
    """An explicit IPv6 subnet next to the automatic IPv4 pool; concurrent connects each get
    their own addresses, and disconnects give every one back exactly once."""
    await world.boot()
    v6 = f"fd00:213:{secrets.randbelow(0xffff):x}::/64"
    net = await world.svc.create(NetworkCreate(name="dual", enable_ipv6=True,
                                               ipam_pools=[IpamPool(subnet=v6)]))
    assert [ipaddress.ip_network(p.subnet).version for p in net.ipam_pools] == [4, 6]
    boxes = [world.container(f"d{i}") for i in range(5)]
    eps = await asyncio.gather(*(world.svc.connect(c, "dual", ns, dns_servers=[]) for c, ns in boxes))
    assert len({e.ipv4_address for e in eps}) == 5 and len({e.ipv6_address for e in eps}) == 5
    assert all(ipaddress.ip_address(e.ipv6_address) in ipaddress.ip_network(v6) for e in eps)
    await asyncio.gather(*(world.svc.disconnect(c, "dual") for c, _ns in boxes))
    ipam = await world.kernel.driver_ready("ipam", "default")
    for pool_id, e in zip(net.extra["pool_ids"], (eps[0].ipv4_address, eps[0].ipv6_address), strict=True):
        with pytest.raises(NotFound):  # already released by the disconnect
            await ipam.release_address(pool_id, e)
