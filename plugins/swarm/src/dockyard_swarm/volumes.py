"""The manager's ``volumes`` service: every node's volumes, named as Swarm classic named them.

A volume of the ``local`` driver is listed once per node as ``NODE/NAME``; a volume of another
driver (whose scope may span nodes) by its name, once. ``get`` takes ``NODE/NAME`` or a bare
name (the first node holding it). ``create`` of ``NODE/NAME`` makes it on that node, of a bare
name on every healthy node (Swarm classic's CreateVolume); ``remove`` of a bare name removes it
from every node holding it. Reads answer from a per-node view refreshed by the nodes' volume
events.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, NotFound
from dockyard.model import Volume
from dockyard.services import Service
from dockyard_swarm.events import NodeView, engine, nodes_service
from dockyard_swarm.networks import split_node

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.engines import EngineClient


@dataclass
class NodeVolume:
    node: str
    volume: Volume
    size: int = -1  # bytes (from the engine's system df), -1 when unknown
    refs: int = -1

    @property
    def listed_name(self) -> str:
        return f"{self.node}/{self.volume.name}" if self.volume.driver == "local" else self.volume.name


def volume_model(doc: dict[str, Any]) -> Volume:
    return Volume(name=str(doc.get("Name") or ""), driver=str(doc.get("Driver") or "local"),
                  mountpoint=str(doc.get("Mountpoint") or ""), created=str(doc.get("CreatedAt") or ""),
                  labels=dict(doc.get("Labels") or {}), options=dict(doc.get("Options") or {}),
                  scope=str(doc.get("Scope") or "local"))


async def fetch_volumes(client: EngineClient, previous: list[NodeVolume] | None) -> list[NodeVolume]:
    doc = await client.get("/volumes") or {}
    return [NodeVolume(client.node, volume_model(v)) for v in doc.get("Volumes") or []]


class ClusterVolumes(Service):
    """The manager's ``volumes`` service over every node's engine."""

    name = "volumes"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        # removing a container's anonymous volumes emits volume events too
        self.view: NodeView[list[NodeVolume]] = NodeView(kernel, "volumes", {"volume"}, fetch_volumes)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    def _all(self) -> list[NodeVolume]:
        return [v for _n, vols in self.view.items() for v in vols]

    def _find(self, ref: str) -> list[NodeVolume]:
        node, name = split_node(ref, set(self.view.data))
        return [v for v in self._all() if v.volume.name == name and node in ("", v.node)]

    def holders(self, ref: str) -> list[str]:
        """Nodes holding a volume named ``ref`` (``NODE/NAME`` or a bare name)."""
        return sorted({v.node for v in self._find(ref)})

    def list(self) -> list[Volume]:
        out: list[Volume] = []
        seen: set[str] = set()
        for v in self._all():
            if v.listed_name in seen:
                continue
            seen.add(v.listed_name)
            out.append(replace(v.volume, name=v.listed_name))
        return out

    def get(self, name: str) -> Volume:
        found = self._find(name)
        if not found:
            raise NotFound(f"get {name}: no such volume")
        return found[0].volume

    def in_use(self) -> set[str]:
        """Listed names of volumes some container references (the engines' ``dangling`` view)."""
        containers = self.kernel.containers
        from dockyard.services.volumes import volume_references

        used: set[str] = set()
        for c in containers.list():
            for name in volume_references(c):
                used.add(f"{c.host}/{name}" if c.host else name)
                used.add(name)
        return used

    async def usage(self, vol: Volume) -> int:
        return -1

    async def driver(self, name: str) -> Any:
        from dockyard_swarm.images import not_on_manager

        raise not_on_manager("a volume driver")

    async def _healthy(self) -> list[Any]:
        nodes = [n for n in await nodes_service(self.kernel).nodes() if n.healthy]
        if not nodes:
            raise NotFound("no healthy node in the cluster")
        return nodes

    async def create(self, name: str = "", driver: str = "local", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        nodes = await self._healthy()
        node_name, bare = split_node(name, {n.name for n in nodes})
        if name and "/" in name and not node_name:
            raise NotFound(f"create {name}: no node {name.partition('/')[0]} in the cluster")
        bare = bare or secrets.token_hex(32)
        targets = [n for n in nodes if n.name == node_name] if node_name else nodes
        body = {"Name": bare, "Driver": driver, "DriverOpts": dict(options or {}), "Labels": dict(labels or {})}
        results = await asyncio.gather(*(engine(self.kernel, n).post("/volumes/create", body=body) for n in targets),
                                       return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(n.name) for n in targets))
        made = [r for r in results if isinstance(r, dict)]
        if not made:
            raise next(r for r in results if isinstance(r, BaseException))
        vol = volume_model(made[0])
        return replace(vol, name=f"{targets[0].name}/{vol.name}") if node_name and vol.driver == "local" else vol

    async def remove(self, name: str, force: bool = False) -> None:
        found = self._find(name)
        if not found:
            raise NotFound(f"remove {name}: no such volume")
        directory = nodes_service(self.kernel)
        nodes = {v.node: await directory.node(v.node) for v in found}
        results = await asyncio.gather(*(engine(self.kernel, nodes[v.node]).request(
            "DELETE", f"/volumes/{v.volume.name}", {"force": force}) for v in found), return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(v.node) for v in found))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def prune(self, match: Callable[[Volume], bool] | None = None) -> tuple[list[str], int]:
        """Remove, on each node, volumes no container references and ``match`` accepts."""
        deleted: list[str] = []
        used = self.in_use()
        for v in self._all():
            if v.listed_name in used or v.volume.name in used and v.volume.driver != "local":
                continue
            if match is not None and not match(v.volume):
                continue
            node = await nodes_service(self.kernel).node(v.node)
            try:
                await engine(self.kernel, node).request("DELETE", f"/volumes/{v.volume.name}")
            except (Conflict, NotFound):
                continue
            deleted.append(v.listed_name)
        await asyncio.gather(*(self.view.refresh(n) for n in {v.node for v in self._all()}))
        return deleted, 0


__all__ = ["ClusterVolumes", "NodeVolume", "fetch_volumes", "volume_model"]
