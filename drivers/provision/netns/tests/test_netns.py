"""What only the netns driver does: its range, names, engines, failures and clean-up.

Every test runs as root against the real kernel: namespaces, a bridge and veths named after a
random owner, engines (real dockyardd processes) inside the hosts. The ``netns_driver`` fixture
fails the test if anything of its owner is left afterwards.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import ssl
import time
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, Unavailable
from dockyard.model import Host
from dockyard.specs.provision import HostRequest
from dockyard_plugin_sdk.testing import TestCA, async_wait_for
from dockyard_provision_netns import cgroups, names, net
from dockyard_provision_netns.driver import DEFAULT_SUBNET, NetnsProvisioner


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


async def make_host(drv: NetnsProvisioner, ca: TestCA, name: str, flags: tuple[str, ...] = ()) -> Host:
    host = await drv.prepare(HostRequest(name=name))
    return await drv.create(host, ca.engine_tls(host.addresses), list(flags))


def mtls_get(url: str, path: str, certs: Path, method: str = "GET") -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://"))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=60)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def docker(host: Host, certs: Path, *args: str, check: bool = True) -> str:
    import subprocess

    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(certs.parent / "docker-config")
    res = subprocess.run([cli, "-H", host.engine_url, "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
                          "--tlscert", str(certs / "cert.pem"), "--tlskey", str(certs / "key.pem"), *args],
                         capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert res.returncode == 0, f"docker {' '.join(args)}: {res.stderr}"
    return res.stdout


def bootstrap(host: Host, certs: Path) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("the offline busybox image needs /bin/busybox (busybox-static)")
    status, body = mtls_get(host.engine_url, "/dockyard/images/bootstrap?name=busybox", certs, "POST")
    assert status in (200, 201), body


# ---------------------------------------------------------------------------------- set-up
def test_the_bridge_keeps_its_own_mac_as_hosts_come_and_go() -> None:
    """A bridge without a MAC of its own takes its lowest port's: a host added or removed
    changed it, and the other hosts' neighbour entry for the gateway named a MAC that was no
    longer the bridge's (cut off from the machine, and the tests' etcd, for seconds). In a
    scratch namespace: ports with lower MACs than the bridge's come and go, the MAC stays."""
    import uuid

    from pyroute2 import IPRoute

    scratch = f"dybm{uuid.uuid4().hex[:8]}"
    bridge = f"{scratch}br"
    net.create_netns(scratch)
    try:
        def steps() -> tuple[str, list[str]]:
            with IPRoute() as ipr:
                def mac() -> str:
                    return str(ipr.link("get", ifname=bridge)[0].get_attr("IFLA_ADDRESS"))

                net.ensure_bridge(bridge, ipaddress.IPv4Interface("10.99.0.1/24"))
                own, seen = mac(), []
                for n in (1, 2):
                    ipr.link("add", ifname=f"p{n}", address=f"02:00:00:00:00:0{n}", kind="veth", peer=f"q{n}")
                    ipr.link("set", ifname=f"p{n}", master=ipr.link_lookup(ifname=bridge)[0], state="up")
                    seen.append(mac())
                ipr.link("del", ifname="p1")
                seen.append(mac())
                return own, seen

        own, seen = net.in_netns(scratch, steps)
        assert seen == [own, own, own]
    finally:
        net.remove_netns(scratch)


async def test_setup_refuses_a_range_the_machine_already_routes(make_driver) -> None:
    drv = make_driver(subnet="127.0.0.0/24")
    with pytest.raises(InvalidArgument, match=r"127\.0\.0\.0/24 overlaps .*address 127\.0\.0\.1/8 dev lo"):
        await drv.setup()
    assert names.bridge(drv.context.owner) not in await asyncio.to_thread(net.link_names)


async def test_a_second_driver_cannot_claim_the_same_range(netns_driver, make_driver) -> None:
    other = make_driver(subnet=str(netns_driver.subnet))
    with pytest.raises(InvalidArgument, match=f"route {netns_driver.subnet} dev {netns_driver.bridge}"):
        await other.setup()
    # the same driver (same owner) set up again keeps its own range
    await netns_driver.setup()


