"""Membership and leadership against a real etcd (no engines): the heartbeat's record, health,
drop and rejoin as the nodes service sees them; the leader election and its handover; the
``dockyard swarm`` commands that need no manager."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dockyard.config import Config
from dockyard.errors import InvalidArgument, NotFound
from dockyard.kernel import Kernel
from dockyard_swarm.cli import swarm
from dockyard_swarm.leader import Leadership
from dockyard_swarm.membership import NodeChange, NodeDirectory, discovery_settings, node_from_record
from dockyard_swarm.membership_agent import Heartbeat, resolve_advertise
from dockyard_swarm.reschedule import policies, wants_reschedule

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def kernel_on(root: Path, url: str, **values: Any) -> AsyncIterator[Kernel]:
    config = Config(values={"data-root": str(root / "d"), "exec-root": str(root / "r"), "cluster-store": url,
                            "role": "manager", **values})
    kernel = Kernel.build(config, autoload=True, environ={})
    try:
        yield kernel
    finally:
        await kernel.stop()


def beat(store: Any, name: str, interval: float = 0.3, ttl: float = 2, labels: dict[str, str] | None = None) -> Heartbeat:
    async def describe() -> tuple[dict[str, str], dict[str, Any]]:
        return dict(labels or {}), {"Cpus": 2, "Memory": 1 << 30, "Driver": "vfs", "KernelVersion": "6.1",
                                    "OperatingSystem": "Debian", "Architecture": "x86_64", "ID": f"id-{name}"}

    return Heartbeat(store, name, f"10.0.0.{len(name)}:2376", interval, ttl, describe)


async def next_change(changes: AsyncIterator[NodeChange], timeout: float = 8) -> NodeChange:
    return await asyncio.wait_for(anext(changes), timeout)


async def test_nodes_join_go_unhealthy_drop_and_rejoin(tmp_path: Path, module_etcd: Any) -> None:
    url = module_etcd.url()
    async with kernel_on(tmp_path, url) as kernel:
        store = await kernel.cluster_store()
        directory = NodeDirectory(kernel)
        await directory.start()
        changes = directory.changes()
        try:
            first = asyncio.ensure_future(next_change(changes))
            hb = beat(store, "n1", labels={"zone": "a"})
            task = asyncio.create_task(hb.run())
            change = await first
            assert (change.action, change.node.name) == ("join", "n1")
            node = await directory.node("n1")
            assert node.healthy and node.labels == {"zone": "a"} and node.engine_url == "tcp://10.0.0.2:2376"
            assert (node.cpus, node.storage_driver, node.id) == (2, "vfs", "id-n1")
            # heartbeats stop (the engine is killed): unhealthy after two intervals, dropped at the TTL
            task.cancel()
            started = time.monotonic()
            change = await next_change(changes)
            assert change.action == "unhealthy" and not (await directory.node("n1")).healthy
            assert time.monotonic() - started < 1.5
            change = await next_change(changes)
            assert change.action == "leave" and change.node.name == "n1"
            assert time.monotonic() - started < 5
            with pytest.raises(NotFound):
                await directory.node("n1")
            assert await directory.nodes() == []
            # the same engine comes back: its lease is gone, it takes a new one and rejoins
            task = asyncio.create_task(hb.run())
            change = await next_change(changes)
            assert (change.action, change.node.name) == ("join", "n1")
            assert [n.name for n in await directory.nodes()] == ["n1"]
            task.cancel()
            await store.revoke(hb.lease)  # type: ignore[arg-type]
            assert (await next_change(changes)).action == "leave"
        finally:
            await changes.aclose()
            await directory.stop()


async def test_leader_election_and_handover(tmp_path: Path, module_etcd: Any) -> None:
    url = module_etcd.url()
    opts = {"replication": True, "replication-ttl": 2}
    async with kernel_on(tmp_path / "a", url, **opts, **{"cluster-advertise": "127.0.0.1:4001"}) as ka, \
            kernel_on(tmp_path / "b", url, **opts, **{"cluster-advertise": "127.0.0.1:4002"}) as kb:
        a, b = Leadership(ka), Leadership(kb)
        await a.start()
        await asyncio.wait_for(a.leading(), 5)
        await b.start()
        for _ in range(50):
            if b.leader:
                break
            await asyncio.sleep(0.05)
        assert (a.is_leader, b.is_leader, b.leader) == (True, False, "127.0.0.1:4001")
        # a clean stop revokes the lease: b leads at once
        started = time.monotonic()
        await a.stop()
        await asyncio.wait_for(b.leading(), 5)
        assert time.monotonic() - started < 1.5
        assert (await (await kb.cluster_store()).get("leader")).value == b"127.0.0.1:4002"  # type: ignore[union-attr]
        # a leader that dies (no revoke): the lease runs out, the other leads within the TTL
        c = Leadership(ka)
        await c.start()
        await asyncio.sleep(0.3)
        assert not c.is_leader and c.leader == "127.0.0.1:4002"
        assert b._task is not None
        b._task.cancel()  # the process is gone: nothing refreshes nor revokes its lease
        b._lease = None
        started = time.monotonic()
        await asyncio.wait_for(c.leading(), 10)
        assert time.monotonic() - started < 4
        await c.stop()
        await b.stop()


def test_discovery_settings_and_advertise() -> None:
    assert discovery_settings(Config(values={})) == (2.0, 6.0)
    cfg = Config(values={"cluster-opts": ["discovery.heartbeat=0.5", "discovery.ttl=2s"]})
    assert discovery_settings(cfg) == (0.5, 2.0)
    for bad, words in ((["discovery.ttl=1", "discovery.heartbeat=1"], "at least two heartbeats"),
                       (["discovery.heartbeat=soon"], "expected seconds"),
                       (["discovery.ttl=-3"], "positive")):
        with pytest.raises(InvalidArgument, match=words):
            discovery_settings(Config(values={"cluster-opts": bad}))
    assert resolve_advertise("10.1.2.3:2376") == "10.1.2.3:2376"
    assert resolve_advertise("lo:2376") == "127.0.0.1:2376"
    assert resolve_advertise("[::1]:2376") == "[::1]:2376"
    for bad in ("10.1.2.3", "0.0.0.0:2376", "nosuchif0:2376", "h:99999"):
        with pytest.raises(InvalidArgument):
            resolve_advertise(bad)


def test_reschedule_policies() -> None:
    assert policies({"Env": ["A=1", "reschedule:on-node-failure"]}) == ["on-node-failure"]
    label = {"com.docker.swarm.reschedule-policies": '["on-node-failure"]'}
    assert policies({"Labels": label}) == ["on-node-failure"]
    assert wants_reschedule({"config": {"Labels": label}})
    assert not wants_reschedule({"config": {"Env": ["reschedule:off"]}})
    assert wants_reschedule({"reschedule": True, "config": {}})


def test_node_from_record() -> None:
    node = node_from_record({"name": "h1", "addr": "10.0.0.1:2376", "labels": {"disk": "ssd"},
                             "engine": {"Cpus": 4, "Memory": 8, "OSType": "linux"}}, healthy=False)
    assert (node.name, node.engine_url, node.cpus, node.memory, node.healthy) == ("h1", "tcp://10.0.0.1:2376", 4, 8, False)


async def test_swarm_list_and_manage_dry_run(tmp_path: Path, module_etcd: Any) -> None:
    url = module_etcd.url()
    async with kernel_on(tmp_path, url) as kernel:
        hb = beat(await kernel.cluster_store(), "n7")
        await hb.beat()
        runner = CliRunner()
        out = await asyncio.to_thread(runner.invoke, swarm, ["list", url])
        assert out.exit_code == 0, out.output
        assert out.output.split() == ["10.0.0.2:2376"]
        out = await asyncio.to_thread(runner.invoke, swarm, ["list", "-v", url])
        assert out.output.split() == ["n7", "10.0.0.2:2376", "Healthy"]
        await (await kernel.cluster_store()).revoke(hb.lease)  # type: ignore[arg-type]
    out = CliRunner().invoke(swarm, ["manage", "-H", "tcp://127.0.0.1:4000", "--replication", url])
    assert out.exit_code == 1 and "--replication needs --advertise" in out.output
    out = CliRunner().invoke(swarm, ["manage", "-H", "tcp://127.0.0.1:4000", "--strategy", "binpack",
                                     "--filter", "health", "--replication", "--advertise", "127.0.0.1:4000",
                                     "--data-root", str(tmp_path / "m"), "--exec-root", str(tmp_path / "mr"),
                                     "--dry-run", url])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert plan["settings"] == {"role": "manager", "cluster-store": url, "cluster-advertise": "127.0.0.1:4000",
                                "replication": True, "strategy": "binpack", "filters": ["health"]}
    assert plan["argv"][0].endswith("dockyardd") and ["-H", "tcp://127.0.0.1:4000"] == plan["argv"][-2:]


def test_etcd_helper(tmp_path: Path, dockyard_owners: Any) -> None:
    from dockyard_plugin_sdk.testing import etcd_unavailable

    if etcd_unavailable():
        pytest.skip(etcd_unavailable())
    from dockyard_plugin_sdk.testing.etcd import _free_port

    port = _free_port("127.0.0.1")
    data = tmp_path / "etcd"
    runner = CliRunner()
    out = runner.invoke(swarm, ["etcd", "start", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                                "--peer-port", str(_free_port("127.0.0.1"))])
    try:
        assert out.exit_code == 0, out.output
        assert out.output.strip() == f"etcd://127.0.0.1:{port}/swarm"
    finally:
        out = runner.invoke(swarm, ["etcd", "stop", "--data-dir", str(data)])
    assert out.exit_code == 0, out.output
    assert not data.exists()


def test_swarm_join_keeps_an_engines_record(module_etcd: Any, dockyardd: Any) -> None:
    """``dockyard swarm join`` beside an engine started without --cluster-advertise: its record
    (name, labels and fields from the engine's /info) while it runs; dropped at the TTL after."""
    import os
    import signal
    import subprocess
    import sys

    from dockyard_plugin_sdk.testing import wait_for

    url = module_etcd.url()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "swarm", "join", "--advertise",
                             "127.0.0.1:23750", "-H", f"unix://{dockyardd.socket}", "--heartbeat", "0.5",
                             "--ttl", "2", "--name", "side", url], env=env, stderr=subprocess.PIPE, text=True)
    try:
        def listed() -> list[str]:
            out = CliRunner().invoke(swarm, ["list", "-v", url]).output.split()
            return out if out == ["side", "127.0.0.1:23750", "Healthy"] else []

        wait_for(listed, 15, "the joined engine in swarm list")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "joined" in err
    wait_for(lambda: CliRunner().invoke(swarm, ["list", url]).output.strip() == "", 6, "the record dropped at its TTL")


def test_swarm_manage_runs_dockyardd_as_a_manager(module_etcd: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``dockyard swarm manage`` execs dockyardd in the role manager: the API answers as Swarm's."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import uuid

    from dockyard_plugin_sdk.testing import wait_for

    base = Path(f"/tmp/dysm{uuid.uuid4().hex[:6]}")
    sock = base / "r" / "m.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "swarm", "manage", "-H", f"unix://{sock}",
                             "--strategy", "binpack", "--data-root", str(base / "d"), "--exec-root", str(base / "r"),
                             module_etcd.url()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        from dockyard.client import Client, DaemonAddress

        def version() -> str:
            if proc.poll() is not None:
                raise AssertionError(f"swarm manage exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            try:
                return str(Client(DaemonAddress.parse(f"unix://{sock}"), timeout=5).get("/version")["Version"])
            except Exception:  # noqa: BLE001 - not up yet
                return ""

        assert wait_for(version, 20, "the manager's /version").startswith("swarm/")
        info = Client(DaemonAddress.parse(f"unix://{sock}"), timeout=5).get("/info")
        assert ["Strategy", "binpack"] in info.get("SystemStatus", []), info.get("SystemStatus")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        shutil.rmtree(base, ignore_errors=True)
