"""What only the bridge driver does: names, docker's bridge options, MTU, ICC, restore and
restart reconciliation, port allocation, UDP, ownership of nft rules."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import socket
import subprocess
from importlib.metadata import entry_points

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import Conflict, Forbidden, InvalidArgument
from dockyard.model import IpamPool
from dockyard.specs.network import PortMapping
from dockyard_network_bridge import names, nft
from dockyard_network_bridge.driver import BridgeDriver
from dockyard_network_bridge.simple import HostDriver, NullDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import NetworkHarness, leftovers, random_owner, socket_in_netns
from dockyard_plugin_sdk.testing import async_wait_for


def off_loop(fn, *args):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(fn, *args).result()


def link_info(name, netns_path=None):
    def get():
        kw = {"netns": netns_path, "flags": 0} if netns_path else {}
        with IPRoute(**kw) as ipr:
            idx = ipr.link_lookup(ifname=name)
            if not idx:
                return None
            try:
                (msg,) = ipr.link("get", index=idx[0])
            except NetlinkError as exc:  # deleted between the lookup and the get
                if exc.code == errno.ENODEV:
                    return None
                raise
            return {"index": idx[0], "mtu": msg.get("mtu"), "master": msg.get("master"),
                    "mac": msg.get("address"), "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")}
    return off_loop(get)


def host_links():
    with IPRoute() as ipr:
        return sorted(m.get("ifname") for m in ipr.link("dump"))


def delete_link(name):
    def rm():
        with IPRoute() as ipr:
            ipr.link("del", ifname=name)
    off_loop(rm)


def tcp_roundtrip(client, server, target, timeout=3.0):
    client.settimeout(timeout)
    server.settimeout(timeout)
    client.connect(target)
    conn, peer = server.accept()
    with conn:
        client.sendall(b"hello")
        conn.sendall(conn.recv(16).upper())
        return client.recv(16), peer


async def reach_published(req, port, host="127.0.0.1", container_port=80, timeout=3.0):
    server = socket_in_netns(req.netns_path)
    with server, socket.socket() as client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", container_port))
        server.listen(1)
        reply, _ = await asyncio.to_thread(tcp_roundtrip, client, server, (host, port), timeout)
        return reply


async def reach_peer(req_from, req_to, address, port=7000, timeout=3.0):
    server = socket_in_netns(req_to.netns_path)
    client = socket_in_netns(req_from.netns_path)
    with server, client:
        server.bind(("0.0.0.0", port))
        server.listen(1)
        return await asyncio.to_thread(tcp_roundtrip, client, server, (address, port), timeout)


def nft_rules(table):
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, check=True)
    tables = [i["table"] for i in json.loads(out.stdout)["nftables"] if "table" in i]
    if not any(t["name"] == table for t in tables):
        return None
    out = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True,
                         check=True)
    return [i["rule"] for i in json.loads(out.stdout)["nftables"] if "rule" in i]


# ---------------------------------------------------------------------------------- naming
def test_entry_points_name_the_three_drivers():
    eps = {e.name: e.load() for e in entry_points(group="dockyard.drivers.network")
           if e.value.startswith("dockyard_network_bridge")}
    assert eps == {"bridge": BridgeDriver, "host": HostDriver, "null": NullDriver}


def test_names_carry_the_owner_and_fit():
    assert names.bridge_name("dy1a2b3c", "f" * 64) == "dy1a2b3c-ffffff"
    assert names.veth_name("dy1a2b3c", "e" * 64) == "dy1a2b3cveeeeee"
    long = names.bridge_name("a-very-long-owner-token", "0" * 64)
    assert len(long) <= 15 and names.is_bridge_name("a-very-long-owner-token", long)
    assert names.table_name("dy1a2b3c") == "dockyard-dy1a2b3c"


def test_ruleset_without_networks_only_removes_the_table():
    cmds = nft.Ruleset("dockyard-dyx").commands()
    assert cmds == [{"add": {"table": {"family": "ip", "name": "dockyard-dyx"}}},
                    {"delete": {"table": {"family": "ip", "name": "dockyard-dyx"}}}]


# ---------------------------------------------------------------------------------- options
@pytest.mark.parametrize("options", [
    {"com.docker.network.bridge.enable_icc": "maybe"},
    {"com.docker.network.driver.mtu": "12"},
    {"com.docker.network.driver.mtu": "big"},
    {"com.docker.network.bridge.name": "much-too-long-bridge-name"},
    {"com.docker.network.bridge.host_binding_ipv4": "::1"},
])
async def test_bad_option_values_are_invalid(harness, options):
    with pytest.raises(InvalidArgument):
        await harness.driver.create_network(harness.make_network(options=options))


async def test_network_needs_a_pool(harness):
    network = harness.make_network()
    network.ipam_pools = []
    with pytest.raises(InvalidArgument):
        await harness.driver.create_network(network)


async def test_bridge_is_named_after_owner_and_network(harness):
    network = await harness.create_network()
    name = names.bridge_name(harness.owner, network.id)
    assert network.extra["bridge"] == name and harness.owner in name
    info = link_info(name)
    assert info and info["kind"] == "bridge"
    await harness.delete_network(network)
    assert link_info(name) is None


async def test_user_named_bridge_and_mtu(harness):
    bridge = f"{harness.owner}-u"
    network = await harness.create_network(options={
        "com.docker.network.bridge.name": bridge, "com.docker.network.driver.mtu": "1280"})
    req, res = await harness.join(network)
    assert link_info(bridge)["kind"] == "bridge"
    inside = link_info("eth0", req.netns_path)
    assert inside["mtu"] == 1280
    assert inside["mac"] == res.mac_address
    assert res.mac_address.startswith("02:42:")
    assert link_info(res.extra["veth"])["master"] == link_info(bridge)["index"]


async def test_icc_disabled_isolates_endpoints_but_not_the_gateway(harness):
    network = await harness.create_network(options={"com.docker.network.bridge.enable_icc": "false"})
    req1, res1 = await harness.join(network)
    req2, res2 = await harness.join(network)
    with pytest.raises(OSError):
        await reach_peer(req1, req2, harness.address_of(req2, res2), timeout=0.7)
    # the host (gateway) still reaches each endpoint
    server = socket_in_netns(req1.netns_path)
    with server, socket.socket() as client:
        server.bind(("0.0.0.0", 7001))
        server.listen(1)
        reply, _ = await asyncio.to_thread(tcp_roundtrip, client, server,
                                           (harness.address_of(req1, res1), 7001))
    assert reply == b"HELLO"


async def test_delete_with_endpoints_is_forbidden(harness):
    network = await harness.create_network()
    await harness.join(network)
    with pytest.raises(Forbidden):
        await harness.driver.delete_network(network)


async def test_duplicate_network_and_busy_interface_conflict(harness):
    network = await harness.create_network()
    with pytest.raises(Conflict):
        await harness.driver.create_network(network)
    netns = harness.create_netns()
    await harness.join(network, netns_path=netns)
    with pytest.raises(Conflict):  # eth0 already exists in that namespace
        await harness.join(network, netns_path=netns)


async def test_ipv6_address_and_route(harness):
    network = harness.make_network()
    network.ipam_pools.append(IpamPool(subnet="fd00:213:7::/64", gateway="fd00:213:7::1"))
    harness.networks.append(network)
    await harness.driver.create_network(network)
    req = harness.request(network, harness.create_netns())
    req.ipv6_address = "fd00:213:7::2/64"
    res = await harness.driver.join(req)
    harness.endpoints.append((req, res))

    def v6_state():
        with IPRoute(netns=req.netns_path, flags=0) as ipr:
            addrs = [a.get("address") for a in ipr.addr("dump", family=socket.AF_INET6)]
            routes = [(r["dst_len"], r.get("gateway")) for r in ipr.route("dump", family=socket.AF_INET6)]
            return addrs, routes
    addrs, routes = off_loop(v6_state)
    assert "fd00:213:7::2" in addrs
    assert (0, "fd00:213:7::1") in routes


# ---------------------------------------------------------------------------------- ports
async def test_explicit_ports_udp_and_conflicts(harness):
    network = await harness.create_network()
    free = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free.append(s.getsockname()[1])
    req, res = await harness.join(network, ports=[
        PortMapping(container_port=80, host_port=free[0], host_ip="127.0.0.1"),
        PortMapping(container_port=53, protocol="udp", host_port=free[1], host_ip="127.0.0.1"),
        PortMapping(container_port=81, host_ip="127.0.0.1"),
        PortMapping(container_port=82, host_ip="127.0.0.1"),
    ])
    assert [(p.container_port, p.protocol, p.host_port) for p in res.ports[:2]] == [
        (80, "tcp", free[0]), (53, "udp", free[1])]
    assert len({p.host_port for p in res.ports}) == 4
    assert await reach_published(req, free[0]) == b"HELLO"
    assert await reach_published(req, res.ports[3].host_port, container_port=82) == b"HELLO"
    # UDP
    server = socket_in_netns(req.netns_path, kind=socket.SOCK_DGRAM)
    with server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("0.0.0.0", 53))
        server.settimeout(3)
        client.settimeout(3)
        client.sendto(b"q", ("127.0.0.1", free[1]))
        data, peer = await asyncio.to_thread(server.recvfrom, 16)
        server.sendto(b"a", peer)
        assert data == b"q" and (await asyncio.to_thread(client.recvfrom, 16))[0] == b"a"
    # the same host port again is refused, on the same or another endpoint
    with pytest.raises(Conflict):
        await harness.join(network, ports=[PortMapping(container_port=80, host_port=free[0])])
    assert len(harness.driver._doc["endpoints"]) == 1  # the refused join left nothing behind


async def test_port_held_by_a_host_process_conflicts(harness):
    network = await harness.create_network()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(Conflict):
            await harness.join(network, ports=[PortMapping(container_port=80, host_ip="127.0.0.1",
                                                           host_port=busy.getsockname()[1])])


async def test_internal_network_publishes_nothing(harness):
    network = await harness.create_network(internal=True)
    _, res = await harness.join(network, ports=[PortMapping(container_port=80)])
    assert res.ports == [] and res.gateway == ""


async def test_host_binding_option_is_the_default_host_ip(harness):
    network = await harness.create_network(options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    req, res = await harness.join(network, ports=[PortMapping(container_port=80)])
    assert res.ports[0].host_ip == "127.0.0.1"
    assert await reach_published(req, res.ports[0].host_port) == b"HELLO"


async def test_rules_live_in_our_table_and_go_with_the_last_network(harness):
    table = names.table_name(harness.owner)
    net1 = await harness.create_network()
    net2 = await harness.create_network()
    req, res = await harness.join(net1, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
    rules = nft_rules(table)
    def dnats(rules):
        return [r for r in rules if any("dnat" in e for e in r["expr"])]
    assert {r["chain"] for r in dnats(rules)} == {"output"}  # 127.0.0.1: no prerouting rule
    await harness.leave(req, res)
    assert dnats(nft_rules(table)) == []
    await harness.delete_network(net1)
    assert nft_rules(table) is not None
    await harness.delete_network(net2)
    assert nft_rules(table) is None


async def test_two_daemons_keep_their_own_rules(harness, tmp_path):
    other_owner = random_owner()
    other = BridgeDriver(make_context(tmp_path / "other", owner=other_owner))
    await other.setup()
    try:
        mine = await harness.create_network()
        req, res = await harness.join(mine, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
        theirs = harness.make_network()
        await other.create_network(theirs)
        await other.delete_network(theirs)
        await other.close()
        assert nft_rules(names.table_name(other_owner)) is None
        assert await reach_published(req, res.ports[0].host_port) == b"HELLO"
    finally:
        await other.close()
    assert leftovers(other_owner) == []


# ---------------------------------------------------------------------------------- restarts
async def test_restore_recreates_a_missing_bridge_without_touching_veths(harness):
    network = await harness.create_network()
    req1, res1 = await harness.join(network)
    req2, res2 = await harness.join(network)
    veth_before = link_info(res1.extra["veth"])
    delete_link(network.extra["bridge"])
    with pytest.raises(OSError):
        await reach_peer(req1, req2, harness.address_of(req2, res2), timeout=0.5)
    await harness.driver.restore(network)
    bridge = link_info(network.extra["bridge"])
    veth_after = link_info(res1.extra["veth"])
    assert veth_after["index"] == veth_before["index"]  # the same veth, re-attached
    assert veth_after["master"] == bridge["index"]
    reply, _ = await reach_peer(req1, req2, harness.address_of(req2, res2), port=7002)
    assert reply == b"HELLO"


async def test_restart_rebuilds_rules_and_forgets_dead_endpoints(harness, tmp_path):
    driver = harness.driver
    network = await harness.create_network()
    req, res = await harness.join(network, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
    dead_req, dead_res = await harness.join(network, ports=[PortMapping(container_port=80, host_ip="127.0.0.1")])
    await driver.close()  # graceful stop: our rules go
    assert nft_rules(driver.table) is None
    harness.remove_netns(dead_req.netns_path)  # a container died while the daemon was down
    # the kernel destroys the namespace (and the veth pair) asynchronously
    await async_wait_for(lambda: link_info(dead_res.extra["veth"]) is None, 10, "the dead endpoint's veth to go")
    stray = names.veth_name(harness.owner, "f" * 64)

    def make_stray():
        with IPRoute() as ipr:
            ipr.link("add", ifname=stray, kind="veth", peer=f"{harness.owner}p")
    off_loop(make_stray)

    restarted = BridgeDriver(driver.context)
    await restarted.setup()
    harness.driver = restarted
    try:
        assert link_info(stray) is None  # a leftover veth of ours is removed
        assert link_info(f"{harness.owner}p") is None
        assert set(restarted._doc["endpoints"]) == {req.endpoint_id}
        assert await reach_published(req, res.ports[0].host_port) == b"HELLO"
        dead_port = dead_res.ports[0].host_port
        assert str(dead_port) not in json.dumps(nft_rules(driver.table))
        await restarted.leave(dead_req, dead_res)  # the service's late leave still succeeds
    finally:
        await harness.teardown()
        await restarted.close()


async def test_live_restore_keeps_rules_at_close(tmp_path):
    owner = random_owner()
    ctx = make_context(tmp_path, owner=owner)
    ctx = type(ctx)(data_dir=ctx.data_dir, run_dir=ctx.run_dir, owner=owner,
                    daemon_config={"live-restore": True})
    drv = BridgeDriver(ctx)
    await drv.setup()
    h = NetworkHarness(drv, "10.213.128.0/17")
    try:
        await h.create_network()
        await drv.close()
        assert nft_rules(drv.table) is not None
        await drv.setup()
    finally:
        assert await h.teardown() == []
        await drv.close()
    assert leftovers(owner) == []


# ---------------------------------------------------------------------------------- host / null
async def test_null_driver_gives_loopback_only(tmp_path):
    drv = NullDriver(make_context(tmp_path, owner=random_owner()))
    h = NetworkHarness(drv, "10.213.128.0/17")
    try:
        network = await h.create_network()
        req, res = await h.join(network)

        def links():
            with IPRoute(netns=req.netns_path, flags=0) as ipr:
                return [(m.get("ifname"), bool(m["flags"] & 1)) for m in ipr.link("dump")]
        assert off_loop(links) == [("lo", True)]
        with pytest.raises(InvalidArgument):
            await drv.join(h.request(network, req.netns_path, ports=[PortMapping(80)]))
    finally:
        assert await h.teardown() == []


async def test_host_driver_changes_nothing(tmp_path):
    drv = HostDriver(make_context(tmp_path, owner=random_owner()))
    before = off_loop(host_links)
    h = NetworkHarness(drv, "10.213.128.0/17")
    network = await h.create_network()
    res = await drv.join(h.request(network, "/proc/1/ns/net", ports=[PortMapping(80)]))
    assert res.ports == [] and res.ipv4_address == ""
    after = off_loop(host_links)
    assert before == after
    assert await h.teardown() == []


async def test_all_addresses_publishing_and_hairpin(harness):
    """Published on every host address: reachable at 127.0.0.1 and, from the container itself
    and from a neighbour, at the network's gateway address (a host address on the test bridge)."""
    network = await harness.create_network()
    req, res = await harness.join(network, ports=[PortMapping(container_port=80)])
    neighbour, _ = await harness.join(network)
    port = res.ports[0].host_port
    assert res.ports[0].host_ip == ""
    assert await reach_published(req, port) == b"HELLO"
    gateway = network.ipam_pools[0].gateway
    for source in (req, neighbour):
        server = socket_in_netns(req.netns_path)
        client = socket_in_netns(source.netns_path)
        with server, client:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("0.0.0.0", 80))
            server.listen(1)
            reply, peer = await asyncio.to_thread(tcp_roundtrip, client, server, (gateway, port))
        assert reply == b"HELLO"


