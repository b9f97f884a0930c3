"""The manager's ``system`` service: ``/info`` and ``/system/df`` over every node.

``info`` answers with Swarm classic's ``/info``: the containers and images of every node added
up, CPUs and memory of the healthy nodes added up, ``ServerVersion`` ``swarm/VERSION``, and its
``SystemStatus`` (which ``docker info`` prints as it comes)::

    Role: primary                      (replica, with Primary: ADDR, under --replication)
    Strategy: spread
    Filters: affinity, constraint, ...
    Nodes: 3
     h1: 10.247.3.2:2376
      └ ID: <the engine's ID>
      └ Status: Healthy
      └ Containers: 2 (1 Running, 0 Paused, 1 Stopped)
      └ Reserved CPUs: 0 / 2
      └ Reserved Memory: 0 B / 1.952 GiB
      └ Labels: kernelversion=..., operatingsystem=..., storagedriver=vfs, zone=a
      └ UpdatedAt: 2026-12-07T11:30:02Z
      └ ServerVersion: 0.1.0
      └ Error: (none)

Each node's ``/info`` is kept in a per-node view, fetched again at ``/info`` time for the nodes
whose container or image events made it stale;
reservations are read from the cluster store (``reservations/<node>``, the placement's).
``df`` adds the nodes' ``/system/df`` up, naming local volumes ``NODE/NAME``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dockyard import __version__
from dockyard.errors import DockyardError
from dockyard.model import Container, ContainerState, ContainerStatus, Image, Volume
from dockyard.services import Service
from dockyard.services.system import ContainerUsage, DiskUsage, EngineInfo, ImageUsage, VolumeUsage
from dockyard_swarm.events import NodeView, engine, node_addr, nodes_service

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.specs.cluster import Node
    from dockyard_swarm.engines import EngineClient

RESERVATIONS = "reservations/"


async def fetch_info(client: EngineClient, previous: dict[str, Any] | None) -> dict[str, Any]:
    return dict(await client.get("/info", timeout=10) or {})


def bytes_size(size: float) -> str:
    """go-units ``BytesSize`` as Swarm classic printed it: ``0 B``, ``1.952 GiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g} {units[i]}"


def _cpus(value: float) -> str:
    return f"{value:g}"


def node_labels(node: Node) -> str:
    """Swarm classic's node labels: the engine's facts and its ``--label``s, sorted."""
    info = node.info or {}
    facts = {"kernelversion": info.get("KernelVersion"), "operatingsystem": info.get("OperatingSystem"),
             "storagedriver": info.get("Driver"), "ostype": info.get("OSType") or "linux"}
    labels = {k: str(v) for k, v in facts.items() if v}
    labels.update(node.labels)
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


