"""The overlay across two netns hosts and a real etcd, through the real docker CLI."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from dockyard_plugin_sdk.testing import wait_for

NUD_PERMANENT, NTF_SELF = 0x80, 0x02  # a static neighbour; an FDB entry of the VXLAN device itself

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

OUR_LINK = re.compile(r"^dy[0-9a-f]{6}[oxe][0-9a-f]+$")  # the overlay's bridge, VXLAN device, veths
HTTPD = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def _overlay_links(cluster, host) -> list[str]:
    return [n for n in cluster.links(host) if OUR_LINK.match(n)]


def _no_overlay_links(cluster, host) -> None:
    wait_for(lambda: not _overlay_links(cluster, host), 3, f"no overlay link left on {host.name}")


async def test_containers_on_two_hosts_talk_by_name_and_alias(overlay_cluster):
    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.33.0.0/24", "ov1")
    # the network is cluster-wide: the other engine lists it, same ID, scope global
    net_id = h1.docker("network", "inspect", "-f", "{{.Id}}", "ov1").stdout.strip()
    wait_for(lambda: h2.docker("network", "inspect", "-f", "{{.Id}} {{.Scope}}", "ov1", check=False).stdout.strip()
             == f"{net_id} global", 5, "ov1 on h2")
    assert not _overlay_links(overlay_cluster, h1), "built before any container joined"
    h2.docker("run", "-d", "--name", "web", "--network", "ov1", "--network-alias", "site", "busybox",
              "sh", "-c", HTTPD)
    h1.docker("run", "-d", "--name", "client", "--network", "ov1", "busybox", "sleep", "600")
    page = h1.docker("exec", "client", "wget", "-qO-", "http://web/").stdout
    assert page.startswith("hello-from-"), page
    assert h1.docker("exec", "client", "wget", "-qO-", "http://site/").stdout == page
    # ping both ways; the MTU leaves room for the VXLAN header
    h1.docker("exec", "client", "ping", "-c", "1", "-W", "3", "web")
    h2.docker("exec", "web", "ping", "-c", "1", "-W", "3", "client")
    assert h2.docker("exec", "web", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"
    web_ip = h2.docker("inspect", "-f", "{{.NetworkSettings.Networks.ov1.IPAddress}}", "web").stdout.strip()
    client_ip = h1.docker("inspect", "-f", "{{.NetworkSettings.Networks.ov1.IPAddress}}", "client").stdout.strip()
    assert web_ip != client_ip and web_ip.startswith("10.33.0.")
    # after removal the name stops resolving on h1 and the address is free again
    h2.docker("rm", "-f", "web")
    t0 = time.monotonic()
    wait_for(lambda: h1.docker("exec", "client", "nslookup", "web", check=False).returncode != 0, 5,
             "web to stop resolving on h1")
    assert time.monotonic() - t0 < 3
    h1.docker("run", "--rm", "--network", "ov1", "--ip", web_ip, "busybox", "true")
    # the overlay on h1 disappears with its last local container; h2 has none left
    assert _overlay_links(overlay_cluster, h1)
    h1.docker("rm", "-f", "client")
    assert not [n for n in _overlay_links(overlay_cluster, h1) if n[8] in "ox"]  # bridge and VXLAN at once
    _no_overlay_links(overlay_cluster, h1)  # the retired veth with the container's namespace
    _no_overlay_links(overlay_cluster, h2)
    h2.docker("network", "rm", "ov1")
    wait_for(lambda: h1.docker("network", "inspect", "ov1", check=False).returncode != 0, 5, "ov1 gone from h1")


@pytest.mark.parametrize("datapath", ["macvlan", "bridge"])
async def test_each_data_path_carries_same_host_cross_host_and_gateway_traffic(overlay_cluster, datapath):
    """``macvlan`` (the default: containers' interfaces are children of the VXLAN device, no
    veth, no bridge) and ``bridge`` (libnetwork's veth and bridge), chosen per network."""
    h1, h2 = overlay_cluster.hosts
    net = f"ovp{datapath[0]}"
    subnet = "10.29.0" if datapath == "macvlan" else "10.28.0"
    options = [] if datapath == "macvlan" else ["-o", f"dockyard.overlay.datapath={datapath}"]
    h1.docker("network", "create", "-d", "overlay", *options, "--subnet", f"{subnet}.0/24", net)
    try:
        wait_for(lambda: h2.docker("network", "inspect", net, check=False).returncode == 0, 5, f"{net} on h2")
        for host, name in ((h1, "pa"), (h1, "pb"), (h2, "pc")):
            host.docker("run", "-d", "--name", name, "--network", net, "busybox", "sleep", "600")
        veths = [n for n in _overlay_links(overlay_cluster, h1) if n[8] == "e"]
        assert len(veths) == (2 if datapath == "bridge" else 0), veths
        details = h1.docker("exec", "pa", "cat", "/sys/class/net/eth0/mtu", "/sys/class/net/eth0/address").stdout
        assert details.split()[0] == "1450" and details.split()[1].startswith("02:42:"), details
        h1.docker("exec", "pa", "ping", "-c", "1", "-W", "3", "pb")  # same host
        h1.docker("exec", "pa", "ping", "-c", "1", "-W", "3", "pc")  # across the hosts, both ways
        h2.docker("exec", "pc", "ping", "-c", "1", "-W", "3", "pb")
        h1.docker("exec", "pa", "ping", "-c", "1", "-W", "3", f"{subnet}.1")  # the gateway, on h1
        h2.docker("exec", "pc", "ping", "-c", "1", "-W", "3", f"{subnet}.1")  # and on h2
        ip = h1.docker("inspect", "-f", f"{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}", "pa").stdout.strip()
        h1.docker("rm", "-f", "pa")  # one leaves; the others still talk
        h2.docker("exec", "pc", "ping", "-c", "1", "-W", "3", "pb")
        # its address (so its MAC) is taken again at once on the same host
        h1.docker("run", "--rm", "--network", net, "--ip", ip, "busybox", "ping", "-c", "1", "-W", "3", "pc")
    finally:
        h1.docker("rm", "-f", "pa", "pb", check=False)
        h2.docker("rm", "-f", "pc", check=False)
        h1.docker("network", "rm", net, check=False)
    _no_overlay_links(overlay_cluster, h1)
    _no_overlay_links(overlay_cluster, h2)


def _vxlan_packets(cluster, host, subnet_octet: int) -> tuple[int, int]:
    """(tx, rx) packets of the host's VXLAN device whose neighbour entries are in 10.N.0.0/24:
    what went through the kernel device's own transmit and receive paths."""
    def read(ns) -> tuple[int, int]:
        for link in ns.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            if OUR_LINK.match(name) and name[8] == "x" and any(
                    str(m.get("NDA_DST")).startswith(f"10.{subnet_octet}.0.")
                    for m in ns.get_neighbours(ifindex=link["index"])):
                stats = link.get_attr("IFLA_STATS64")
                return int(stats["tx_packets"]), int(stats["rx_packets"])
        raise AssertionError(f"no VXLAN device with peers in 10.{subnet_octet}.0.0/24 on {host.name}")

    return cluster.in_ns(host, read)


async def test_the_fast_path_carries_known_peers_and_can_be_turned_off(overlay_cluster):
    """A macvlan network's unicast frames between hosts go through the eBPF fast path (the
    VXLAN devices' own transmit and receive counters stay still while 30 pings cross) unless
    the network is made with ``dockyard.overlay.fastpath=off`` (then every ping counts on both)."""
    h1, h2 = overlay_cluster.hosts
    nets = {"ovfon": ("30", []), "ovfoff": ("31", ["-o", "dockyard.overlay.fastpath=off"])}
    for net, (octet, options) in nets.items():
        h1.docker("network", "create", "-d", "overlay", *options, "--subnet", f"10.{octet}.0.0/24", net)
    try:
        for net, (octet, _) in nets.items():
            wait_for(lambda n=net: h2.docker("network", "inspect", n, check=False).returncode == 0, 5, f"{net} on h2")
            h1.docker("run", "-d", "--name", f"{net}a", "--network", net, "--ip", f"10.{octet}.0.10", "busybox",
                      "sleep", "600")
            h2.docker("run", "-d", "--name", f"{net}b", "--network", net, "--ip", f"10.{octet}.0.20", "busybox",
                      "sleep", "600")
            h1.docker("exec", f"{net}a", "ping", "-c", "1", "-W", "3", f"10.{octet}.0.20")  # ARP, neighbours
        for net, (octet, _) in nets.items():
            before = _vxlan_packets(overlay_cluster, h1, int(octet)), _vxlan_packets(overlay_cluster, h2, int(octet))
            h1.docker("exec", f"{net}a", "ping", "-c", "30", "-i", "0.02", "-W", "3", f"10.{octet}.0.20")
            after = _vxlan_packets(overlay_cluster, h1, int(octet)), _vxlan_packets(overlay_cluster, h2, int(octet))
            (tx1, rx1), (tx2, rx2) = ((a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True))
            if net == "ovfon":
                assert max(tx1, rx1, tx2, rx2) < 5, (net, before, after)
            else:
                assert min(tx1, rx1, tx2, rx2) >= 30, (net, before, after)
        # a peer that leaves leaves the fast path too: its address answers from a new place
        h2.docker("rm", "-f", "ovfonb")
        h1.docker("run", "-d", "--name", "ovfonb", "--network", "ovfon", "--ip", "10.30.0.20", "busybox", "sleep", "600")
        h2.docker("exec", "ovfoffb", "ping", "-c", "1", "-W", "3", "10.31.0.10")
        wait_for(lambda: h1.docker("exec", "ovfona", "ping", "-c", "1", "-W", "1", "10.30.0.20",
                                   check=False).returncode == 0, 5, "the moved address answers on h1")
    finally:
        h1.docker("rm", "-f", "ovfona", "ovfonb", "ovfoffa", check=False)
        h2.docker("rm", "-f", "ovfonb", "ovfoffb", check=False)
        for net in nets:
            h1.docker("network", "rm", net, check=False)
    _no_overlay_links(overlay_cluster, h1)
    _no_overlay_links(overlay_cluster, h2)


def _reaches(host, net: str, address: str, port: int = 2376) -> bool:
    script = f"nc -w 2 {address} {port} </dev/null"
    return host.docker("run", "--rm", "--network", net, "busybox", "sh", "-c", script, check=False).returncode == 0


async def test_internal_overlay_has_no_egress_and_options_are_kept(overlay_cluster):
    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--internal", "--attachable", "--subnet", "10.34.0.0/24", "ovi")
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.35.0.0/24", "--ip-range", "10.35.0.128/25",
              "--gateway", "10.35.0.254", "--aux-address", "router=10.35.0.128", "ove")
    try:
        # egress: through the gateway bridge (NAT) to the host's own address and beyond it (the
        # other host's engine port); the internal network has no route out at all
        assert _reaches(h1, "ove", h1.address)
        assert _reaches(h1, "ove", h2.address)
        assert not _reaches(h1, "ovi", h1.address)
        assert not _reaches(h1, "ovi", h2.address)
        # an internal overlay still spans the hosts
        h2.docker("run", "-d", "--name", "isrv", "--network", "ovi", "busybox", "sh", "-c", HTTPD)
        assert h1.docker("run", "--rm", "--network", "ovi", "busybox", "wget", "-qO-",
                         "http://isrv/").stdout.startswith("hello-from-")
        # --ip-range, --gateway and --aux-address hold on every host
        fmt = "{{range .IPAM.Config}}{{.Subnet}} {{.IPRange}} {{.Gateway}} {{.AuxiliaryAddresses}}{{end}} {{.Internal}}"
        for h in (h1, h2):
            wait_for(lambda h=h: h.docker("network", "inspect", "-f", fmt, "ove", check=False).returncode == 0, 5,
                     "ove mirrored")
            assert h.docker("network", "inspect", "-f", fmt, "ove").stdout.strip() == \
                "10.35.0.0/24 10.35.0.128/25 10.35.0.254 map[router:10.35.0.128] false"
        out = h2.docker("run", "--rm", "--network", "ove", "busybox", "sh", "-c",
                        "ip -4 -o addr show eth0; ip route").stdout
        gw = h2.docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                       "docker_gwbridge").stdout.strip()
        assert "inet 10.35.0.129/24" in out and f"default via {gw} dev eth1" in out, out
        out = h2.docker("run", "--rm", "--network", "ovi", "busybox", "sh", "-c", "ip route").stdout
        assert "default" not in out and "eth1" not in out, out  # no gateway bridge for --internal
        refused = h2.docker("run", "--rm", "--network", "ovi", "-p", "8099:80", "busybox", "true", check=False)
        assert refused.returncode != 0 and "--internal" in refused.stderr, refused.stderr
        assert h1.docker("network", "inspect", "-f", "{{.Attachable}} {{.Internal}}", "ovi").stdout.strip() == "true true"
    finally:
        h2.docker("rm", "-f", "isrv", check=False)
        h1.docker("network", "rm", "ovi", "ove", check=False)


