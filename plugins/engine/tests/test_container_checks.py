"""Create-time checks and legacy links without a daemon (issue 21 items 1, 4, 14, 16): the
messages are dockerd's, so clients show users the same text."""

from __future__ import annotations

import os

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    DeviceMapping,
    EndpointSettings,
    HostConfig,
    LogConfig,
    Mount,
)
from dockyard.services.containers import ContainerCreate
from dockyard_engine import links
from dockyard_engine.container_checks import check_create, host_cpus


def create(**host: object) -> ContainerCreate:
    env = host.pop("env", [])
    return ContainerCreate(config=ContainerConfig(image="busybox", env=list(env)), host_config=HostConfig(**host))


@pytest.mark.parametrize("host, message", [
    ({"memory": 4 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"memory": -1}, "Minimum memory limit allowed is 6MB"),
    ({"memory": 64 << 20, "memory_swap": 32 << 20}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"memory_swap": -2}, "valid memory swap values are -1"),
    ({"nano_cpus": -1}, "Range of CPUs is from 0.01 to"),
    ({"oom_score_adj": 1001}, "range for oom score adj is [-1000, 1000]"),
    ({"pid_mode": "nope"}, "invalid PID mode: nope"),
    ({"uts_mode": "container:x"}, "invalid UTS mode: container:x"),
    ({"ipc_mode": "weird"}, "invalid IPC mode: weird"),
    ({"isolation": "hyperv"}, "invalid isolation 'hyperv' on linux"),
    ({"sysctls": {"kernel.hostname": "x"}}, "sysctl 'kernel.hostname' is not whitelisted"),
    ({"sysctls": {"net.core.somaxconn": "1"}, "network_mode": "host"}, "not allowed in host network namespace"),
    ({"sysctls": {"kernel.shmmax": "1"}, "ipc_mode": "host"}, "not allowed while the IPC namespace is shared"),
    ({"devices": [DeviceMapping("/dev/p1-none")]}, "error gathering device information"),
    ({"device_cgroup_rules": ["x 1:2 rwm"]}, "invalid device cgroup rule format: 'x 1:2 rwm'"),
    ({"log_config": LogConfig(type="nope")}, "logger: no log driver named 'nope' is registered"),
    ({"log_config": LogConfig(config={"max-sise": "1m"})}, "unknown log opt 'max-sise' for json-file log driver"),
    ({"env": ["A=b\x00c"]}, "NUL byte"),
    ({"mounts": [Mount(type="bind", source="/p1/no/such/dir", destination="/x")]},
     'invalid mount config for type "bind": bind source path does not exist: /p1/no/such/dir'),
])
def test_refused_with_dockerds_message(host: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_create(create(**host))
    assert message in str(info.value)


def test_cpus_beyond_the_host() -> None:
    n = host_cpus()
    with pytest.raises(InvalidArgument, match=rf"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs"):
        check_create(create(nano_cpus=(n + 1) * 10**9))
    check_create(create(nano_cpus=n * 10**9, memory=6 << 20, memory_swap=-1, sysctls={"net.ipv4.ip_forward": "1"},
                        devices=[DeviceMapping("/dev/null")], log_config=LogConfig(config={"max-size": "1m"})))


def container(name: str, *, env: tuple[str, ...] = (), ports: tuple[str, ...] = (), ip: str = "",
              links_: tuple[str, ...] = (), running: bool = True) -> Container:
    c = Container(id=name * 8, name=name, image_id="sha256:1",
                  config=ContainerConfig(env=list(env), exposed_ports=list(ports), hostname=name[:3]),
                  host_config=HostConfig(links=list(links_)))
    if ip:
        c.networks["bridge"] = EndpointSettings(ipv4_address=ip)
    if running:
        c.state.status = c.state.status.RUNNING
    return c


def test_link_environment_and_hosts_line() -> None:
    db = container("db", env=("PATH=/bin", "PW=x", "HOME=/root"), ports=("80/udp", "5432/tcp", "80/tcp"),
                   ip="172.17.0.5")
    web = container("web", links_=("/db:/web/the-db",))
    env = links.environment(web, "the-db", db)
    assert env[0] == "THE_DB_PORT=tcp://172.17.0.5:80"
    assert "THE_DB_PORT_5432_TCP_ADDR=172.17.0.5" in env and "THE_DB_PORT_80_UDP_PROTO=udp" in env
    assert env[-2:] == ["THE_DB_NAME=/web/the-db", "THE_DB_ENV_PW=x"]
    assert links.hosts_line("the-db", db) == "172.17.0.5\tthe-db db"


def test_links_resolve_and_removal() -> None:
    known = {"db": container("db"), "host1": container("host1")}
    known["host1"].host_config.network_mode = "host"

    def get(ref: str) -> Container:
        if ref not in known:
            raise NotFound(f"No such container: {ref}")
        return known[ref]

    assert links.resolve(["db:alias", "db"], "web", get) == ["/db:/web/alias", "/db:/web/db"]
    with pytest.raises(InvalidArgument, match="could not get container for nope"):
        links.resolve(["nope:x"], "web", get)
    with pytest.raises(InvalidArgument, match="host type networking can't be used with links"):
        links.resolve(["host1:h"], "web", get)
    web = container("web", links_=("/db:/web/alias",))
    known["db"].state.status = known["db"].state.status.EXITED
    with pytest.raises(Conflict, match="Cannot link to a non running container: /db AS /web/alias"):
        links.running_targets(web, get)
    assert links.without(web, "/web/alias") == []
    with pytest.raises(NotFound):
        links.without(web, "/web/other")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_a_device_that_exists_passes() -> None:
    check_create(create(devices=[DeviceMapping("/dev/null", "/dev/x", "rw")]))
