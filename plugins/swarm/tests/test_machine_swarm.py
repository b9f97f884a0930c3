"""``dockyard machine create --swarm --swarm-master --swarm-discovery etcd://...``: the machine's
engine joins the cluster by itself (its heartbeat names its own address), and ``machine env
--swarm`` points the docker client at the master's manager (``tcp://ADDR:3376``). etcd runs in a
netns host of its own (as in ``make demo-cluster``), where every host reaches it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)


def test_machine_create_swarm_joins_and_env_swarm_names_the_master(tmp_path_factory: pytest.TempPathFactory,
                                                                   dockyard_owners: Any) -> None:
    from dockyard_plugin_sdk.conformance.network import free_test_subnet
    from dockyard_plugin_sdk.testing import etcd_unavailable, netns_hosts_unavailable, start_daemon, wait_for

    reason = netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    import importlib.util

    if importlib.util.find_spec("dockyard_machine") is None:
        pytest.skip("dockyard machine is not installed: pip install dockyard-machine")
    root = Path(tmp_path_factory.mktemp("msw", numbered=True))
    base = Path(f"/tmp/dymsw{os.getpid() % 100000}")
    daemon = start_daemon(base, config={"provision-opts": [f"subnet={free_test_subnet('10.247.0.0/16', 24)}"]},
                          owners=dockyard_owners)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["MACHINE_STORAGE_PATH"] = str(root / "storage")

    def dy(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{daemon.socket}", *args],
                             capture_output=True, text=True, env=env, timeout=90)
        if check:
            assert res.returncode == 0, f"dockyard {' '.join(args)}: {res.stdout}\n{res.stderr}"
        return res

    def driver(name: str) -> dict[str, Any]:
        return dict(json.loads(dy("machine", "inspect", name).stdout)["Driver"])

    etcd_dir = root / "etcd"
    try:
        dy("machine", "create", "-d", "netns", "store")
        store = driver("store")
        url = f"etcd://{store['IPAddress']}:2379/msw"
        subprocess.run(["ip", "netns", "exec", store["Netns"], sys.executable, "-m", "dockyard.cli.main", "swarm",
                        "etcd", "start", "--data-dir", str(etcd_dir), "--listen", f"{store['IPAddress']}:2379"],
                       check=True, capture_output=True, env=env, timeout=30)
        bad = dy("machine", "create", "-d", "netns", "--swarm", "nope", check=False)
        assert bad.returncode != 0 and "--swarm-discovery" in bad.stderr + bad.stdout
        dy("machine", "create", "-d", "netns", "--swarm", "--swarm-master", "--swarm-discovery", url,
           "--engine-label", "zone=a", "m1")
        m1 = driver("m1")

        def joined() -> list[str]:
            out = dy("swarm", "list", "-v", url).stdout.split()
            return out if out == ["m1", f"{m1['IPAddress']}:2376", "Healthy"] else []

        wait_for(joined, 10, "m1 in the cluster's node list")
        options = json.loads(dy("machine", "inspect", "m1").stdout)["HostOptions"]["SwarmOptions"]
        assert options == {"IsSwarm": True, "Master": True, "Discovery": url,
                           "Host": f"tcp://{m1['IPAddress']}:3376", "Address": ""}
        shown = dy("machine", "env", "--shell", "bash", "--swarm", "m1").stdout
        assert f'export DOCKER_HOST="tcp://{m1["IPAddress"]}:3376"' in shown, shown
        assert f'export DOCKER_HOST="tcp://{m1["IPAddress"]}:2376"' in dy("machine", "env", "--shell", "bash", "m1").stdout
        # the master's engine runs the manager: the real docker CLI through `machine env --swarm`
        docker = shutil.which("docker")
        if docker is not None:
            swarm_env = dict(env)
            for line in shown.splitlines():
                if line.startswith("export "):
                    key, _, value = line[len("export "):].partition("=")
                    swarm_env[key] = value.strip('"')
            swarm_env["DOCKER_CONFIG"] = str(root / "docker-config")

            def answers() -> str:
                res = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                                     text=True, env=swarm_env, timeout=30)
                return res.stdout.strip() if res.returncode == 0 else ""

            assert wait_for(answers, 15, "the swarm master's manager on :3376").startswith("swarm/")
        # Docker Machine's ls: the SWARM column, --filter swarm=MASTER
        ls = dy("machine", "ls", "--format", "{{.Name}} {{.Swarm}}").stdout.splitlines()
        assert sorted(ls) == ["m1 m1 (master)", "store "], ls
        assert dy("machine", "ls", "-q", "--filter", "swarm=m1").stdout.split() == ["m1"]
        plain = dy("machine", "env", "--swarm", "store", check=False)
        assert plain.returncode == 1 and "not a swarm master" in plain.stderr
    finally:
        from dockyard_swarm import etcd_local

        etcd_local.stop(etcd_dir)
        dy("machine", "rm", "-f", "-y", "m1", "store", check=False)
        daemon.teardown()
        shutil.rmtree(base, ignore_errors=True)