async def test_encrypted_is_refused_and_removal_waits_for_every_host(overlay_cluster):
    h1, h2 = overlay_cluster.hosts
    out = h1.docker("network", "create", "-d", "overlay", "--opt", "encrypted", "ovx", check=False)
    assert out.returncode != 0 and "IPsec" in out.stderr, out.stderr
    assert h1.docker("network", "inspect", "ovx", check=False).returncode != 0
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.37.0.0/24", "ovr")
    wait_for(lambda: h2.docker("network", "inspect", "ovr", check=False).returncode == 0, 5, "ovr on h2")
    h2.docker("run", "-d", "--name", "holder", "--network", "ovr", "busybox", "sleep", "600")
    refused = h1.docker("network", "rm", "ovr", check=False)
    assert refused.returncode != 0 and "active endpoints on other hosts" in refused.stderr, refused.stderr
    h2.docker("rm", "-f", "holder")
    h1.docker("network", "rm", "ovr")
    wait_for(lambda: h2.docker("network", "inspect", "ovr", check=False).returncode != 0, 5, "ovr gone from h2")


async def test_leftovers_after_kill9_are_reconciled_at_restart(overlay_cluster):
    import os
    import signal

    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.38.0.0/24", "ovk")
    h1.docker("run", "-d", "--name", "k1", "--network", "ovk", "busybox", "sleep", "600")
    h2.docker("run", "-d", "--name", "k2", "--network", "ovk", "busybox", "sleep", "600")
    h1.docker("exec", "k1", "ping", "-c", "1", "-W", "3", "k2")
    links = _overlay_links(overlay_cluster, h1)
    vxlan = next(n for n in links if n[8] == "x")
    tag = vxlan[:8]
    os.kill(int(h1.host.extra["pid"]), signal.SIGKILL)
    # what a crash can leave: a network's devices no endpoint uses, a stale FDB/neighbour entry
    mac, stale_vtep = "02:42:0a:26:00:63", "10.247.0.250"

    def plant(ns) -> None:
        ns.link("add", ifname=f"{tag}offfff0", kind="bridge")
        ns.link("add", ifname=f"{tag}xfffff0", kind="vxlan", vxlan_id=1048560, vxlan_port=4789,
                vxlan_local=h1.address, vxlan_learning=0)
        vx = ns.link_lookup(ifname=vxlan)[0]
        ns.neigh("add", dst="10.38.0.99", lladdr=mac, ifindex=vx, state=NUD_PERMANENT)
        ns.fdb("add", ifindex=vx, lladdr=mac, NDA_DST=stale_vtep, state=NUD_PERMANENT, flags=NTF_SELF)

    overlay_cluster.in_ns(h1, plant)
    for _ in range(100):  # the driver has seen the engine exit (else start() kills the host's cgroup)
        state = await overlay_cluster.netns.driver.state(h1.host)
        if state.state != "running" and "runs but" not in state.reason:
            break
        await asyncio.sleep(0.05)
    await overlay_cluster.netns.driver.start(h1.host)
    wait_for(lambda: h1.docker("version", check=False).returncode == 0, 15, "h1's engine back")
    links = _overlay_links(overlay_cluster, h1)
    assert f"{tag}offfff0" not in links and f"{tag}xfffff0" not in links, links
    assert vxlan in links, h1.docker("ps", "-a").stdout

    def entries(ns) -> tuple[list[str], list[str]]:
        vx = ns.link_lookup(ifname=vxlan)[0]
        return ([str(m.get("NDA_DST")) for m in ns.fdb("dump", ifindex=vx) if m.get("NDA_DST")],
                [str(m.get("NDA_DST")) for m in ns.get_neighbours(ifindex=vx)])

    fdb, neighbours = overlay_cluster.in_ns(h1, entries)
    assert stale_vtep not in fdb and h2.address in fdb, fdb
    assert "10.38.0.99" not in neighbours, neighbours
    h1.docker("exec", "k1", "ping", "-c", "1", "-W", "3", "k2")  # still connected after the restart
    h2.docker("exec", "k2", "ping", "-c", "1", "-W", "3", "k1")
    before = _vxlan_packets(overlay_cluster, h1, 38)  # and through a fresh fast path again
    h1.docker("exec", "k1", "ping", "-c", "10", "-i", "0.02", "-W", "3", "k2")
    after = _vxlan_packets(overlay_cluster, h1, 38)
    assert after[0] - before[0] < 5 and after[1] - before[1] < 5, (before, after)
    h1.docker("rm", "-f", "k1")
    h2.docker("rm", "-f", "k2")
    _no_overlay_links(overlay_cluster, h1)
    h1.docker("network", "rm", "ovk")