@pytest.mark.parametrize(("options", "message"), [
    ({"subnet": "10.247.0.0/30"}, "too small"),
    ({"subnet": "fd00::/64"}, "not an IPv4 network"),
    ({"color": "blue"}, "unknown option"),
])
async def test_setup_refuses_bad_options(make_driver, options, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        drv = make_driver(**options)
        await drv.setup()


async def test_setup_refuses_a_run_directory_too_long_for_unix_sockets(make_driver, roots) -> None:
    root = roots() / ("x" * 60)
    root.mkdir()
    with pytest.raises(InvalidArgument, match="sun_path"):
        await make_driver(root=root, subnet="10.247.255.0/24").setup()


def test_the_default_range_is_private_and_names_fit_in_a_link_name() -> None:
    assert ipaddress.ip_network(DEFAULT_SUBNET).is_private
    for owner in ("dy1a2b3c", "a-rather-long-owner-token"):
        assert len(names.veth(owner, "abcdef")) <= 15 and len(names.bridge(owner)) <= 15
        assert names.is_veth(owner, names.veth(owner, "abcdef"))
        assert not names.is_veth(owner, names.bridge(owner))
    # never the bridge network driver's prefixes (<tag>- and <tag>v), which it reconciles away
    assert not names.veth("dy1a2b3c", "abcdef").startswith(("dy1a2b3c-", "dy1a2b3cv"))


# ---------------------------------------------------------------------------------- hosts
async def test_prepare_hands_out_addresses_and_refuses_a_taken_name(netns_driver) -> None:
    a = await netns_driver.prepare(HostRequest(name="pa"))
    b = await netns_driver.prepare(HostRequest(name="pb"))
    assert a.addresses != b.addresses
    assert all(ipaddress.ip_address(x.addresses[0]) in netns_driver.subnet for x in (a, b))
    assert str(netns_driver.gateway.ip) not in a.addresses + b.addresses
    assert a.engine_url == f"tcp://{a.addresses[0]}:2376"
    with pytest.raises(Conflict):
        await netns_driver.prepare(HostRequest(name="pa"))
    with pytest.raises(InvalidArgument):
        await netns_driver.prepare(HostRequest(name="no/slash"))
    await netns_driver.remove(a)
    c = await netns_driver.prepare(HostRequest(name="pa"))  # the name and address are free again
    assert c.addresses == a.addresses


async def test_a_host_is_a_namespace_with_an_engine_and_no_way_off_the_machine(netns_driver, ca) -> None:
    host = await make_host(netns_driver, ca, "iso")
    x = host.extra
    assert net.is_netns(x["netns"]) and names.is_host_object(netns_driver.context.owner, x["netns"])
    links = await asyncio.to_thread(net.link_names)
    assert x["veth"] in links and netns_driver.bridge in links

    def inside() -> tuple[list, list]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            routes = [(r["dst_len"], r.get_attr("RTA_GATEWAY")) for r in ipr.route("dump", family=2, table=254)]
            addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.addr("dump", family=2)]
        return routes, addrs

    routes, addrs = await asyncio.to_thread(net.in_netns, x["netns"], inside)
    assert x["address"] in addrs
    assert all(dst_len > 0 for dst_len, _gw in routes), f"a host has no default route: {routes}"
    assert (net.PROC_SYS / "ipv4" / "conf" / netns_driver.bridge / "forwarding").read_text().strip() == "0"
    # the engine runs inside the host's cgroup, named after the owner
    h = cgroups.hierarchies()
    assert x["pid"] in cgroups.members(h, x["cgroup"])


async def test_two_hosts_reach_each_others_engine(netns_driver, ca, tmp_path) -> None:
    a, b = await asyncio.gather(make_host(netns_driver, ca, "ra"), make_host(netns_driver, ca, "rb"))
    certs = ca.write_client(tmp_path / "certs")
    # from inside a, mutual TLS to b's engine address, and back
    for src, dst in ((a, b), (b, a)):
        status, body = await asyncio.to_thread(
            net.in_netns, src.extra["netns"], lambda dst=dst: mtls_get(dst.engine_url, "/info", certs))
        assert status == 200 and json.loads(body)["Name"] == dst.name


