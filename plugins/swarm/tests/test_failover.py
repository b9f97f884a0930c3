"""Failures, through the real docker CLI against managers of three netns hosts and a real etcd:
a node's dockyardd killed (its rescheduling containers run elsewhere within 10 s, the others stay
listed on it as "Host Down", rm -f of one removes its record; back, the node rejoins, the stale
copy and the removed one go from it), and the leading manager killed (a replica leads within
10 s, nothing lost, the CLI keeps working through the replica)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]


def names(cluster: Any, manager: Any = None) -> dict[str, str]:
    """``name -> node`` of every container the manager lists (``docker ps -a``: ``node/name``)."""
    out = cluster.docker("ps", "-a", "--format", "{{.Names}}\t{{.Status}}", manager=manager).stdout
    found = {}
    for line in out.splitlines():
        full, _, status = line.partition("\t")
        node, _, name = full.partition("/")
        found[name] = f"{node}\t{status}"
    return found


async def wait_until(what: str, predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = await asyncio.to_thread(predicate)
        except AssertionError as exc:
            last = exc
        if last:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last})")


async def test_three_nodes_joined(swarm_cluster: Any) -> None:
    from click.testing import CliRunner

    from dockyard_swarm.cli import swarm

    kv = [a for item in swarm_cluster.store_options for a in ("--cluster-store-opt", item)]
    out = await asyncio.to_thread(CliRunner().invoke, swarm, ["list", "-v", *kv, swarm_cluster.url])
    assert out.exit_code == 0, out.output
    rows = sorted(line.split("\t") for line in out.output.splitlines())
    assert [(r[0], r[2]) for r in rows] == [("h1", "Healthy"), ("h2", "Healthy"), ("h3", "Healthy")]
    assert {r[1] for r in rows} == {f"{h.address}:2376" for h in swarm_cluster.hosts}


async def test_etcd_restarted_under_the_manager(swarm_cluster: Any) -> None:
    """The store goes away for a moment: the manager reconnects with its state intact, the
    nodes' leases survive (etcd renews them on restart), nothing is rescheduled."""
    c = swarm_cluster
    c.docker("run", "-d", "--name", "keep", "-e", "reschedule:on-node-failure", "busybox", "sleep", "3600")
    before = names(c)["keep"]
    member = c.etcd.members[0]
    await asyncio.to_thread(c.etcd.kill, member)
    await asyncio.sleep(1)
    await asyncio.to_thread(c.etcd.start, member)
    await asyncio.to_thread(c.etcd.wait_healthy)

    def creates() -> bool:
        return c.docker("run", "-d", "--name", "after", "busybox", "sleep", "3600", check=False).returncode == 0

    took = await wait_until("a create through the manager after etcd's restart", creates, 15)
    print(f"manager placing again {took:.1f} s after etcd answered")
    now = names(c)
    assert now["keep"].split("\t")[0] == before.split("\t")[0], (before, now)  # not rescheduled
    assert "after" in now
    c.docker("rm", "-f", "keep", "after")


async def test_node_killed_its_rescheduling_containers_run_elsewhere(swarm_cluster: Any) -> None:
    c = swarm_cluster
    c.docker("run", "-d", "--name", "web", "-e", "reschedule:on-node-failure", "busybox", "sleep", "3600")
    node = names(c)["web"].split("\t")[0]
    c.docker("run", "-d", "--name", "db", "-e", f"constraint:node=={node}", "busybox", "sleep", "3600")
    c.docker("run", "-d", "--name", "cache", "--label", 'com.docker.swarm.reschedule-policies=["on-node-failure"]',
             "-e", f"constraint:node=={node}", "busybox", "sleep", "3600")
    assert "Up" in names(c)["db"]  # the manager saw it running
    host = c.host(node)
    old = json.loads(host.docker("inspect", "web").stdout)[0]["Id"]
    since = int(time.time())
    c.kill_engine(host)

    def moved() -> bool:
        now = names(c)
        return bool(now.get("web", "").startswith(tuple(h.name for h in c.hosts if h.name != node))
                    and "Up" in now["web"])

    took = await wait_until("web rescheduled on another node", moved, 10)
    now = names(c)
    # the label asks too, but its constraint pins it to the dead node: it cannot be placed elsewhere
    assert "cache" not in now or now["cache"].startswith(node), now
    # db (no reschedule policy) stays listed on its node, shown as Swarm classic did
    assert now["db"] == f"{node}\tHost Down", now
    doc = json.loads(c.docker("inspect", "db").stdout)[0]  # answered from the last known state
    assert doc["Node"]["Name"] == node and doc["Node"]["Status"] == "Unhealthy" and doc["State"]["Running"], doc
    # rm -f through the manager: the cluster's record goes (the user is told the node is down)
    res = c.docker("rm", "-f", "cache", check=False)
    assert res.returncode != 0 and f"node {node} is down" in res.stderr, res
    assert "cache" not in names(c)
    events = c.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                      "--filter", "event=reschedule", "--format", "{{json .}}").stdout
    print(f"rescheduled in {took:.1f} s; events: {events.strip()[:300]}")
    # the node comes back: it rejoins, and the stale copy of web is removed from it
    await c.restart_engine(host)

    def stale_gone() -> bool:
        ids = host.docker("ps", "-a", "-q", "--no-trunc").stdout.split()
        return old not in ids

    await wait_until("the stale copy removed from the returning node", stale_gone, 15)
    now = names(c)
    assert list(now).count("web") == 1 and not now["web"].startswith(node), now
    assert now["db"].startswith(node) and "Up" in now["db"], now  # back with its node, still running

    def cache_gone() -> bool:  # removed (rm -f above) from the node that is back, so from ps
        return "cache" not in host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split() \
            and "cache" not in names(c)

    await wait_until("the removed container gone from the returning node", cache_gone, 15)
    for name in ("web", "db"):
        c.docker("rm", "-f", name)


