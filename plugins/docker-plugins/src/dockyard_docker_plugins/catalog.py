"""``docker-plugins-global``: the cluster's networks of global-scope Docker plugins, for the
network service to mirror (entry point ``dockyard.drivers.network:docker-plugins-global``).

The network service mirrors the networks every installed ``global-scope`` driver reports
(:class:`~dockyard.specs.network.GlobalScopeDriver`) when it starts. A Docker plugin is no
installed driver: it is found by name when a network names it, and may not be running, or not
exist, on this engine. So this driver, installed with the adapter, reports the networks of
every global plugin from the cluster store (:class:`~dockyard_docker_plugins.cluster.ClusterView`),
each with its plugin's name as its ``Driver``: every engine lists them, as dockerd lists a
remote driver's network from the store whether or not its plugin is here. Using one reaches
its plugin (:class:`~dockyard_docker_plugins.network.GlobalRemoteNetworkDriver`); when the
plugin is missing, that is the error, naming it.

A network removed while this engine was down is announced removed to the network service
when it subscribes: the IDs this driver reported are kept in its data directory (the service's
own start-up check only matches networks whose ``Driver`` is this driver's name).

No network is created with ``-d docker-plugins-global``: it is refused, naming what to use.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.jsonfile import write_json
from dockyard.model import Network
from dockyard.specs import DriverContext, DriverInfo, DriverProvider
from dockyard.specs.cluster import ClusterStore, discovery_ttl
from dockyard.specs.network import (
    GLOBAL_SCOPE,
    ClusterNetworkChange,
    EndpointRequest,
    EndpointResult,
    GlobalScopeDriver,
    PeerEndpoint,
)
from dockyard_docker_plugins.cluster import ClusterView, advertise_address

NAME = "docker-plugins-global"
#: Which distribution provides this driver (it is not ``dockyard-network-docker-plugins-global``).
PROVIDERS = (DriverProvider("network", NAME, "dockyard-docker-plugins"),)
REFUSED = (f"{NAME} only lists the cluster's networks of global-scope Docker plugins: "
           "create a network with the plugin's name (docker network create -d PLUGIN)")


async def start_view(context: DriverContext) -> ClusterView | None:
    """The kernel's :class:`ClusterView`, started on its cluster store; None without a store."""
    view = context.provided.get(ClusterView)
    store = context.provided.get(ClusterStore)
    if view is None or store is None:
        return None
    node = advertise_address(str(context.daemon_config.get("cluster-advertise") or ""))
    await view.start(store, node, int(discovery_ttl(context.daemon_config, "10")))
    return view


class GlobalPluginNetworks(GlobalScopeDriver):
    info = DriverInfo(name=NAME, kind="network",
                      description="the cluster's networks of global-scope Docker plugins (listed on every "
                                  "engine; each used through its plugin)",
                      capabilities=frozenset({GLOBAL_SCOPE}))

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._view: ClusterView | None = None
        self._gone: list[str] = []  # reported before, no longer defined: announced removed
        self._task: asyncio.Task[None] | None = None

    @property
    def _reported_file(self) -> Path:
        return Path(self.context.data_dir) / "reported.json"

    async def setup(self) -> None:
        self._view = await start_view(self.context)
        if self._view is None:
            return
        try:
            before = json.loads(self._reported_file.read_text())
        except (OSError, ValueError):
            before = []
        now = {n.id for n in self._view.definitions()}
        self._gone = sorted(set(before if isinstance(before, list) else []) - now)
        changes = self._view.changes()  # subscribed before the write: nothing missed
        await asyncio.to_thread(write_json, self._reported_file, sorted(now))
        # the one writer from now on: its writes land in order (a late snapshot never replaces a newer one)
        self._task = asyncio.create_task(self._record(changes), name="docker-plugins-global-record")

    async def _record(self, changes: AsyncIterator[ClusterNetworkChange]) -> None:
        """Keep the reported IDs current (a killed engine's next start still knows them)."""
        async for change in changes:
            if change.kind == "network" and self._view is not None:
                ids = sorted(n.id for n in self._view.definitions())
                await asyncio.to_thread(write_json, self._reported_file, ids)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._view is not None:
            await self._view.release()
            self._view = None

    def status(self) -> list[tuple[str, str]]:
        if self._view is None:
            return [("Cluster", "(none: no cluster store)")]
        return [("Networks", str(len(self._view.definitions()))), ("Nodes", str(len(self._view.nodes()) + 1))]

    async def cluster_networks(self) -> list[Network]:
        return self._view.definitions() if self._view is not None else []

    def peers(self, network_id: str) -> list[PeerEndpoint]:
        return self._view.peers(network_id) if self._view is not None else []

    def cluster_changes(self) -> AsyncIterator[ClusterNetworkChange]:
        if self._view is None:
            return _nothing()
        return self._view.changes(ClusterNetworkChange("network", i, None) for i in self._gone)

    async def create_network(self, network: Network) -> dict[str, Any]:
        raise InvalidArgument(REFUSED)

    async def delete_network(self, network: Network) -> None:
        raise InvalidArgument(REFUSED)

    async def join(self, request: EndpointRequest) -> EndpointResult:
        raise InvalidArgument(REFUSED)

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        raise InvalidArgument(REFUSED)


async def _nothing() -> AsyncIterator[ClusterNetworkChange]:
    return
    yield  # an async generator that ends at once
