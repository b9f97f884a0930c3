"""Two netns hosts sharing a real etcd: the overlay's test cluster (module scope, ~3 s to make).

etcd (the SDK's ``start_etcd``, mutual TLS: it is off loopback) listens on the netns bridge's
gateway, which the hosts reach; each host's engine runs with ``--cluster-store`` and
``--cluster-advertise eth0:2376``, so its VXLAN tunnel endpoint is its ``eth0`` address and
the hosts' private bridge is the underlay. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ENDPOINT_TTL = 3  # seconds a killed engine's endpoints stay published


@dataclass
class OverlayCluster:
    root: Path
    etcd: Any
    url: str
    netns: Any  # NetnsHosts
    hosts: list[Any]
    options: list[str]

    def links(self, host: Any) -> list[str]:
        """Link names inside a host's network namespace."""
        out = subprocess.run(["ip", "-n", str(host.host.extra["netns"]), "-o", "link", "show"],
                             capture_output=True, text=True, check=True).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def ip(self, host: Any, *args: str) -> str:
        return subprocess.run(["ip", "-n", str(host.host.extra["netns"]), *args], capture_output=True,
                              text=True, check=True).stdout


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def overlay_cluster(tmp_path_factory: pytest.TempPathFactory, dockyard_owners: Any
                          ) -> AsyncIterator[OverlayCluster]:
    from dockyard_plugin_sdk.testing import NetnsHosts, etcd_unavailable, netns_hosts_unavailable, start_etcd

    reason = netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dyov{uuid.uuid4().hex[:6]}")  # short: the hosts' unix sockets live below it
    netns = await NetnsHosts.open(base / "n", owners=dockyard_owners)
    etcd = None
    try:
        gateway = str(netns.driver.gateway.ip)
        etcd = await asyncio.to_thread(functools.partial(start_etcd, base / "etcd", 1, gateway, tls=True))
        dockyard_owners.record(etcd.token, etcd.root)
        url = etcd.url(f"ov{uuid.uuid4().hex[:6]}")
        options = ["--cluster-store", url, "--cluster-advertise", "eth0:2376",
                   "--cluster-store-opt", "discovery.heartbeat=0.5", "--cluster-store-opt", "discovery.ttl=2"]
        for k, v in etcd.store_options.items():
            options += ["--cluster-store-opt", f"{k}={v}"]
        hosts = await netns.create(2, engine_options=options)
        await asyncio.gather(*(asyncio.to_thread(h.bootstrap, "busybox") for h in hosts))
        yield OverlayCluster(root=base, etcd=etcd, url=url, netns=netns, hosts=hosts, options=options)
    finally:
        errors = await netns.close()
        if etcd is not None:
            etcd.close()
        shutil.rmtree(base, ignore_errors=True)
        assert not errors, errors