async def test_concurrent_joins_and_leaves(harness):
    network = await harness.create_network()
    requests = [harness.request(network, harness.create_netns(), ports=[PortMapping(80, host_ip="127.0.0.1")])
                for _ in range(5)]
    results = await asyncio.gather(*[harness.driver.join(r) for r in requests])
    harness.endpoints += list(zip(requests, results, strict=True))
    assert len({r.ports[0].host_port for r in results}) == 5
    assert len({r.extra["veth"] for r in results}) == 5
    assert await reach_published(requests[3], results[3].ports[0].host_port) == b"HELLO"
    await asyncio.gather(*[harness.leave(q, r) for q, r in zip(requests, results, strict=True)])
    assert harness.driver._doc["endpoints"] == {}


async def test_daemon_config_mtu_is_the_default(tmp_path):
    owner = random_owner()
    ctx = make_context(tmp_path, owner=owner)
    ctx = type(ctx)(data_dir=ctx.data_dir, run_dir=ctx.run_dir, owner=owner, daemon_config={"mtu": 1300})
    drv = BridgeDriver(ctx)
    await drv.setup()
    h = NetworkHarness(drv, "10.213.128.0/17")
    try:
        network = await h.create_network()
        req, _ = await h.join(network)
        assert link_info("eth0", req.netns_path)["mtu"] == 1300
    finally:
        assert await h.teardown() == []
        await drv.close()
    assert leftovers(owner) == []


