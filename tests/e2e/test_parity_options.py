"""Docker parity that real clients show (issue 21, items 1-5, 14, 16 and 17): what the docker
CLI 28 and docker-py 7 found where dockyardd differed from dockerd. One daemon serves the module (two more start and stop in the
last test, for the socket group and the TCP warning); at the end nothing it made may be left.

Where dockerd's behaviour is ambiguous or has changed, the test says which one it follows.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon

docker = pytest.importorskip("docker")
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]


@pytest.fixture(scope="module")
def d(e2e_daemon: Callable[..., AbstractContextManager[Daemon]]) -> Iterator[Daemon]:
    with e2e_daemon("dyq") as daemon:
        yield daemon


def names(d: Daemon) -> set[str]:
    return set(d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())


def refused(d: Daemon, *args: str) -> str:
    res = d.docker(*args, check=False)
    assert res.returncode != 0, f"docker {' '.join(args)} was accepted"
    return res.stderr


def post(d: Daemon, path: str, body: bytes) -> tuple[int, dict]:
    """A raw POST on the daemon's socket (a body no client library would build)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.socket))
    try:
        s.sendall(b"POST /v1.41" + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    finally:
        s.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        payload = payload.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(payload or b"{}")


PYTHON_ERROR = re.compile(r"\b[A-Z][a-zA-Z]*(Error|Exception)\b|Traceback")


# ------------------------------------------------------------------------------ item 1
def test_create_validation_answers_400_and_creates_nothing(d: Daemon, client: docker.DockerClient) -> None:
    before = names(d)
    assert "Minimum memory limit allowed is 6MB" in refused(d, "create", "-m", "4m", "busybox")
    cpus = len(os.sched_getaffinity(0))
    assert (f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            in refused(d, "create", "--cpus", str(cpus + 1), "busybox"))
    assert "logger: no log driver named 'nope' is registered" in refused(d, "create", "--log-driver", "nope", "busybox")
    cid = d.docker("create", "busybox", "true").stdout.strip()  # docker update: the same checks
    assert "Range of CPUs is from 0.01" in refused(d, "update", "--cpus", str(cpus + 1), cid)
    d.docker("rm", cid)
    with pytest.raises(docker.errors.APIError) as info:  # the CLI checks references itself; docker-py does not
        client.api.create_container("Busy:box", "true")
    assert info.value.status_code == 400 and "invalid reference format" in str(info.value)
    with pytest.raises(docker.errors.APIError) as info:  # negative memory: the same message as dockerd
        client.api.create_container("busybox", "true", host_config=client.api.create_host_config(mem_limit=-1))
    assert info.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(info.value)
    # a JSON value of the wrong type anywhere in the body: 400 worded as Go's decoder, never a 500
    # (the CLI's own create body, each field in turn given a value of every other JSON type)
    base = {"Image": "busybox", "Cmd": ["true"], "Env": ["A=1"], "Labels": {"a": "b"}, "Tty": False,
            "ExposedPorts": {"80/tcp": {}}, "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": {"Binds": ["/tmp:/h"], "Memory": 0, "PortBindings": {"80/tcp": [{"HostPort": ""}]},
                           "RestartPolicy": {"Name": "no"}, "LogConfig": {"Type": "", "Config": {}},
                           "Mounts": [{"Type": "tmpfs", "Target": "/t"}], "Ulimits": [{"Name": "nofile"}],
                           "CapAdd": ["NET_ADMIN"], "Devices": [], "Tmpfs": {}, "Sysctls": {}},
            "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": [], "IPAMConfig": {}}}}}
    statuses = set()
    paths: list[tuple[str, ...]] = []

    def walk(obj: dict, at: tuple[str, ...]) -> None:
        for k, v in obj.items():
            paths.append((*at, k))
            if isinstance(v, dict) and v:
                walk(v, (*at, k))
    walk(base, ())
    for path in paths:
        for wrong in ([["x"]], {"x": 1}, "x", 1.5, True):
            body = json.loads(json.dumps(base))
            node = body
            for k in path[:-1]:
                node = node[k]
            if type(node[path[-1]]) is type(wrong):
                continue
            node[path[-1]] = wrong
            status, answer = post(d, "/containers/create", json.dumps(body).encode())
            statuses.add(status)
            assert status != 500 and not PYTHON_ERROR.search(answer.get("message", "")), (path, wrong, answer)
            if status == 201:
                client.api.remove_container(answer["Id"], force=True)
    assert statuses <= {201, 400, 404}, statuses
    # the other bodies a client sends (exec, commit, networks, volumes, update) and a NUL in a path
    cid = d.docker("run", "-d", "busybox", "sleep", "60").stdout.strip()
    try:
        for path, body in ((f"/containers/{cid}/exec", {"Cmd": ["true"], "Env": ["A=1"], "DetachKeys": "ctrl-p"}),
                           (f"/commit?container={cid}&repo=p1commit", {"Cmd": ["true"], "Labels": {"a": "b"}}),
                           (f"/containers/{cid}/update", {"Memory": 0, "RestartPolicy": {"Name": "no"}}),
                           ("/networks/create", {"Name": "p1fuzz", "IPAM": {"Config": [{"Subnet": ""}]}}),
                           ("/volumes/create", {"Name": "p1fuzz", "Labels": {}})):
            for key in body:
                for wrong in (1.5, ["x"], {"x": 1}, True):
                    status, answer = post(d, path, json.dumps({**body, key: wrong}).encode())
                    assert status in (200, 201, 400, 404, 409), (path, key, wrong, status, answer)
        with pytest.raises(docker.errors.APIError) as info:
            client.api.get_archive(cid, "/etc/\x00x")
        assert info.value.status_code == 400
    finally:
        d.docker("rm", "-f", cid)
        d.docker("volume", "rm", "-f", "p1fuzz", check=False)
        d.docker("network", "rm", "p1fuzz", check=False)
        d.docker("rmi", "p1commit", check=False)
    status, answer = post(d, "/containers/create", b'{"Image":["busybox"]}')
    assert (status, answer["message"]) == (400, "json: cannot unmarshal array into Go struct field "
                                                "ContainerConfigWrapper.Image of type string")
    assert names(d) == before