async def test_a_lost_node_takes_its_names_and_addresses_with_it(overlay_cluster, tmp_path):
    import json

    h1 = overlay_cluster.hosts[0]
    config = tmp_path / "daemon.json"  # short leases: a lost node's endpoints and addresses go in ~2 s
    config.write_text(json.dumps({"network-opts": ["endpoint-ttl=2"], "ipam-opts": ["global-address-ttl=2"]}))
    (h3,) = await overlay_cluster.netns.create(1, prefix="lost", engine_options=[*overlay_cluster.options,
                                                                                    "--config-file", str(config)])
    try:
        h3.bootstrap("busybox")
        h1.docker("network", "create", "-d", "overlay", "--subnet", "10.36.0.0/24", "ovl")
        wait_for(lambda: h3.docker("network", "inspect", "ovl", check=False).returncode == 0, 5, "ovl on h3")
        h3.docker("run", "-d", "--name", "doomed", "--network", "ovl", "--ip", "10.36.0.50", "busybox", "sleep", "600")
        h1.docker("run", "-d", "--name", "survivor", "--network", "ovl", "busybox", "sleep", "600")
        h1.docker("exec", "survivor", "ping", "-c", "1", "-W", "3", "doomed")
    finally:
        await overlay_cluster.netns.remove(h3)  # the node is lost: engine and containers killed
    try:
        wait_for(lambda: h1.docker("exec", "survivor", "nslookup", "doomed", check=False).returncode != 0, 10,
                 "the lost node's name to stop resolving")
        # its address is free once its lease expired too (the IPAM's: another lease, as long)
        wait_for(lambda: h1.docker("run", "--rm", "--network", "ovl", "--ip", "10.36.0.50", "busybox", "true",
                                   check=False).returncode == 0, 5, "the lost node's address to be free")
        # and the network can go: no endpoint of the lost node holds it
        h1.docker("rm", "-f", "survivor")
        h1.docker("network", "rm", "ovl")
    finally:
        h1.docker("rm", "-f", "survivor", check=False)
        h1.docker("network", "rm", "ovl", check=False)