CHILD = r"""
import asyncio, json, sys
from pathlib import Path
from dockyard.model import IpamPool, Network
from dockyard.specs import DriverContext
from dockyard.specs.network import EndpointRequest, PortMapping
from dockyard_network_bridge.driver import BridgeDriver

async def main(data, owner, subnet, gateway, netns):
    drv = BridgeDriver(DriverContext(data_dir=Path(data), run_dir=Path(data), owner=owner))
    await drv.setup()
    net = Network(id="c" * 64, name="killed", ipam_pools=[IpamPool(subnet=subnet, gateway=gateway)])
    await drv.create_network(net)
    res = await drv.join(EndpointRequest(network=net, container_id="d" * 64, endpoint_id="e" * 64,
                                         netns_path=netns, ipv4_address=sys.argv[6], gateway=gateway,
                                         ports=[PortMapping(80, host_ip="127.0.0.1")]))
    print(json.dumps({"port": res.ports[0].host_port, "veth": res.extra["veth"]}), flush=True)
    await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:6]))
"""


async def test_kill_9_and_restart_keeps_ports_working(harness, tmp_path):
    """A daemon killed with SIGKILL after publishing a port: the port keeps working, and a new
    driver instance on the same data adopts the network and endpoint and can undo them."""
    import ipaddress
    import sys

    from dockyard.model import IpamPool, Network
    from dockyard.specs.network import EndpointRequest, EndpointResult

    subnet = ipaddress.ip_network(harness.make_network().ipam_pools[0].subnet)
    gateway, address = str(subnet.network_address + 1), f"{subnet.network_address + 2}/{subnet.prefixlen}"
    netns = harness.create_netns()
    data = harness.driver.context.data_dir
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(data), harness.owner, str(subnet), gateway, netns, address,
        stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 20)
    finally:
        child.kill()
        await child.wait()
    got = json.loads(line)
    network = Network(id="c" * 64, name="killed", ipam_pools=[IpamPool(subnet=str(subnet), gateway=gateway)])
    req = EndpointRequest(network=network, container_id="d" * 64, endpoint_id="e" * 64, netns_path=netns,
                          ipv4_address=address, gateway=gateway)
    assert await reach_published(req, got["port"]) == b"HELLO"  # the daemon is dead, the port works

    restarted = BridgeDriver(harness.driver.context)
    await restarted.setup()
    try:
        assert await reach_published(req, got["port"]) == b"HELLO"
        assert link_info(got["veth"]) is not None
        await restarted.leave(req, EndpointResult())
        await restarted.delete_network(network)
        assert link_info(got["veth"]) is None
        assert nft_rules(restarted.table) is None
    finally:
        await restarted.close()


