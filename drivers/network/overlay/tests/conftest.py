"""Two netns hosts sharing a real etcd: the overlay's test cluster (module scope, ~3 s to make).

etcd (the SDK's ``start_etcd``, mutual TLS: it is off loopback) listens on the netns bridge's
gateway, which the hosts reach; each host's engine runs with ``--cluster-store`` and
``--cluster-advertise eth0:2376``, so its VXLAN tunnel endpoint is its ``eth0`` address and
the hosts' private bridge is the underlay. Nothing leaves the machine.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

T = TypeVar("T")
ENDPOINT_TTL = 3  # seconds a killed engine's endpoints stay published


@dataclass
class OverlayCluster:
    root: Path
    etcd: Any
    url: str
    netns: Any  # NetnsHosts
    hosts: list[Any]
    options: list[str]

    def in_ns(self, host: Any, fn: Callable[[Any], T]) -> T:
        """``fn(ns)`` with a pyroute2 handle on a host's network namespace, on a thread of its
        own (pyroute2's synchronous API runs an event loop, which the tests' loop forbids)."""
        def run() -> T:
            from pyroute2 import NetNS

            ns = NetNS(str(host.host.extra["netns"]))
            try:
                return fn(ns)
            finally:
                ns.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    def links(self, host: Any) -> list[str]:
        """Link names inside a host's network namespace."""
        return self.in_ns(host, lambda ns: [str(link.get_attr("IFLA_IFNAME")) for link in ns.get_links()])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def overlay_cluster(tmp_path_factory: pytest.TempPathFactory, dockyard_owners: Any
                          ) -> AsyncIterator[OverlayCluster]:
    from dockyard_plugin_sdk.testing import etcd_unavailable, netns_cluster, netns_hosts_unavailable

    reason = netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dyov{uuid.uuid4().hex[:6]}")  # short: the hosts' unix sockets live below it
    async with netns_cluster(base, 2, owners=dockyard_owners, prefix="ov") as c:
        yield OverlayCluster(root=base, etcd=c.etcd, url=c.url, netns=c.netns, hosts=c.hosts, options=c.options)