async def test_a_container_on_a_bridge_network_too_keeps_the_bridge_default_route(overlay_cluster):
    h1, _h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.31.0.0/24", "ovb")
    h1.docker("network", "create", "--subnet", "10.32.0.0/24", "brb")
    try:
        h1.docker("create", "--name", "both", "--network", "ovb", "-p", "18082:80", "busybox", "sleep", "600")
        h1.docker("network", "connect", "brb", "both")
        h1.docker("start", "both")
        assert "18082" in h1.docker("port", "both").stdout  # published by the bridge network
        routes = h1.docker("exec", "both", "ip", "route").stdout
        assert "default via 10.32.0.1" in routes and "10.31.0.0/24" in routes, routes
        assert "eth2" not in h1.docker("exec", "both", "ip", "-o", "link").stdout  # no gateway bridge
        # a live disconnect of the bridge network leaves the overlay alone: the gateway bridge
        # comes, and goes again when the bridge network is back
        h1.docker("network", "disconnect", "brb", "both")
        gw = h1.docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                       "docker_gwbridge").stdout.strip()
        assert f"default via {gw}" in h1.docker("exec", "both", "ip", "route").stdout
        h1.docker("network", "connect", "brb", "both")
        assert h1.docker("network", "inspect", "-f", "{{len .Containers}}", "docker_gwbridge").stdout.strip() == "0"
    finally:
        h1.docker("rm", "-f", "both", check=False)
        h1.docker("network", "rm", "ovb", "brb", check=False)