async def test_a_port_range_is_a_few_rules(harness):
    """100 published ports of one container: every one reachable, one DNAT rule (a set and a map)."""
    network = await harness.create_network()
    wanted = [PortMapping(container_port=9000 + i, host_ip="127.0.0.1") for i in range(100)]
    req, res = await harness.join(network, ports=wanted)
    assert [p.container_port for p in res.ports] == [9000 + i for i in range(100)]
    rules = nft_rules(names.table_name(harness.owner))
    assert len([r for r in rules if any("dnat" in e for e in r["expr"])]) == 1  # output only (127.0.0.1)
    for i in (0, 57, 99):
        port = res.ports[i]
        assert await reach_published(req, port.host_port, container_port=port.container_port) == b"HELLO"


async def test_closing_leave_only_sets_the_veth_down(harness):
    """A closing leave does not wait for the veth's deletion: it is down at once (off the
    bridge's forwarding), and the kernel deletes it with the namespace."""
    network = await harness.create_network()
    req, res = await harness.join(network)
    veth = res.extra["veth"]
    req.sandbox_closing = True
    await harness.leave(req, res)
    assert link_info(veth) is not None  # still there: the namespace is alive
    assert not off_loop(lambda: _is_up(veth))
    assert harness.driver.status()[1] == ("Endpoints", "0")
    harness.remove_netns(req.netns_path)
    await async_wait_for(lambda: link_info(veth) is None, 10, f"{veth} to go with its namespace")


def _is_up(name):
    with IPRoute() as ipr:
        (msg,) = ipr.link("get", ifname=name)
        return bool(msg["flags"] & 1)


async def test_retired_veth_of_a_held_namespace_is_reaped(harness, monkeypatch):
    """Something still holds the namespace: the reaper deletes the veth after the grace, and
    close() deletes the ones still waiting at once."""
    from dockyard_network_bridge import driver as driver_module

    monkeypatch.setattr(driver_module, "RETIRE_GRACE", 0.2)
    network = await harness.create_network()
    (req1, res1), (req2, res2) = [await harness.join(network) for _ in range(2)]
    req1.sandbox_closing = True
    await harness.leave(req1, res1)  # its namespace stays (the harness holds it)
    await async_wait_for(lambda: link_info(res1.extra["veth"]) is None, 5, "the reaper to delete the retired veth")

    monkeypatch.setattr(driver_module, "RETIRE_GRACE", 3600)
    req2.sandbox_closing = True
    await harness.leave(req2, res2)
    assert link_info(res2.extra["veth"]) is not None
    await harness.driver.close()
    assert link_info(res2.extra["veth"]) is None
    await harness.driver.setup()  # the fixture closes it again
