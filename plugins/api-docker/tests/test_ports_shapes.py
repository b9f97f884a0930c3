"""Which ports a container reports, by state: as dockerd, only a running (or paused) container has
any. dockerd binds them at start and drops them at exit (releaseNetwork sets
``NetworkSettings.Ports`` to nil), so inspect says ``{}`` and the list ``[]`` for a created or
exited container; docker-compose v1 prints its ``ps`` Ports column from that inspect field, and
``docker ps -a`` from the list."""

from __future__ import annotations

import pytest

from dockyard.model import Container, ContainerConfig, ContainerStatus, HostConfig, PortBinding
from dockyard.specs.network import PortMapping
from dockyard_api_docker.shapes import container_inspect, container_summary


def web() -> Container:
    return Container(id="c" * 64, name="web", image_id="sha256:" + "d" * 64,
                     config=ContainerConfig(image="busybox", cmd=["httpd"], exposed_ports=["8080/tcp", "81/tcp"]),
                     host_config=HostConfig(port_bindings={"8080/tcp": [PortBinding("127.0.0.1", "18090")]}))


@pytest.mark.parametrize("status", [ContainerStatus.RUNNING, ContainerStatus.PAUSED])
def test_a_live_container_reports_its_ports(status: ContainerStatus) -> None:
    c = web()
    c.state.status = status
    bound = [PortMapping(container_port=8080, host_ip="127.0.0.1", host_port=18090)]
    assert container_inspect(c, bound)["NetworkSettings"]["Ports"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18090"}], "81/tcp": None}
    assert sorted(container_summary(c, c.image_id, bound)["Ports"], key=lambda p: p["PrivatePort"]) == [
        {"PrivatePort": 81, "Type": "tcp"},
        {"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 18090, "Type": "tcp"}]


@pytest.mark.parametrize("status", [ContainerStatus.CREATED, ContainerStatus.EXITED])
def test_a_container_that_is_not_running_reports_none(status: ContainerStatus) -> None:
    c = web()
    c.state.status = status
    assert container_inspect(c, [])["NetworkSettings"]["Ports"] == {}
    assert container_summary(c, c.image_id, [PortMapping(8080, host_ip="127.0.0.1", host_port=1)])["Ports"] == []
    # What it was asked for is still there, where dockerd keeps it.
    data = container_inspect(c, [])
    assert data["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18090"}]}
    assert data["Config"]["ExposedPorts"] == {"8080/tcp": {}, "81/tcp": {}}


def test_the_list_shows_the_ports_actually_bound() -> None:
    """``-p 127.0.0.1::80`` asks for no host port; ``docker ps`` must show the one chosen, and a
    port published on every address appears for 0.0.0.0 and :: (dockerd's two entries)."""
    c = web()
    c.host_config.port_bindings = {"8080/tcp": [PortBinding("127.0.0.1", "")], "81/tcp": [PortBinding("", "")]}
    c.state.status = ContainerStatus.RUNNING
    bound = [PortMapping(8080, host_ip="127.0.0.1", host_port=52110), PortMapping(81, host_port=52111)]
    assert sorted(container_summary(c, c.image_id, bound)["Ports"], key=lambda p: (p["PrivatePort"], p["IP"])) == [
        {"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 52111, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 81, "PublicPort": 52111, "Type": "tcp"},
        {"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 52110, "Type": "tcp"}]