class ClusterSystem(Service):
    """The manager's ``system`` service."""

    name = "system"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        # lazy: a container event only marks its node stale; /info fetches the stale ones
        self.view: NodeView[dict[str, Any]] = NodeView(kernel, "info", {"container", "image"}, fetch_info,
                                                       lazy=True)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    # ------------------------------------------------------------------ facts
    def _scheduling(self) -> tuple[str, str]:
        """(strategy, filters) as configured (every installed filter when none is named)."""
        values = self.kernel.config.values
        strategy = str(values.get("strategy") or "spread")
        wanted = values.get("filters")
        try:
            from dockyard.scheduler import select

            strat, flts = select(self.kernel, strategy, [str(f) for f in wanted] if wanted else None)
            return strat.name, ", ".join(f.name for f in flts)
        except DockyardError:
            return strategy, ", ".join(str(f) for f in wanted or [])

    def _role(self) -> list[tuple[str, str]]:
        if not self.kernel.has_service("leadership"):
            return [("Role", "primary")]
        leadership: Any = self.kernel.service("leadership")
        if leadership.is_leader:
            return [("Role", "primary")]
        return [("Role", "replica"), ("Primary", str(leadership.leader or "(unknown)"))]

    async def _reservations(self) -> dict[str, dict[str, Any]]:
        try:
            store = await self.kernel.cluster_store()
            listing = await store.list(RESERVATIONS)
        except DockyardError:
            return {}
        out = {}
        for kv in listing:
            try:
                out[kv.key.removeprefix(RESERVATIONS)] = dict(kv.json() or {})
            except ValueError:
                continue
        return out

    async def info(self) -> EngineInfo:
        nodes = await nodes_service(self.kernel).nodes()
        await self.view.fresh()
        reservations = await self._reservations()
        relay: Any = self.kernel.service("node-events") if self.kernel.has_service("node-events") else None
        strategy, filters = self._scheduling()
        status: list[tuple[str, str]] = [*self._role(), ("Strategy", strategy), ("Filters", filters),
                                         ("Nodes", str(len(nodes)))]
        running = paused = stopped = images = 0
        ncpu = mem = 0
        for node in nodes:
            info = self.view.data.get(node.name, {})
            healthy = node.healthy and not (relay is not None and relay.connected.get(node.name) is False)
            r, p, s = (int(info.get(k) or 0) for k in ("ContainersRunning", "ContainersPaused", "ContainersStopped"))
            if healthy:
                running, paused, stopped = running + r, paused + p, stopped + s
                images += int(info.get("Images") or 0)
                ncpu += int(node.cpus or info.get("NCPU") or 0)
                mem += int(node.memory or info.get("MemTotal") or 0)
            res = reservations.get(node.name, {})
            cpus = int(node.cpus or info.get("NCPU") or 0)
            memory = int(node.memory or info.get("MemTotal") or 0)
            updated = self.view.updated.get(node.name)
            error = self.view.errors.get(node.name) or ("" if node.healthy else "heartbeats missed")
            status += [
                (f" {node.name}", node_addr(node)),
                ("  └ ID", str(info.get("ID") or (relay.node_ids.get(node.name, "") if relay else ""))),
                ("  └ Status", "Healthy" if healthy else "Unhealthy"),
                ("  └ Containers", f"{r + p + s} ({r} Running, {p} Paused, {s} Stopped)"),
                ("  └ Reserved CPUs", f"{_cpus(float(res.get('cpus') or node.reserved_cpus or 0))} / {cpus}"),
                ("  └ Reserved Memory",
                 f"{bytes_size(float(res.get('memory') or node.reserved_memory or 0))} / {bytes_size(memory)}"),
                ("  └ Labels", node_labels(node)),
                ("  └ UpdatedAt", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated)) if updated else ""),
                ("  └ ServerVersion", str(info.get("ServerVersion") or (node.info or {}).get("ServerVersion") or "")),
                ("  └ Error", error or "(none)"),
            ]
        return EngineInfo(containers_running=running, containers_paused=paused, containers_stopped=stopped,
                          images=images, system_status=status, ncpu=ncpu, mem_total=mem,
                          server_version=f"swarm/{__version__}")

    async def df(self) -> DiskUsage:
        """``docker system df`` over every healthy node (local volumes named ``NODE/NAME``)."""
        from dockyard_swarm.images import NodeImage, image_model
        from dockyard_swarm.volumes import volume_model

        usage = DiskUsage()
        for node in [n for n in await nodes_service(self.kernel).nodes() if n.healthy]:
            try:
                doc = await engine(self.kernel, node).get("/system/df")
            except DockyardError:
                continue
            usage = DiskUsage(
                layers_size=usage.layers_size + int(doc.get("LayersSize") or 0),
                images=usage.images + [ImageUsage(image=_image(NodeImage, image_model, i),
                                                  containers=int(i.get("Containers") or 0),
                                                  shared_size=int(i.get("SharedSize") or 0))
                                       for i in doc.get("Images") or []],
                containers=usage.containers + [ContainerUsage(container=_container(c, node.name),
                                                              size_rw=int(c.get("SizeRw") or 0),
                                                              size_root_fs=int(c.get("SizeRootFs") or 0))
                                               for c in doc.get("Containers") or []],
                volumes=usage.volumes + [VolumeUsage(volume=_volume(volume_model, v, node.name),
                                                     ref_count=int((v.get("UsageData") or {}).get("RefCount") or 0),
                                                     size=int((v.get("UsageData") or {}).get("Size", -1)))
                                         for v in doc.get("Volumes") or []],
            )
        return usage


def _image(node_image: Any, image_model: Any, summary: dict[str, Any]) -> Image:
    img: Image = image_model(node_image(summary, {"Created": _iso(summary.get("Created"))}))
    return img


def _iso(created: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(created)))
    except (TypeError, ValueError):
        return str(created or "")


def _container(doc: dict[str, Any], node: str) -> Container:
    from dockyard.model import ContainerConfig, HostConfig

    names = [str(n).lstrip("/") for n in doc.get("Names") or []]
    return Container(id=str(doc.get("Id") or ""), name=f"{node}/{names[0]}" if names else "",
                     config=ContainerConfig(image=str(doc.get("Image") or ""),
                                            cmd=str(doc.get("Command") or "").split()),
                     host_config=HostConfig(), image_id=str(doc.get("ImageID") or ""),
                     state=ContainerState(status=_status(doc.get("State"))),
                     created=_iso(doc.get("Created")), host=node)


def _status(state: Any) -> ContainerStatus:
    try:
        return ContainerStatus(str(state or "created"))
    except ValueError:
        return ContainerStatus.CREATED


def _volume(volume_model: Any, doc: dict[str, Any], node: str) -> Volume:
    vol: Volume = volume_model(doc)
    if vol.driver == "local":
        vol.name = f"{node}/{vol.name}"
    return vol


__all__ = ["ClusterSystem", "bytes_size", "node_labels"]