async def test_leader_killed_a_replica_leads_and_the_cli_keeps_working(swarm_cluster: Any) -> None:
    c = swarm_cluster
    c.stop_manager(c.manager)  # one rescheduler at a time: the plain manager leaves the pool
    r1 = await asyncio.to_thread(c.start_manager, config={"replication": True, "replication-ttl": 3})
    r2 = await asyncio.to_thread(c.start_manager, config={"replication": True, "replication-ttl": 3})
    # r2 is a replica: the real docker CLI through it reaches the leader
    since = int(time.time())
    c.docker("run", "-d", "--name", "ha1", "busybox", "sh", "-c", "echo hello from ha1; exec sleep 3600", manager=r2)
    assert "ha1" in names(c, r2) and "ha1" in names(c, r1)
    # streamed answers come through the replica as they are: logs, and a bounded events stream
    assert await wait_until("ha1's log through the replica", lambda: "hello from ha1" in c.docker(
        "logs", "ha1", manager=r2).stdout, 5) >= 0
    events = c.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter",
                      "container=ha1", "--format", "{{.Action}}", manager=r2).stdout.split()
    assert "start" in events, events
    assert c.docker("version", "--format", "{{.Server.Version}}", manager=r2).stdout.strip()
    status = c.docker("info", "--format", "{{json .SystemStatus}}", manager=r2).stdout
    assert ["Role", "replica"] in json.loads(status) and ["Primary", r1.advertise] in json.loads(status), status
    # attach (served by the replica itself) with create/start/wait through the leader
    assert c.docker("run", "--rm", "busybox", "echo", "through a replica", manager=r2).stdout == "through a replica\n"
    # exec: create through the leader, start (a hijacked stream) on the replica, exit code through the leader
    assert c.docker("exec", "ha1", "echo", "exec through a replica", manager=r2).stdout == "exec through a replica\n"
    assert c.docker("exec", "ha1", "sh", "-c", "exit 3", manager=r2, check=False).returncode == 3
    # the other byte-moving calls, forwarded to the leader and streamed back
    src = c.root / "to-ha1.txt"
    src.write_text("copied through a replica\n")
    c.docker("cp", str(src), "ha1:/tmp/in.txt", manager=r2)
    assert c.docker("exec", "ha1", "cat", "/tmp/in.txt", manager=r2).stdout == "copied through a replica\n"
    c.docker("cp", "ha1:/tmp/in.txt", str(c.root / "from-ha1.txt"), manager=r2)
    assert (c.root / "from-ha1.txt").read_text() == "copied through a replica\n"
    assert "sleep 3600" in c.docker("top", "ha1", manager=r2).stdout
    assert c.docker("stats", "--no-stream", "--format", "{{.Name}}", "ha1", manager=r2).stdout.strip().endswith("ha1")
    assert c.docker("run", "-i", "--rm", "busybox", "cat", manager=r2, input="stdin through a replica\n").stdout \
        == "stdin through a replica\n"
    c.stop_manager(r1, 9)  # SIGKILL: its lease runs out
    killed = time.monotonic()

    def r2_answers() -> bool:
        res = c.docker("ps", "-a", "--format", "{{.Names}}", manager=r2, check=False)
        return res.returncode == 0 and any(n.endswith("/ha1") for n in res.stdout.split())

    took = await wait_until("the replica leads and answers", r2_answers, 10)
    assert ["Role", "primary"] in json.loads(c.docker("info", "--format", "{{json .SystemStatus}}", manager=r2).stdout)
    print(f"replica answering as leader {took:.1f} s after the leader was killed")
    assert time.monotonic() - killed < 10
    c.docker("run", "-d", "--name", "ha2", "busybox", "sleep", "3600", manager=r2)
    assert {"ha1", "ha2"} <= set(names(c, r2))
    c.docker("rm", "-f", "ha1", "ha2", manager=r2)