async def test_docker_run_inside_a_host_over_tls(netns_driver, ca, tmp_path) -> None:
    host = await make_host(netns_driver, ca, "run")
    certs = ca.write_client(tmp_path / "certs")
    await asyncio.to_thread(bootstrap, host, certs)
    out = await asyncio.to_thread(docker, host, certs, "run", "--rm", "busybox", "echo", "hi")
    assert out == "hi\n"


async def test_a_container_in_one_host_reaches_another_host(netns_driver, ca, tmp_path) -> None:
    a, b = await asyncio.gather(make_host(netns_driver, ca, "ca"), make_host(netns_driver, ca, "cb"))
    certs = ca.write_client(tmp_path / "certs")
    await asyncio.to_thread(bootstrap, a, certs)
    cid = (await asyncio.to_thread(docker, a, certs, "run", "-d", "busybox", "sh", "-c",
                                   f"nc -w 5 {b.addresses[0]} 2376 </dev/null && echo reached")).strip()
    assert (await asyncio.to_thread(docker, a, certs, "wait", cid)).strip() == "0"
    assert await asyncio.to_thread(docker, a, certs, "logs", cid) == "reached\n"


async def test_five_hosts_in_parallel(netns_driver, ca) -> None:
    t0 = time.monotonic()
    hosts = await asyncio.gather(*(make_host(netns_driver, ca, f"par{i}") for i in range(5)))
    elapsed = time.monotonic() - t0
    assert len({h.addresses[0] for h in hosts}) == 5
    for h in hosts:
        assert (await netns_driver.state(h)).state == "running"
    print(f"five netns hosts created and answering in {elapsed:.2f}s")
    assert elapsed < 20, f"five hosts took {elapsed:.1f}s (goal: 5 s)"


async def test_remove_leaves_nothing_of_a_busy_host(netns_driver, ca, tmp_path, processes_naming) -> None:
    """A host with a running container (its mounts, cgroups, inner bridge, veths and nft
    rules, conmon) is removed completely; the fixture's leak check proves the rest."""
    host = await make_host(netns_driver, ca, "busy")
    certs = ca.write_client(tmp_path / "certs")
    await asyncio.to_thread(bootstrap, host, certs)
    cid = (await asyncio.to_thread(docker, host, certs, "run", "-d", "-p", "8080:80", "busybox", "sleep", "600")).strip()
    root, run = host.extra["root"], host.extra["run"]
    assert processes_naming(root)
    # Host.extra names the engine's own owner token: its container's cgroup carries it (what a
    # leak check that records it finds if the container ever escapes the host's cgroup)
    pid = docker(host, certs, "inspect", "-f", "{{.State.Pid}}", cid).strip()
    assert f"dockyard-{host.extra['engine_owner']}-{cid}" in Path(f"/proc/{pid}/cgroup").read_text()
    await netns_driver.remove(host)
    assert (await netns_driver.state(host)).state == "none"
    assert not processes_naming(root) and not processes_naming(run)
    assert not os.path.exists(root) and not os.path.exists(run)
    assert not net.is_netns(host.extra["netns"])
    assert not cgroups.names(cgroups.hierarchies(), host.extra["cgroup"])
    await netns_driver.remove(host)  # again: nothing to do


async def test_a_killed_engine_is_an_error_with_the_reason_and_start_brings_it_back(netns_driver, ca) -> None:
    host = await make_host(netns_driver, ca, "kill")
    os.kill(host.extra["pid"], signal.SIGKILL)

    async def errored() -> object:  # (while the kill is under way the engine just does not answer)
        st = await netns_driver.state(host)
        return st if st.state == "error" and "killed" in st.reason else None

    st = await async_wait_for(errored, 10, "the host to be in error, its engine killed")
    assert "was killed by SIGKILL" in st.reason and "listening on" in st.reason, st.reason
    await netns_driver.start(host)
    assert (await netns_driver.state(host)).state == "running"


async def test_stop_is_a_power_off_and_start_keeps_the_engine_data(netns_driver, ca, tmp_path) -> None:
    host = await make_host(netns_driver, ca, "power")
    certs = ca.write_client(tmp_path / "certs")
    await asyncio.to_thread(bootstrap, host, certs)
    await asyncio.to_thread(docker, host, certs, "run", "-d", "--name", "sleeper", "busybox", "sleep", "600")
    await netns_driver.stop(host)
    assert (await netns_driver.state(host)).state == "stopped"
    assert not cgroups.populated(cgroups.hierarchies(), host.extra["cgroup"]), "containers outlived the stop"
    await netns_driver.start(host)
    images = await asyncio.to_thread(docker, host, certs, "images", "--format", "{{.Repository}}")
    assert images.split() == ["busybox"]
    assert "Exited" in await asyncio.to_thread(docker, host, certs, "ps", "-a", "--format", "{{.Status}}")


