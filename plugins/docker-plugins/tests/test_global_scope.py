"""A global-scope network plugin across two netns hosts sharing a real etcd (Docker's classic
``--cluster-store`` mode), through the real docker CLI.

Each host runs its own copy of the stdlib plugin (``tests/plugins/netplugin.py`` with
``PLUGIN_SCOPE=global``) inside its network namespace, listening on that namespace's loopback:
one spec file, ``gplug.spec`` = ``tcp://127.0.0.1:PORT``, finds each engine its own host's plugin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dockyard_plugin_sdk.testing import etcd_unavailable, netns_cluster, netns_hosts_unavailable, wait_for

pytestmark = [pytest.mark.timeout(180)]


def _calls(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        doc = json.loads(line)
        out.append({"method": doc["method"], "body": json.loads(doc["body"]) if doc["body"].strip() else {}})
    return out


def _methods(log: Path) -> list[str]:
    return [c["method"].removeprefix("NetworkDriver.") for c in _calls(log)]


def _names(host: Any) -> list[str]:
    return host.docker("network", "ls", "--format", "{{.Name}}").stdout.split()


def _address(host: Any, container: str, network: str) -> str:
    doc = json.loads(host.docker("inspect", container).stdout)[0]
    return str(doc["NetworkSettings"]["Networks"][network]["IPAddress"])


async def test_a_global_scope_plugin_network_spans_the_engines(plugins: Any, dockyard_owners: Any) -> None:
    reason = netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    port = random.randrange(20000, 60000)  # each host's own loopback: no clash between the two
    (plugins.specs).mkdir(parents=True, exist_ok=True)
    (plugins.specs / "gplug.spec").write_text(f"tcp://127.0.0.1:{port}\n")
    daemon_json = plugins.root / "daemon.json"
    daemon_json.write_text(json.dumps(plugins.config(**{"docker-plugin-retry": 2.0})))
    base = Path(f"/tmp/dygp{uuid.uuid4().hex[:6]}")  # short: the hosts' unix sockets live below it
    async with netns_cluster(base, 2, owners=dockyard_owners, prefix="gp",
                             engine_options=["--config-file", str(daemon_json)]) as cluster:
        h1, h2 = cluster.hosts
        logs = {h.name: plugins.root / f"{h.name}.calls" for h in (h1, h2)}
        started = {}
        for h in (h1, h2):
            ready = plugins.root / f"{h.name}.ready"
            started[h.name] = plugins.start(
                "netplugin", f"gplug-{h.name}", "gp", socket=f"tcp://127.0.0.1:{port}", ready=ready,
                netns=str(h.host.extra["netns"]),
                env={"PLUGIN_SCOPE": "global", "PLUGIN_LOG": str(logs[h.name]), "PLUGIN_READY_FILE": str(ready)})

        # a local-scope plugin on the same engines stays local: not in the cluster, not on h2
        (plugins.specs / "lplug.spec").write_text(f"tcp://127.0.0.1:{port + 1}\n")
        lready = plugins.root / "lplug.ready"
        plugins.start("netplugin", "lplug-h1", "lp", socket=f"tcp://127.0.0.1:{port + 1}", ready=lready,
                      netns=str(h1.host.extra["netns"]), env={"PLUGIN_READY_FILE": str(lready)})
        h1.docker("network", "create", "-d", "lplug", "lnet")
        assert json.loads(h1.docker("network", "inspect", "lnet").stdout)[0]["Scope"] == "local"

        # created on h1: stored in the cluster, listed and inspected alike on h2
        h1.docker("network", "create", "-d", "gplug", "gnet")
        wait_for(lambda: "gnet" in _names(h2), 10, "gnet listed on h2")
        assert "lnet" not in _names(h2)  # created before gnet, which h2 lists
        h1.docker("network", "rm", "lnet")
        one, two = (json.loads(h.docker("network", "inspect", "gnet").stdout)[0] for h in (h1, h2))
        assert one["Id"] == two["Id"] and one["Driver"] == two["Driver"] == "gplug"
        assert one["Scope"] == two["Scope"] == "global"
        assert one["IPAM"]["Config"] == two["IPAM"]["Config"] and one["IPAM"]["Config"], one["IPAM"]
        net_id, subnet = one["Id"], ipaddress.ip_network(one["IPAM"]["Config"][0]["Subnet"])
        assert [c["body"]["NetworkID"] for c in _calls(logs[h1.name]) if c["method"].endswith(".CreateNetwork")] \
            == [net_id]
        assert "CreateNetwork" not in _methods(logs[h2.name])  # lazily: not before it is used there

        # node discovery: each plugin hears of its own engine and of the other one
        def discovered(h: Any, after: int = 0) -> set[tuple[str, bool]]:
            news = [c for c in _calls(logs[h.name]) if c["method"].endswith(".DiscoverNew")][after:]
            return {(c["body"]["DiscoveryData"]["Address"], c["body"]["DiscoveryData"]["self"]) for c in news}
        wait_for(lambda: {(h1.address, True), (h2.address, False)} <= discovered(h1), 10, "h1's plugin discovery")

        # containers on both engines: distinct addresses from the cluster-wide pool
        h1.docker("run", "-d", "--name", "a1", "--network", "gnet", "busybox", "sleep", "300")
        h2.docker("run", "-d", "--name", "a2", "--network", "gnet", "busybox", "sleep", "300")
        ip1, ip2 = _address(h1, "a1", "gnet"), _address(h2, "a2", "gnet")
        assert ip1 != ip2 and {ipaddress.ip_address(ip1), ipaddress.ip_address(ip2)} <= set(subnet.hosts())
        h2_calls = _methods(logs[h2.name])
        assert h2_calls.index("CreateNetwork") < h2_calls.index("CreateEndpoint"), h2_calls
        assert {(h2.address, True), (h1.address, False)} <= discovered(h2)
        # endpoints are known cluster-wide: h1's embedded DNS answers the container on h2
        wait_for(lambda: ip2 in h1.docker("exec", "a1", "nslookup", "a2", check=False).stdout, 10,
                 "a2 resolved on h1")

        # h2's engine killed (its containers run on): its lease ends and h1's plugin hears the
        # node leave; a network removed meanwhile is gone from h2's list when it is back, and
        # h2 publishes its running container's endpoint again
        h1.docker("network", "create", "-d", "gplug", "gnet3")
        wait_for(lambda: "gnet3" in _names(h2), 10, "gnet3 listed on h2")
        await _kill_engine(cluster, h2)
        wait_for(lambda: any(c["method"].endswith(".DiscoverDelete")
                             and c["body"]["DiscoveryData"]["Address"] == h2.address for c in _calls(logs[h1.name])),
                 10, "DiscoverDelete of h2 on h1's plugin")  # discovery.ttl: 2 s
        wait_for(lambda: ip2 not in h1.docker("exec", "a1", "nslookup", "a2", check=False).stdout, 10,
                 "a2's record gone with h2's lease")
        h1.docker("network", "rm", "gnet3")
        joined_before = len([c for c in _calls(logs[h1.name]) if c["method"].endswith(".DiscoverNew")])
        await cluster.netns.driver.start(h2.host)
        wait_for(lambda: h2.docker("version", check=False).returncode == 0, 15, "h2's engine back")
        wait_for(lambda: "gnet3" not in _names(h2), 10, "gnet3 gone on h2")
        wait_for(lambda: (h2.address, False) in discovered(h1, after=joined_before), 10, "h2 discovered again")
        wait_for(lambda: ip2 in h1.docker("exec", "a1", "nslookup", "a2", check=False).stdout, 10,
                 "a2 resolved on h1 again")

        # removal: refused while another host has an endpoint, then from h2 it is gone everywhere
        h1.docker("rm", "-f", "a1")
        refused = h1.docker("network", "rm", "gnet", check=False)
        assert refused.returncode != 0 and "active endpoints on other hosts" in refused.stderr, refused.stderr
        assert "gnet" in _names(h1) and "gnet" in _names(h2)
        h2.docker("rm", "-f", "a2")
        h2.docker("network", "rm", "gnet")
        wait_for(lambda: "gnet" not in _names(h1), 10, "gnet gone on h1")
        for h in (h1, h2):  # each plugin that had it was told
            wait_for(lambda h=h: "DeleteNetwork" in _methods(logs[h.name]), 10, f"DeleteNetwork on {h.name}")

        # the plugin missing on h2: the network is still listed there; using it names the plugin
        assert started[h2.name].stop() == 0
        h1.docker("network", "create", "-d", "gplug", "gnet2")
        try:
            wait_for(lambda: "gnet2" in _names(h2), 10, "gnet2 listed on h2")
            try:  # no --rm: the CLI would wait for the removal of a container whose start failed
                failed = h2.docker("run", "--name", "g2", "--network", "gnet2", "busybox", "true", check=False,
                                   timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"docker run on h2 hung; h2's engine log:\n{h2.log[-6000:]}")
            h2.docker("rm", "-f", "g2")
            assert failed.returncode != 0 and "gplug" in failed.stderr, failed.stderr
            assert "gnet2" in _names(h2)
        finally:
            h1.docker("network", "rm", "gnet2")
        wait_for(lambda: "gnet2" not in _names(h2), 10, "gnet2 gone on h2")


async def _kill_engine(cluster: Any, host: Any) -> None:
    """SIGKILL the host's engine and wait until its driver has seen it exit (else its start
    would treat the host as running)."""
    os.kill(int(host.host.extra["pid"]), signal.SIGKILL)
    for _ in range(100):
        state = await cluster.netns.driver.state(host.host)
        if state.state != "running" and "runs but" not in state.reason:
            return
        await asyncio.sleep(0.05)
