"""Networks through real clients: the docker CLI and docker-py against a real dockyardd.

Each daemon draws automatic subnets from a random free /20 of 10.213.0.0/17 (its
``default-address-pools``) and runs without live-restore. At shutdown it takes down every
network no endpoint uses (the default bridge included) and its nft table: the fixture checks
nothing named after the daemon's owner (links, namespaces, nft tables) is left.
No traffic leaves the host: the packets are DNS queries to 127.0.0.11 inside the test's
namespaces and containers, one ping between two containers of one test network, and forwarded
queries to the host's loopback (``--dns 127.0.0.1``).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, owner_of, wait_for

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("network tests need root", allow_module_level=True)
bridge_names = pytest.importorskip("dockyard_network_bridge.names")
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path_ = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def api(d: Daemon, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = UnixHTTP(str(d.socket))
    data = None if body is None else json.dumps(body)
    conn.request(method, "/v1.41" + path, body=data,
                 headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, (json.loads(raw) if raw.strip() else None)


def in_own_netns(pid: int) -> bool:
    """Whether ``pid`` (an ``unshare -n``) has left our network namespace."""
    return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def unshared(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes, each in a network namespace of its own once this returns."""
    procs = [subprocess.Popen(["unshare", "-n", "sleep", "120"]) for _ in range(count)]
    try:
        for p in procs:
            wait_for(lambda p=p: in_own_netns(p.pid), 10, f"unshare -n (pid {p.pid}) in a namespace of its own")
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    return procs


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def delete_link(name: str) -> None:
    """Delete a host link through pyroute2 (in a worker thread: its sync API runs its own loop)."""
    def delete() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.link("del", ifname=name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(delete).result()


class NetDaemon:
    """Starts (and restarts) one daemon on one root; checks for leftovers at the end."""

    def __init__(self, factory: Callable[..., Daemon]) -> None:
        self.factory = factory
        self.pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
        self.d = self.start()
        self.owner = owner_of(self.d.root)

    def start(self) -> Daemon:
        self.d = self.factory("net", config={"default-address-pools": f"{self.pool}:24", "live-restore": False})
        return self.d

    def bridge_of(self, net_id: str) -> str:
        return bridge_names.bridge_name(self.owner, net_id)

    def finish(self) -> None:
        builtin = self.d.docker("network", "inspect", "bridge", "--format", "{{.Id}}").stdout.strip()
        assert link_exists(self.bridge_of(builtin))
        assert self.d.stop() == 0, self.d.log[-3000:]
        # a stopped daemon takes down the networks no endpoint uses, the default bridge too
        assert sdk_net.leftovers(self.owner) == []


@pytest.fixture(scope="module")
def shared_netd(tmp_path_factory: pytest.TempPathFactory,
                start_dockyardd: Callable[..., Daemon]) -> Iterator[NetDaemon]:
    """One daemon for the tests that do not restart it (each leaves only the built-ins)."""
    root = tmp_path_factory.mktemp("netd")
    started: list[Daemon] = []

    def factory(name: str, config: dict) -> Daemon:
        started.append(start_dockyardd(root / name, config=config))
        return started[-1]

    nd = NetDaemon(factory)
    try:
        yield nd
        nd.finish()
    finally:
        for d in started:
            d.stop()


@pytest.fixture
def netd(shared_netd: NetDaemon) -> Iterator[NetDaemon]:
    """The shared daemon; after each test only the built-in networks (and the default bridge,
    with the daemon's nft table) may be left."""
    yield shared_netd
    d = shared_netd.d
    names = sorted(d.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert names == ["bridge", "host", "none"], names
    assert d.docker("ps", "-aq").stdout.split() == []
    builtin = d.docker("network", "inspect", "bridge", "--format", "{{.Id}}").stdout.strip()
    allowed = {f"link {shared_netd.bridge_of(builtin)}", f"nft table ip dockyard-{shared_netd.owner}"}
    assert set(sdk_net.leftovers(shared_netd.owner)) <= allowed


@pytest.fixture
def own_netd(dockyardd_factory: Callable[..., Daemon]) -> Iterator[NetDaemon]:
    """A daemon of the test's own (for kill -9 and restarts)."""
    nd = NetDaemon(dockyardd_factory)
    yield nd
    nd.finish()


# ------------------------------------------------------------------------------ CLI
def test_cli_create_ls_inspect_rm(netd: NetDaemon) -> None:
    d = netd.d
    ls = d.docker("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(line.split()[1] for line in ls[1:]) == ["bridge", "host", "none"]
    net_id = d.docker("network", "create", "app").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", net_id)
    assert link_exists(netd.bridge_of(net_id))
    rows = [line.split() for line in d.docker("network", "ls").stdout.splitlines()[1:]]
    assert [net_id[:12], "app", "bridge", "local"] in rows
    (info,) = json.loads(d.docker("network", "inspect", "app").stdout)
    assert info["Id"] == net_id and info["Name"] == "app" and info["Driver"] == "bridge"
    assert info["Scope"] == "local" and info["Containers"] == {} and info["Internal"] is False
    subnet = info["IPAM"]["Config"][0]["Subnet"]
    import ipaddress

    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(netd.pool))
    assert info["IPAM"]["Driver"] == "default" and info["IPAM"]["Config"][0]["Gateway"]
    # by ID prefix too
    assert d.docker("network", "inspect", net_id[:8], "--format", "{{.Name}}").stdout.strip() == "app"
    dup = d.docker("network", "create", "app", check=False)
    assert dup.returncode == 1 and "network with name app already exists" in dup.stderr
    assert api(d, "POST", "/networks/create", {"Name": "app", "CheckDuplicate": True})[0] == 409
    pre = d.docker("network", "create", "host", check=False)
    assert pre.returncode == 1 and "predefined host network" in pre.stderr
    assert api(d, "POST", "/networks/create", {"Name": "bridge"})[0] == 403
    assert d.docker("network", "rm", "app").stdout.strip() == "app"
    assert not link_exists(netd.bridge_of(net_id))
    missing = d.docker("network", "inspect", "app", check=False)
    assert missing.returncode == 1
    assert api(d, "GET", "/networks/app") == (404, {"message": "network app not found"})
    assert d.docker("network", "rm", "bridge", check=False).returncode == 1


def test_cli_create_options(netd: NetDaemon) -> None:
    d = netd.d
    subnet = sdk_net.free_test_subnet("10.213.0.0/17", avoid=(netd.pool,))
    base = subnet.rsplit(".", 1)[0]
    net_id = d.docker("network", "create", "--subnet", subnet, "--gateway", f"{base}.254",
                      "--ip-range", f"{base}.128/25", "--internal", "--label", "team=a", "--label", "x",
                      "--opt", "com.docker.network.driver.mtu=1400", "opts").stdout.strip()
    (info,) = json.loads(d.docker("network", "inspect", "opts").stdout)
    assert info["IPAM"]["Config"] == [{"Subnet": subnet, "IPRange": f"{base}.128/25", "Gateway": f"{base}.254"}]
    assert info["Internal"] is True and info["Labels"] == {"team": "a", "x": ""}
    assert info["Options"] == {"com.docker.network.driver.mtu": "1400"}
    bridge = netd.bridge_of(net_id)
    assert Path(f"/sys/class/net/{bridge}/mtu").read_text().strip() == "1400"
    # filters, in the CLI's map form
    assert d.docker("network", "ls", "-q", "--filter", "label=team=a").stdout.split() == [net_id[:12]]
    assert d.docker("network", "ls", "-q", "--filter", "label=team=b").stdout.split() == []
    assert d.docker("network", "ls", "--format", "{{.Name}}", "--filter", "type=custom").stdout.split() == ["opts"]
    assert sorted(d.docker("network", "ls", "--format", "{{.Name}}", "--filter", "type=builtin").stdout.split()) \
        == ["bridge", "host", "none"]
    assert d.docker("network", "ls", "--format", "{{.Name}}", "--filter", "driver=null").stdout.split() == ["none"]
    assert d.docker("network", "ls", "--format", "{{.Name}}", "--filter", "dangling=true").stdout.split() == ["opts"]
    # the subnet is taken; an unknown bridge option is refused and leaves nothing
    res = d.docker("network", "create", "--subnet", subnet, "again", check=False)
    assert res.returncode == 1 and "overlaps" in res.stderr
    res = d.docker("network", "create", "--opt", "com.example.nope=1", "badopt", check=False)
    assert res.returncode == 1 and "unknown option" in res.stderr
    assert "badopt" not in d.docker("network", "ls").stdout
    d.docker("network", "rm", "opts")
    assert not link_exists(bridge)


def test_cli_prune_and_events(netd: NetDaemon) -> None:
    d = netd.d
    since = str(int(time.time()) - 1)
    a = d.docker("network", "create", "--label", "gone=1", "pa").stdout.strip()
    d.docker("network", "create", "pb")
    out = d.docker("network", "prune", "-f", "--filter", "label=gone").stdout
    assert "pa" in out.split() and "pb" not in out.split()
    out = d.docker("network", "prune", "-f", "--filter", "until=1h").stdout
    assert "pb" not in out.split()  # created just now
    out = d.docker("network", "prune", "-f").stdout
    assert out.split() == ["Deleted", "Networks:", "pb"]
    assert sorted(d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()) == ["bridge", "host", "none"]
    events = d.past_events(since, "type=network")
    lines = [ln for ln in events.splitlines() if " network " in ln]
    assert any(f"network create {a}" in ln and "name=pa" in ln and "type=bridge" in ln for ln in lines), events
    assert any(f"network destroy {a}" in ln for ln in lines), events
    status, body = api(d, "POST", "/networks/prune")
    assert status == 200 and body == {"NetworksDeleted": []}


def test_compose_style_create_body(netd: NetDaemon) -> None:
    d = netd.d
    labels = {"com.docker.compose.project": "capproj", "com.docker.compose.network": "capnet"}
    status, body = api(d, "POST", "/networks/create",
                       {"Name": "capproj_capnet", "CheckDuplicate": True, "Labels": labels, "Attachable": True})
    assert status == 201 and body["Warning"] == "" and len(body["Id"]) == 64
    status, info = api(d, "GET", "/networks/capproj_capnet")
    assert status == 200 and info["Driver"] == "bridge" and info["Attachable"] is True and info["Labels"] == labels
    flt = json.dumps({"label": ["com.docker.compose.project=capproj", "com.docker.compose.network=capnet"]})
    status, found = api(d, "GET", "/networks?filters=" + flt.replace(" ", ""))
    assert status == 200 and [n["Name"] for n in found] == ["capproj_capnet"]
    assert api(d, "POST", "/networks/capproj_capnet/connect", {"Container": "nosuch"})[0] == 404
    assert api(d, "POST", "/networks/nosuchnet/connect", {"Container": "nosuch"})[0] == 404
    assert api(d, "POST", "/networks/capproj_capnet/disconnect", {"Container": "nosuch"})[0] == 404
    assert api(d, "DELETE", "/networks/capproj_capnet") == (204, None)
    assert api(d, "DELETE", "/networks/capproj_capnet")[0] == 404


def test_dockyard_network_cli(netd: NetDaemon) -> None:
    d = netd.d
    subnet = sdk_net.free_test_subnet("10.213.0.0/17", avoid=(netd.pool,))
    net_id = d.dockyard("network", "create", "--subnet", subnet, "--label", "via=dockyard", "dyn").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", net_id)
    rows = [r.split() for r in d.dockyard("network", "ls").stdout.splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"] and [net_id[:12], "dyn", "bridge", "local"] in rows
    assert d.dockyard("network", "ls", "-q", "-f", "label=via=dockyard").stdout.split() == [net_id[:12]]
    (info,) = json.loads(d.dockyard("network", "inspect", "dyn").stdout)
    assert info["Id"] == net_id and info["IPAM"]["Config"][0]["Subnet"] == subnet
    dup = d.dockyard("network", "create", "dyn", check=False)
    assert dup.returncode == 1 and "network with name dyn already exists" in dup.stderr
    missing = d.dockyard("network", "inspect", "nope", check=False)
    assert missing.returncode == 1 and "network nope not found" in missing.stderr
    assert d.dockyard("network", "rm", "dyn").stdout.split() == ["dyn"]
    d.dockyard("network", "create", "dyn2")
    assert d.dockyard("network", "prune", "-f").stdout.split() == ["Deleted", "Networks:", "dyn2"]


# ------------------------------------------------------------------------------ docker-py
def test_docker_py_networks(netd: NetDaemon) -> None:
    docker = pytest.importorskip("docker", reason="docker-py is not installed")
    from docker.types import IPAMConfig, IPAMPool
    client = docker.DockerClient(base_url=netd.d.host, version="1.41")
    try:
        subnet = sdk_net.free_test_subnet("10.213.0.0/17", avoid=(netd.pool,))
        net = client.networks.create("pynet", driver="bridge", labels={"py": "1"},
                                     ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))
        assert net.name == "pynet" and net.attrs["IPAM"]["Config"][0]["Subnet"] == subnet
        assert [n.id for n in client.networks.list(names=["pynet"])] == [net.id]
        assert [n.name for n in client.networks.list(filters={"label": ["py=1"]})] == ["pynet"]
        assert client.networks.get(net.id[:12]).name == "pynet"
        with pytest.raises(docker.errors.APIError) as exc:
            client.networks.create("pynet")
        assert exc.value.status_code == 409
        with pytest.raises(docker.errors.NotFound):
            net.connect("no-such-container")
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("nope")
        net.remove()
        client.networks.create("pyprune")
        assert client.networks.prune() == {"NetworksDeleted": ["pyprune"]}
    finally:
        client.close()


# ------------------------------------------------------------------------------ restart
def test_kill_9_and_restart_keeps_networks_and_bridges(own_netd: NetDaemon) -> None:
    netd = own_netd
    d = netd.d
    keep = d.docker("network", "create", "--label", "k=1", "keep").stdout.strip()
    lost = d.docker("network", "create", "lost").stdout.strip()
    builtin = d.docker("network", "inspect", "bridge", "--format", "{{.Id}}").stdout.strip()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    assert link_exists(netd.bridge_of(keep)) and link_exists(netd.bridge_of(lost))
    # a bridge vanishes while the daemon is down: the restart puts it back
    delete_link(netd.bridge_of(lost))
    d = netd.start()
    names = sorted(d.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert names == ["bridge", "host", "keep", "lost", "none"]
    assert d.docker("network", "inspect", "bridge", "--format", "{{.Id}}").stdout.strip() == builtin
    assert d.docker("network", "inspect", "keep", "--format", "{{.Labels}}").stdout.strip() == "map[k:1]"
    assert link_exists(netd.bridge_of(keep)) and link_exists(netd.bridge_of(lost))
    d.docker("network", "rm", "keep", "lost")
    assert not link_exists(netd.bridge_of(keep)) and not link_exists(netd.bridge_of(lost))


# ------------------------------------------------------------------------------ connect
def _fake_running_container(d: Daemon, name: str, pid: int) -> str:
    """Store a running container record whose process is ``pid`` (a test-made namespace)."""
    from dockyard.model import Container, ContainerConfig, ContainerState, ContainerStatus, HostConfig, new_id
    from dockyard.store import Store

    store = Store(d.root / "data" / "state.db")
    try:
        c = Container(id=new_id(), name=name, image_id="sha256:" + "0" * 64, config=ContainerConfig(image="none"),
                      host_config=HostConfig(), state=ContainerState(status=ContainerStatus.RUNNING, pid=pid))
        with store.transaction() as tx:
            tx.put(c)
    finally:
        store.close()
    return c.id


def _forget_containers(d: Daemon, ids: list[str]) -> None:
    """Drop the stand-in records again (the container service never ran them)."""
    from dockyard.model import Container
    from dockyard.store import Store

    store = Store(d.root / "data" / "state.db")
    try:
        with store.transaction() as tx:
            for cid in ids:
                tx.delete(Container, cid)
    finally:
        store.close()


def _dns(netns_path: str, name: str) -> list[str]:
    from dnslib import QTYPE, DNSRecord

    sock = sdk_net.socket_in_netns(netns_path, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(3)
        sock.sendto(DNSRecord.question(name).pack(), ("127.0.0.11", 53))
        reply = DNSRecord.parse(sock.recv(4096))
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def test_connect_disconnect_running_processes(netd: NetDaemon) -> None:
    """Connect attaches a running container through /proc/<pid>/ns/net: two processes in
    namespaces of their own, recorded as running containers, stand in for real ones."""
    d = netd.d
    procs = unshared(2)
    ids: list[str] = []
    try:
        ids += [_fake_running_container(d, f"box{i}", p.pid) for i, p in enumerate(procs)]
        net_id = d.docker("network", "create", "app").stdout.strip()
        d.docker("network", "connect", "--alias", "first", "app", "box0")
        d.docker("network", "connect", "app", ids[1][:12])
        again = d.docker("network", "connect", "app", "box0", check=False)
        assert again.returncode == 1 and "already exists" in again.stderr
        (info,) = json.loads(d.docker("network", "inspect", "app").stdout)
        assert set(info["Containers"]) == set(ids)
        addr0 = info["Containers"][ids[0]]["IPv4Address"].split("/")[0]
        addr1 = info["Containers"][ids[1]]["IPv4Address"].split("/")[0]
        assert addr0 != addr1 and info["Containers"][ids[0]]["Name"] == "box0"
        # the peers resolve each other by name, alias and short ID through 127.0.0.11
        ns0, ns1 = (f"/proc/{p.pid}/ns/net" for p in procs)
        assert _dns(ns1, "box0") == [addr0]
        assert _dns(ns1, "first") == [addr0]
        assert _dns(ns0, ids[1][:12]) == [addr1]
        status, body = api(d, "DELETE", "/networks/app")
        assert status == 403 and "has active endpoints" in body["message"]
        alias = api(d, "POST", "/networks/bridge/connect", {"Container": "box0", "EndpointConfig": {"Aliases": ["a"]}})
        assert alias[0] == 400 and "network-scoped alias" in alias[1]["message"]
        d.docker("network", "disconnect", "app", "box0")
        status, body = api(d, "POST", "/networks/app/disconnect", {"Container": "box0"})
        assert status == 500 and "is not connected to network app" in body["message"]
        d.docker("network", "disconnect", "app", "box1")
        (info,) = json.loads(d.docker("network", "inspect", "app").stdout)
        assert info["Containers"] == {}
        actions = re.findall(rf"network (connect|disconnect) {net_id} \(container=([0-9a-f]+), name=app, type=bridge\)",
                             d.past_events("0", "type=network"))
        assert actions == [("connect", ids[0]), ("connect", ids[1]), ("disconnect", ids[0]),
                           ("disconnect", ids[1])]
        d.docker("network", "rm", "app")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        _forget_containers(d, ids)


def test_cni_driver_through_the_docker_cli(netd: NetDaemon) -> None:
    """``docker network create -d cni``: the CNI adapter behind the same API."""
    pytest.importorskip("dockyard_network_cni")
    d = netd.d
    net_id = d.docker("network", "create", "-d", "cni", "--label", "impl=cni", "cninet").stdout.strip()
    (info,) = json.loads(d.docker("network", "inspect", "cninet").stdout)
    assert info["Driver"] == "cni" and info["Labels"] == {"impl": "cni"}
    (proc,) = unshared(1)
    cid = ""
    try:
        cid = _fake_running_container(d, "cnibox", proc.pid)
        d.docker("network", "connect", "cninet", "cnibox")
        (info,) = json.loads(d.docker("network", "inspect", "cninet").stdout)
        import ipaddress

        addr = ipaddress.ip_interface(info["Containers"][cid]["IPv4Address"])
        assert addr.network == ipaddress.ip_network(info["IPAM"]["Config"][0]["Subnet"])
        assert d.docker("network", "rm", "cninet", check=False).returncode == 1
        d.docker("network", "disconnect", "cninet", "cnibox")
    finally:
        proc.kill()
        proc.wait()
        if cid:
            _forget_containers(d, [cid])
    d.docker("network", "rm", "cninet")
    assert not link_exists(f"{netd.owner}c{net_id[:6]}")
    bad = d.docker("network", "create", "-d", "nosuchdriver", "x", check=False)
    assert bad.returncode == 1 and "dockyard-network-nosuchdriver" in bad.stderr


# ------------------------------------------------------------------------------ real containers
def test_real_containers_resolve_peers_on_their_networks_only(netd: NetDaemon) -> None:
    """busybox containers on user networks: names and aliases resolve through 127.0.0.11 on the
    container's own networks only; connect/disconnect at run time change that. ``--dns
    127.0.0.1`` makes the resolver forward unknown names to the host's loopback (nothing leaves
    the host)."""
    if shutil.which("conmon") is None:
        pytest.skip("needs conmon")
    d = netd.d
    d.dockyard("image", "bootstrap", "busybox")
    d.docker("network", "create", "app")
    d.docker("network", "create", "other")
    dns = ["--dns", "127.0.0.1"]
    try:
        d.docker("run", "-d", "--name", "web", "--network", "app", "--network-alias", "www", *dns,
                 "busybox", "sleep", "300")
        web_ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web").stdout.strip()
        assert web_ip
        for name in ("web", "www"):
            out = d.docker("run", "--rm", "--network", "app", *dns, "busybox", "nslookup", name).stdout
            assert web_ip in out, out
        ping = d.docker("run", "--rm", "--network", "app", *dns, "busybox", "ping", "-c", "1", "-W", "3", "www")
        assert "1 packets received" in ping.stdout
        lone = d.docker("run", "--rm", "--network", "other", *dns, "busybox", "nslookup", "web", check=False)
        assert lone.returncode != 0 and web_ip not in lone.stdout
        rm = d.docker("network", "rm", "app", check=False)
        assert rm.returncode == 1 and "has active endpoints" in rm.stderr
        # connected at run time to "other" as well: now its peers there resolve it
        d.docker("network", "connect", "--alias", "w2", "other", "web")
        other_ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.other.IPAddress}}", "web").stdout.strip()
        out = d.docker("run", "--rm", "--network", "other", *dns, "busybox", "nslookup", "w2").stdout
        assert other_ip and other_ip in out, out
        d.docker("network", "disconnect", "other", "web")
        gone = d.docker("run", "--rm", "--network", "other", *dns, "busybox", "nslookup", "w2", check=False)
        assert gone.returncode != 0
    finally:
        d.docker("rm", "-f", "web", check=False)
    d.docker("network", "rm", "app", "other")


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def test_kill_9_with_running_containers_keeps_dns_and_ports(own_netd: NetDaemon) -> None:
    """A daemon killed with -9 while containers run: after the restart their names still
    resolve (the resolver is re-attached in their namespaces) and the published port answers."""
    if shutil.which("conmon") is None:
        pytest.skip("needs conmon")
    netd = own_netd
    d = netd.d
    d.dockyard("image", "bootstrap", "busybox")
    d.docker("network", "create", "app")
    port = _free_local_port()
    dns = ["--dns", "127.0.0.1"]
    try:
        d.docker("run", "-d", "--name", "web", "--network", "app", "--network-alias", "www", *dns,
                 "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80")
        d.docker("run", "-d", "--name", "client", "--network", "app", *dns, "busybox", "sleep", "300")
        web_ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web").stdout.strip()
        assert web_ip in d.docker("exec", "client", "nslookup", "www").stdout
        assert _http_status(port) in (200, 404)  # busybox httpd answers (no index file: 404)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        d = netd.start()
        assert d.docker("inspect", "-f", "{{.State.Running}}", "web").stdout.strip() == "true"
        out = d.docker("exec", "client", "nslookup", "www").stdout
        assert web_ip in out, out
        assert _http_status(port) in (200, 404)
    finally:
        d.docker("rm", "-f", "web", "client", check=False)
    d.docker("network", "rm", "app")
