"""The manager's container path end to end: the real docker CLI and docker-py against a manager
of three netns hosts (each its own dockyardd with mutual TLS) and a real etcd (``swarm_cluster``,
one per module): spread, binpack, constraints, affinities, host ports, and logs/exec/attach/
stop/rm on remote containers."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.integration, pytest.mark.e2e,
              pytest.mark.timeout(240)]

SLEEP = ["busybox", "sleep", "300"]


def names(cluster: Any, *flags: str) -> list[str]:
    out = cluster.docker("ps", "-a", "--format", "{{.Names}}", *flags).stdout.split()
    return sorted(out)


def per_node(cluster: Any) -> dict[str, int]:
    return dict(collections.Counter(n.split("/")[0] for n in names(cluster)))


def docker_with_input(cluster: Any, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(cluster.root / "docker-config")
    return subprocess.run([cli, "-H", f"unix://{cluster.manager.socket}", *args], input=data, capture_output=True,
                          env=env, timeout=60)


def clean(cluster: Any, manager: Any = None) -> None:
    ids = cluster.docker("ps", "-aq", manager=manager).stdout.split()
    if ids:
        cluster.docker("rm", "-f", *ids, manager=manager)


async def test_nine_runs_spread_three_per_node(swarm_cluster: Any) -> None:
    c = swarm_cluster
    for i in range(9):
        c.docker("run", "-d", "--name", f"s{i}", *SLEEP)
    assert per_node(c) == {"h1": 3, "h2": 3, "h3": 3}
    doc = json.loads(c.docker("inspect", "s4").stdout)[0]
    node = doc["Name"].split("/")[1]
    assert doc["Name"] == f"/{node}/s4" and doc["Node"]["Name"] == node and doc["Node"]["Addr"].endswith(":2376")
    assert doc["State"]["Running"]
    clean(c)
    assert names(c) == []


async def test_constraint_and_affinity(swarm_cluster: Any) -> None:
    c = swarm_cluster
    c.docker("run", "-d", "--name", "pinned", "-e", "constraint:node==h2", *SLEEP)
    assert names(c) == ["h2/pinned"]
    c.docker("run", "-d", "--name", "friend", "-e", "affinity:container==pinned", *SLEEP)
    assert names(c) == ["h2/friend", "h2/pinned"]
    env = json.loads(c.docker("inspect", "friend").stdout)[0]["Config"]["Env"]
    assert not any(e.startswith("affinity:") for e in env)
    refused = c.docker("run", "-d", "--name", "nowhere", "-e", "constraint:node==h9", *SLEEP, check=False)
    assert refused.returncode != 0
    assert "constraint" in refused.stderr and all(h in refused.stderr for h in ("h1", "h2", "h3")), refused.stderr
    assert names(c) == ["h2/friend", "h2/pinned"]  # nothing created
    clean(c)


async def test_host_port_8080_one_per_node_and_a_fourth_refused(swarm_cluster: Any) -> None:
    c = swarm_cluster
    for i in range(3):
        c.docker("run", "-d", "--name", f"web{i}", "-p", "8080:80", *SLEEP)
    assert per_node(c) == {"h1": 1, "h2": 1, "h3": 1}
    refused = c.docker("run", "-d", "--name", "web3", "-p", "8080:80", *SLEEP, check=False)
    assert refused.returncode != 0 and "port" in refused.stderr, refused.stderr
    assert len(names(c)) == 3
    ports = c.docker("ps", "--format", "{{.Ports}}").stdout
    assert "8080->80/tcp" in ports
    clean(c)


async def test_logs_exec_attach_stop_rm_on_remote_containers(swarm_cluster: Any) -> None:
    c = swarm_cluster
    c.docker("run", "-d", "--name", "talker", "-e", "constraint:node==h3", "busybox", "sh", "-c",
             "echo hello from talker; sleep 300")
    assert names(c) == ["h3/talker"]
    assert "hello from talker" in c.docker("logs", "talker", timeout=30).stdout
    assert c.docker("exec", "talker", "echo", "hi there").stdout == "hi there\n"
    assert c.docker("exec", "talker", "sh", "-c", "exit 3", check=False).returncode == 3
    # attach: docker run without -d attaches, starts, waits; stdin passes through with -i
    assert c.docker("run", "--rm", "busybox", "echo", "attached").stdout == "attached\n"
    cat = docker_with_input(c, b"through stdin\n", "run", "-i", "--rm", "busybox", "cat")
    assert cat.stdout == b"through stdin\n", cat.stderr
    assert "PID" in c.docker("top", "talker").stdout
    # docker cp both ways through the manager (the archive endpoints on the node)
    src = c.root / "s3-cp-in.txt"
    src.write_text("copied in\n")
    c.docker("cp", str(src), "talker:/tmp/in.txt")
    assert c.docker("exec", "talker", "cat", "/tmp/in.txt").stdout == "copied in\n"
    c.docker("cp", "talker:/tmp/in.txt", str(c.root / "s3-cp-out.txt"))
    assert (c.root / "s3-cp-out.txt").read_text() == "copied in\n"
    c.docker("rename", "talker", "talker2")
    assert names(c) == ["h3/talker2"]
    c.docker("rename", "talker2", "talker")
    c.docker("stop", "-t", "1", "talker")
    assert json.loads(c.docker("inspect", "talker").stdout)[0]["State"]["Status"] == "exited"
    c.docker("rm", "talker")
    assert names(c) == []
    missing = c.docker("inspect", "talker", check=False)
    assert missing.returncode != 0 and "No such" in missing.stderr


async def test_binpack_fills_one_node_first(swarm_cluster: Any) -> None:
    c = swarm_cluster
    m = c.start_manager(config={"strategy": "binpack"})
    try:
        for i in range(3):
            c.docker("run", "-d", "--name", f"b{i}", *SLEEP, manager=m)
        counts = sorted(per_node(c).values())
        assert counts == [3], counts
    finally:
        clean(c, m)
        c.stop_manager(m)


async def test_docker_py(swarm_cluster: Any) -> None:
    docker = pytest.importorskip("docker")
    c = swarm_cluster
    client = docker.DockerClient(base_url=f"unix://{c.manager.socket}", version="1.41", timeout=60)
    try:
        assert client.containers.run("busybox", ["echo", "from docker-py"], remove=True) == b"from docker-py\n"
        box = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pybox",
                                    environment=["constraint:node==h1"])
        box.reload()
        assert box.name == "h1/pybox" and box.status == "running"
        assert box.exec_run(["echo", "ok"]).output == b"ok\n"
        assert [x.name for x in client.containers.list()] == ["h1/pybox"]
        box.remove(force=True)
        assert client.containers.list(all=True) == []
    finally:
        client.close()


def reserved_memory(cluster: Any, node: str) -> str:
    """The node's ``Reserved Memory`` in ``docker info`` (Swarm classic's SystemStatus rows)."""
    rows = json.loads(cluster.docker("info", "--format", "{{json .SystemStatus}}").stdout)
    start = next(i for i, (key, _value) in enumerate(rows) if key == f" {node}")
    return next(value for key, value in rows[start:] if key.strip() == "└ Reserved Memory")


async def test_update_moves_the_nodes_reservation_and_one_too_big_is_refused(swarm_cluster: Any) -> None:
    c = swarm_cluster
    c.docker("run", "-d", "--name", "grower", "-m", "64m", "-e", "constraint:node==h2", *SLEEP)
    assert reserved_memory(c, "h2").startswith("64 MiB / ")
    c.docker("update", "--memory", "96m", "--memory-swap", "192m", "grower")
    assert reserved_memory(c, "h2").startswith("96 MiB / ")
    assert json.loads(c.docker("inspect", "grower").stdout)[0]["HostConfig"]["Memory"] == 96 << 20
    refused = c.docker("update", "--memory", "64g", "--memory-swap", "128g", "grower", check=False)
    assert refused.returncode != 0 and "node h2 is" in refused.stderr and "of memory short" in refused.stderr, \
        refused.stderr
    assert reserved_memory(c, "h2").startswith("96 MiB / ")
    clean(c)
    assert reserved_memory(c, "h2").startswith("0 B / ")
