"""The local engine's ``system`` service: ``/info`` counts and ``/system/df`` sizes, read from
this host's store and drivers (the API front only shapes them)."""

from __future__ import annotations

import collections

from dockyard.errors import DockyardError
from dockyard.model import Container, ContainerStatus, Image
from dockyard.services import Service
from dockyard.services.system import ContainerUsage, DiskUsage, EngineInfo, ImageUsage, VolumeUsage
from dockyard.services.volumes import volume_references

_RUNNING = (ContainerStatus.RUNNING, ContainerStatus.RESTARTING)


class SystemService(Service):
    name = "system"

    async def info(self) -> EngineInfo:
        kernel = self.kernel
        by_status: collections.Counter[ContainerStatus] = collections.Counter(
            c.state.status for c in self.store.list(Container))
        storage = kernel.selected_driver_name("storage")
        drv = kernel.ready_drivers("storage").get(storage)
        runtimes: dict[str, dict[str, str]] = {}
        if kernel.registry.driver_names("arch"):
            runtimes = {name: {"path": name} for name in ("crun", "runc")}
            runtimes.update(kernel.config.get("runtimes") or {})
        checkpoint = await self._checkpoint_status(runtimes) if runtimes else ""
        platforms = await self._platforms() if runtimes else []
        running = sum(by_status[s] for s in _RUNNING)
        paused = by_status[ContainerStatus.PAUSED]
        return EngineInfo(
            containers_running=running, containers_paused=paused,
            containers_stopped=sum(by_status.values()) - running - paused,
            images=self.store.count(Image),
            storage_driver=storage,
            driver_status=list(drv.status()) if drv is not None else [],
            volume_drivers=kernel.driver_names("volume"),  # installed, and Docker plugins in use
            network_drivers=kernel.driver_names("network"),
            runtimes=runtimes,
            default_runtime=str(kernel.config.get("default-runtime") or ""),
            security_options=["name=seccomp,profile=default"] if runtimes else [],
            checkpoint=checkpoint,
            platforms=platforms,
            os_type=next((p.split("/", 1)[0] for p, emulated in platforms if not emulated), ""),
        )

    async def _platforms(self) -> list[tuple[str, bool]]:
        """The runtime driver's ``platforms()`` (native first), normalized; [] when it cannot
        be readied (``/info`` still answers)."""
        from dockyard.platforms import Platform, normalize

        try:
            rt = await self.kernel.driver_ready("arch")
        except DockyardError:
            return []
        out: list[tuple[str, bool]] = []
        for p in rt.platforms():
            name = str(normalize(Platform(p.os, p.architecture, p.variant)))
            if all(name != have for have, _ in out):
                out.append((name, bool(p.emulated)))
        return out

    async def _checkpoint_status(self, runtimes: dict[str, dict[str, str]]) -> str:
        """"available for runc" / "not available: <why, naming the fix>"."""
        from dockyard.specs.arch import CheckpointDriver

        try:
            rt = await self.kernel.driver_ready("arch")
        except DockyardError as exc:
            return f"not available: {exc}"
        if not isinstance(rt, CheckpointDriver):
            return f"not available: the {rt.info.name} runtime driver cannot checkpoint"
        why = {name: rt.checkpoint_support(name) for name in sorted(runtimes)}
        able = [name for name, problem in why.items() if not problem]
        if not able:
            return "not available: " + "; ".join(sorted(set(why.values())))
        default = rt.resolve_runtime("")
        text = f"available for {', '.join(able)}"
        if why.get(default):
            text += f" (not for the default runtime {default}: --runtime runc or --default-runtime runc)"
        if not self.kernel.config.get("experimental"):
            text += "; the Docker checkpoint API needs --experimental"
        return text

    async def df(self) -> DiskUsage:
        kernel = self.kernel
        data = kernel.images.df()
        images = [ImageUsage(img, n, shared) for img, n, shared in data["images"]]
        by_id = {u.image.id: u.image for u in images}
        drv = None
        try:
            drv = await kernel.images.driver()
        except DockyardError:
            pass
        containers = []
        refs: collections.Counter[str] = collections.Counter()
        for c in self.store.list(Container):
            size_rw = 0
            if drv is not None:
                try:
                    if await drv.exists(c.id):
                        size_rw = await drv.usage(c.id)
                except (DockyardError, OSError):
                    size_rw = 0
            img = by_id.get(c.image_id)
            containers.append(ContainerUsage(c, size_rw, size_rw + (img.size if img else 0)))
            refs.update(volume_references(c))
        volumes = [VolumeUsage(v, refs.get(v.name, 0), await kernel.volumes.usage(v))
                   for v in kernel.volumes.list()]
        return DiskUsage(layers_size=data["layers_size"], images=images, containers=containers, volumes=volumes)