async def test_a_name_answers_with_its_newest_place(overlay_cluster):
    """A container moved (rescheduled) to this host answers here at once, though its old
    endpoint lasts until its lost node's lease expires: a local container holds its name (and
    among other hosts' endpoints the newest does: test_overlay_unit)."""
    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.30.0.0/24", "ovm")
    try:
        h2.docker("run", "-d", "--name", "mover", "--network", "ovm", "--ip", "10.30.0.20", "busybox", "sleep", "600")
        h1.docker("run", "-d", "--name", "asker", "--network", "ovm", "busybox", "sleep", "600")

        def answer() -> str:
            out = h1.docker("exec", "asker", "nslookup", "mover", check=False).stdout
            return " ".join(sorted(re.findall(r"Address: (10\.30\.0\.\d+)", out)))

        assert answer() == "10.30.0.20"
        h1.docker("run", "-d", "--name", "mover", "--network", "ovm", "--ip", "10.30.0.10", "busybox", "sleep", "600")
        wait_for(lambda: answer() == "10.30.0.10", 1, "the local mover to answer on h1")  # within a second
        h1.docker("rm", "-f", "mover")
        wait_for(lambda: answer() == "10.30.0.20", 2, "the remaining mover to answer again")
    finally:
        for h in (h1, h2):
            h.docker("rm", "-f", "mover", "asker", check=False)
        h1.docker("network", "rm", "ovm", check=False)