# ------------------------------------------------------------------------------ item 2
def test_mounts(d: Daemon, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    err = refused(d, "run", "--rm", "--mount", f"type=bind,source={missing},target=/x", "busybox", "true")
    assert f'invalid mount config for type "bind": bind source path does not exist: {missing}' in err
    assert not missing.exists()
    d.docker("run", "--rm", "-v", f"{missing}:/x", "busybox", "true")  # -v still makes it (dockerd)
    assert missing.is_dir()
    out = d.docker("run", "--rm", "--read-only", "--tmpfs", "/x", "busybox",
                   "sh", "-c", "touch /x/f && echo ok; touch /y 2>/dev/null || echo ro").stdout
    assert out.split() == ["ok", "ro"]
    cid = d.docker("create", "-v", f"{tmp_path}:/h", "--mount", f"type=bind,source={tmp_path},target=/m",
                   "busybox", "true").stdout.strip()
    mounts = json.loads(d.docker("inspect", "--format", "{{json .Mounts}}", cid).stdout)
    assert sorted((m["Destination"], m["Propagation"]) for m in mounts) == [("/h", "rprivate"), ("/m", "rprivate")]
    d.docker("rm", cid)


# ------------------------------------------------------------------------------ item 3
def test_networking(d: Daemon, client: docker.DockerClient) -> None:
    net = f"p1net-{uuid.uuid4().hex[:6]}"
    d.docker("network", "create", net)
    try:
        d.docker("run", "-d", "--name", "p1-peer", "--network", net, "busybox", "sleep", "60")
        d.docker("run", "-d", "--name", "p1-late", "busybox", "sleep", "60")  # on the default bridge
        d.docker("network", "connect", "--driver-opt", "com.example.k=v", net, "p1-late")
        # dockerd switches the container to the embedded DNS: names of the new network resolve
        out = d.docker("exec", "p1-late", "sh", "-c", "cat /etc/resolv.conf; nslookup p1-peer").stdout
        assert "nameserver 127.0.0.11" in out and "Address: 10.213." in out.split("p1-peer")[-1], out
        ep = json.loads(d.docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", "p1-late").stdout)[net]
        assert ep["DriverOpts"] == {"com.example.k": "v"}
        # a force-disconnect of a container that is not a member is an error (dockerd 23+)
        err = refused(d, "network", "disconnect", "-f", net, "p1-late-not")
        assert "No such container" in err
        d.docker("network", "disconnect", net, "p1-late")
        err = refused(d, "network", "disconnect", "-f", net, "p1-late")
        assert "is not connected to network" in err
    finally:
        d.docker("rm", "-f", "p1-peer", "p1-late", check=False)
        d.docker("network", "rm", net, check=False)
    # only an IPv6 pool given (dockerd < 28 adds an automatic IPv4 pool, as here) and a static IPv6
    v6 = str(ipaddress.IPv6Network(f"fd{os.urandom(1).hex()}:{os.urandom(2).hex()}:{os.urandom(2).hex()}::/64")
             .network_address)  # "fdxx:yyyy:zzzz::", compressed as every tool prints it
    d.docker("network", "create", "--ipv6", "--subnet", f"{v6}/64", "p1v6")
    try:
        d.docker("run", "-d", "--name", "p1-v6", "--network", "p1v6", "--ip6", f"{v6}99",
                 "--link-local-ip", "169.254.7.7", "busybox", "sleep", "60")
        addrs = d.docker("exec", "p1-v6", "ip", "addr", "show", "eth0").stdout
        assert f"{v6}99/64" in addrs and "169.254.7.7/16" in addrs
        ep = json.loads(d.docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", "p1-v6").stdout)["p1v6"]
        assert ep["IPAMConfig"] == {"IPv6Address": f"{v6}99", "LinkLocalIPs": ["169.254.7.7"]}
        assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == (f"{v6}99", 64, f"{v6}1")
        # a static IPv6 on a network without IPv6 would never reach the interface: refused
        other = ipaddress.IPv6Address(v6) + (1 << 64)  # the next /64
        d.docker("network", "create", "--subnet", f"{other}/64", "p1v6off")
        assert "does not have IPv6 enabled" in refused(d, "create", "--network", "p1v6off", "--ip6", f"{other + 5}",
                                                       "busybox")
    finally:
        d.docker("rm", "-f", "p1-v6", check=False)
        d.docker("network", "rm", "p1v6", "p1v6off", check=False)
    # IPAM.Options null when none were given (docker-py sends none); names dockerd accepts
    for name in ("p1 with space", "_p1", "p1:colon", "P1-ünï"):
        n = client.networks.create(name)
        try:
            assert client.api.inspect_network(n.id)["IPAM"]["Options"] is None
            assert client.networks.get(n.id).name == name
        finally:
            n.remove()


# ------------------------------------------------------------------------------ item 4
def test_legacy_links(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "p1-db", "-e", "SECRET=s3", "--expose", "5432", "busybox", "sleep", "60")
    try:
        ip = d.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "p1-db").stdout.strip()
        out = d.docker("run", "--name", "p1-web", "--link", "p1-db:dbal", "busybox",
                       "sh", "-c", "env | grep ^DBAL_ | sort; grep dbal /etc/hosts").stdout.splitlines()
        assert out[:-1] == ["DBAL_ENV_SECRET=s3", "DBAL_NAME=/p1-web/dbal", f"DBAL_PORT=tcp://{ip}:5432",
                            f"DBAL_PORT_5432_TCP=tcp://{ip}:5432", f"DBAL_PORT_5432_TCP_ADDR={ip}",
                            "DBAL_PORT_5432_TCP_PORT=5432", "DBAL_PORT_5432_TCP_PROTO=tcp"]
        assert out[-1].split()[0] == ip and out[-1].split()[1] == "dbal" and "p1-db" in out[-1]
        links = d.docker("inspect", "--format", "{{json .HostConfig.Links}}", "p1-web").stdout
        assert json.loads(links) == ["/p1-db:/p1-web/dbal"]
        d.docker("rm", "--link", "/p1-web/dbal")  # DELETE /containers/p1-web/dbal?link=1
        assert d.docker("inspect", "--format", "{{json .HostConfig.Links}}", "p1-web").stdout.strip() == "null"
        assert "p1-web" in names(d)  # only the link went
        assert "No such container" in refused(d, "rm", "--link", "/p1-web/dbal")
    finally:
        d.docker("rm", "-f", "p1-db", "p1-web", check=False)


# ------------------------------------------------------------------------------ item 5
def test_accepted_means_applied(d: Daemon, client: docker.DockerClient) -> None:
    out = d.docker("run", "--rm", "--pid", "host", "--uts", "host", "--group-add", "4242", "busybox",
                   "sh", "-c", "echo $$; hostname; id -G").stdout.split("\n")
    assert int(out[0]) > 1 and out[1] == os.uname().nodename and "4242" in out[2].split()
    # the CLI 28 sends --mac-address per endpoint, which needs API 1.44; docker-py sends the
    # legacy Config.MacAddress that API 1.41 has
    mac = "02:42:ac:11:00:99"
    assert client.containers.run("busybox", "cat /sys/class/net/eth0/address", mac_address=mac,
                                 remove=True).decode().strip() == mac
    cid = d.docker("create", "--device-cgroup-rule", "c 1:3 mr", "--isolation", "default",
                   "--volume-driver", "local", "busybox", "true").stdout.strip()
    hc = json.loads(d.docker("inspect", "--format", "{{json .HostConfig}}", cid).stdout)
    assert (hc["DeviceCgroupRules"], hc["Isolation"], hc["VolumeDriver"]) == (["c 1:3 mr"], "default", "local")
    d.docker("rm", cid)
    rt = d.docker("create", "--cpu-rt-period", "1000000", "--cpu-rt-runtime", "950", "busybox", "true", check=False)
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # cgroup v2: dockerd refuses them too
        assert "Your kernel does not support CPU real-time scheduler" in rt.stderr
    else:
        hc = json.loads(d.docker("inspect", "--format", "{{json .HostConfig}}", rt.stdout.strip()).stdout)
        assert (hc["CpuRealtimePeriod"], hc["CpuRealtimeRuntime"]) == (1000000, 950)
        d.docker("rm", rt.stdout.strip())
    for flags, field in ((["--oom-kill-disable"], "OomKillDisable"), (["--cgroup-parent", "x"], "CgroupParent"),
                         (["--blkio-weight-device", "/dev/null:100"], "BlkioWeightDevice")):
        assert f"HostConfig.{field} is not supported by dockyard" in refused(d, "create", *flags, "busybox")


# ------------------------------------------------------------------------------ item 14
def test_devices_sysctls_ipc_and_oom_score(d: Daemon, client: docker.DockerClient) -> None:
    script = ("ls -l /dev/p1null; echo x > /dev/p1null && echo written; "
              "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/self/oom_score_adj; readlink /proc/self/ns/ipc")
    out = d.docker("run", "--rm", "--device", "/dev/null:/dev/p1null:rw", "--sysctl",
                   "net.ipv4.ip_unprivileged_port_start=42", "--ipc", "host", "--oom-score-adj", "300",
                   "busybox", "sh", "-c", script).stdout.splitlines()
    assert out[0].startswith("crw") and "1,   3" in out[0] and out[1] == "written"
    assert out[2:4] == ["42", "300"] and out[4] == os.readlink("/proc/self/ns/ipc")
    with pytest.raises(docker.errors.APIError) as info:  # the CLI checks this one itself; docker-py does not
        client.api.create_container("busybox", "true", host_config=client.api.create_host_config(
            sysctls={"kernel.hostname": "x"}))
    assert info.value.status_code == 400 and "sysctl 'kernel.hostname' is not whitelisted" in str(info.value)
    assert "not allowed in host network namespace" in refused(d, "create", "--network", "host", "--sysctl",
                                                              "net.ipv4.ip_forward=1", "busybox")
    assert "error gathering device information" in refused(d, "create", "--device", "/dev/p1-none", "busybox")
    # --ipc/--pid container:<donor>: its namespaces and its /dev/shm (a shareable donor's, as dockerd)
    d.docker("run", "-d", "--name", "p1-donor", "--ipc", "shareable", "busybox", "sh", "-c",
             "echo shared > /dev/shm/f; exec sleep 60")
    try:
        out = d.docker("run", "--rm", "--ipc", "container:p1-donor", "--pid", "container:p1-donor", "busybox",
                       "sh", "-c", "cat /dev/shm/f; ps -o comm | grep -c sleep; readlink /proc/self/ns/ipc").stdout
        donor_ns = d.docker("exec", "p1-donor", "readlink", "/proc/self/ns/ipc").stdout
        assert out.split() == ["shared", "1", donor_ns.strip()]
        d.docker("run", "-d", "--name", "p1-private", "busybox", "sleep", "60")
        assert "non-shareable IPC" in refused(d, "run", "--rm", "--ipc", "container:p1-private", "busybox", "true")
    finally:
        d.docker("rm", "-f", "p1-donor", "p1-private", check=False)
    # --privileged gets the host's devices (the defaults are a dozen nodes)
    host = sorted(p for p in ("/dev/fuse", "/dev/loop-control", "/dev/kmsg", "/dev/mem", "/dev/net/tun")
                  if os.path.exists(p) and stat.S_ISCHR(os.stat(p).st_mode))
    assert host, "no host device to look for"
    out = d.docker("run", "--rm", "--privileged", "busybox", "ls", *host).stdout.split()
    assert out == host


# ------------------------------------------------------------------------------ item 16
def test_malformed_input(d: Daemon, client: docker.DockerClient) -> None:
    before = names(d)
    status, answer = post(d, "/containers/create", b"[" * 100000 + b"]" * 100000)
    assert status == 400 and not PYTHON_ERROR.search(answer["message"])
    status, answer = post(d, "/containers/create", b'{"Image":"busybox","Labels":' + b'{"a":' * 5000 + b"1"
                          + b"}" * 5001)
    assert status == 400 and not PYTHON_ERROR.search(answer["message"])
    # a NUL byte in Env: dockerd's runtime fails at exec (execve takes C strings); refused at create
    with pytest.raises(docker.errors.APIError) as info:
        client.api.create_container("busybox", "true", environment=["A=b\x00c"])
    assert info.value.status_code == 400 and "NUL" in str(info.value)
    assert "volume name is too long" in refused(d, "volume", "create", "v" * 300)
    assert names(d) == before


# ------------------------------------------------------------------------------ item 17
def test_proc_read_only_and_socket_and_tcp(d: Daemon, start_dockyardd: Callable[..., Daemon]) -> None:
    out = d.docker("run", "--rm", "busybox", "grep", "-E", " /proc/(sys|bus|fs|irq) ", "/proc/mounts").stdout
    flags = {line.split()[1]: set(line.split()[3].split(",")) for line in out.splitlines()}
    assert set(flags) == {"/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"}
    assert all({"ro", "nosuid", "nodev", "noexec"} <= f for f in flags.values()), flags
    # without a docker group and without -G the socket keeps the daemon's group (dockerd)
    if "docker" not in {g.gr_name for g in grp.getgrall()}:
        assert os.stat(d.socket).st_gid == os.getgid()
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
    # -G: the socket's group, and the exec root it sits in is traversable by that group only
    root = Path(f"/tmp/dyq-{os.urandom(3).hex()}")
    port = sdk_free_port()
    g = start_dockyardd(root, "-G", "daemon", "-H", f"tcp://127.0.0.1:{port}")
    try:
        gid = grp.getgrnam("daemon").gr_gid
        assert os.stat(g.socket).st_gid == gid and stat.S_IMODE(os.stat(g.socket).st_mode) == 0o660
        assert (root / "run").stat().st_gid == gid
        # plain TCP on loopback: served, with dockerd's warnings in the log and in docker info
        assert "Binding to IP address without --tlsverify is insecure" in g.log
        info = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{port}", "info", "--format", "{{json .Warnings}}"],
                              capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"],
                                                                               "DOCKER_CONFIG": str(root)})
        assert f"WARNING: API is accessible on http://127.0.0.1:{port} without encryption." in info.stdout
    finally:
        g.teardown()
        shutil.rmtree(root, ignore_errors=True)
    res = subprocess.run([sys.executable, "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                          "--exec-root", str(root / "run"), "-G", "p1-no-such-group",
                          "-H", f"unix://{root / 'd.sock'}"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "group p1-no-such-group not found" in res.stderr
    shutil.rmtree(root, ignore_errors=True)


def sdk_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