async def test_an_engine_that_does_not_start_is_reported_and_removable(netns_driver, ca) -> None:
    host = await netns_driver.prepare(HostRequest(name="broken"))
    with pytest.raises(Unavailable, match="--no-such-flag"):
        await netns_driver.create(host, ca.engine_tls(host.addresses), ["--no-such-flag"])
    st = await netns_driver.state(host)
    assert st.state == "error" and "exited with status 2" in st.reason
    await netns_driver.remove(host)
    assert (await netns_driver.state(host)).state == "none"


async def test_a_host_whose_record_is_lost_is_removed_through_its_extra(netns_driver, ca,
                                                                          processes_naming) -> None:
    host = await make_host(netns_driver, ca, "lost")
    (netns_driver.context.data_dir / "hosts" / f"{host.id}.json").unlink()
    assert (await netns_driver.state(host)).state == "none"
    await netns_driver.remove(host)
    assert not net.is_netns(host.extra["netns"])
    assert not processes_naming(host.extra["root"])


async def test_a_new_driver_instance_finds_its_hosts_and_what_no_record_explains(
        netns_driver, make_driver, ca) -> None:
    host = await make_host(netns_driver, ca, "kept")
    stray = names.netns(netns_driver.context.owner, "stray")
    await asyncio.to_thread(net.create_netns, stray)
    again = make_driver(owner=netns_driver.context.owner, root=netns_driver.context.data_dir.parent,
                        subnet=str(netns_driver.subnet))
    await again.setup()
    assert not net.is_netns(stray), "setup removes a host namespace no record explains"
    assert (await again.state(host)).state == "running"  # not its child: pid and start time
    await again.stop(host)
    assert (await netns_driver.state(host)).state == "stopped"
    await again.remove(host)
    await again.close()


async def test_status_names_the_range_and_the_bridge(netns_driver, ca) -> None:
    await make_host(netns_driver, ca, "st")
    status = dict(netns_driver.status())
    assert status == {"Subnet": str(netns_driver.subnet), "Bridge": netns_driver.bridge, "Hosts": "1"}


async def test_engine_env_reaches_the_engine_at_every_start(netns_driver, ca) -> None:
    host = await netns_driver.prepare(HostRequest(name="envy", engine_env={"DOCKYARD_TEST_ENV": "yes"}))
    host = await netns_driver.create(host, ca.engine_tls(host.addresses), [])

    def environ() -> list[bytes]:
        pid = int((Path(host.extra["run"]) / "dockyardd.pid").read_text().split()[0])
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    assert b"DOCKYARD_TEST_ENV=yes" in environ()
    await netns_driver.stop(host)
    await netns_driver.start(host)
    assert b"DOCKYARD_TEST_ENV=yes" in environ()


async def test_a_host_made_again_on_a_freed_address_answers_at_once(netns_driver, ca, tmp_path) -> None:
    """The machine's neighbour entry for a removed host's address names that host's eth0; a new
    host on the address would be unreachable for seconds (until the entry is probed again)
    were the entry kept. (It is flushed anyway when the bridge loses its last port: another
    host keeps it up here.)"""
    import socket

    await make_host(netns_driver, ca, "reuse0")
    first = await make_host(netns_driver, ca, "reuse1")
    certs = ca.write_client(tmp_path / "certs")
    assert (await asyncio.to_thread(mtls_get, first.engine_url, "/_ping", certs))[0] == 200
    await netns_driver.remove(first)
    second = await make_host(netns_driver, ca, "reuse2")
    assert second.addresses == first.addresses
    t0 = time.monotonic()
    await asyncio.to_thread(lambda: socket.create_connection((second.addresses[0], 2376), timeout=3).close())
    assert time.monotonic() - t0 < 1.5
    assert (await asyncio.to_thread(mtls_get, second.engine_url, "/_ping", certs))[0] == 200