async def test_an_overlay_only_container_gets_egress_and_published_ports_through_the_gateway_bridge(
        overlay_cluster):
    """Docker's docker_gwbridge: a second interface on a local bridge network (NAT, ICC off)
    gives an overlay-only container its default route and its published ports."""
    import urllib.request

    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.36.0.0/24", "ovg")
    try:
        h1.docker("run", "-d", "--name", "pub", "--network", "ovg", "-p", "18080:80", "busybox", "sh", "-c", HTTPD)
        # listed as Docker lists it; bridge driver, ICC off, masquerade on
        fmt = '{{.Driver}} {{index .Options "com.docker.network.bridge.enable_icc"}} {{len .Containers}}'
        assert h1.docker("network", "inspect", "-f", fmt, "docker_gwbridge").stdout.split() == ["bridge", "false", "1"]
        assert "docker_gwbridge" in h1.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        # the published port answers on the host's address (from outside the host: this namespace)
        page = wait_for(lambda: _fetch(urllib.request, f"http://{h1.address}:18080/"), 5, "published port")
        assert page.startswith("hello-from-"), page
        assert "18080" in h1.docker("port", "pub").stdout
        # egress beyond the host: the other host (a namespace acting as outside) is reached
        # through NAT, from the host's own address
        h2.docker("run", "-d", "--name", "outside", "-p", "18081:80", "busybox", "sh", "-c",
                  "mkdir -p /www && exec httpd -f -p 80 -h /www")
        assert h1.docker("exec", "pub", "sh", "-c", f"nc -w 2 {h2.address} 18081 </dev/null && echo ok"
                         ).stdout.strip() == "ok"
        # inspect keeps Docker's shape: the container's networks are the overlay only
        assert h1.docker("inspect", "-f", "{{len .NetworkSettings.Networks}}", "pub").stdout.strip() == "1"
        h1.docker("rm", "-f", "pub")
        # the endpoint goes with the container, the network stays (as Docker's)
        assert h1.docker("network", "inspect", "-f", "{{len .Containers}}", "docker_gwbridge").stdout.strip() == "0"
    finally:
        h1.docker("rm", "-f", "pub", check=False)
        h2.docker("rm", "-f", "outside", check=False)
        h1.docker("network", "rm", "ovg", check=False)


def _fetch(urllib_request, url: str) -> str:
    try:
        with urllib_request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""
