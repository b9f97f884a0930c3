"""``VolumeDriver`` over a Docker volume plugin.

The ABC mirrors the protocol: ``Create``, ``Remove``, ``Mount``/``Unmount`` (``ID`` = the
container, so each container's use is counted once by the plugin), ``List``, ``Get``, ``Path``,
``Capabilities``. ``create`` returns ``Path``'s answer (a plugin may have no mountpoint before
the first ``Mount``: then ""). The daemon bind-mounts the path ``Mount`` returns; a ``Mount``
answering a path that does not exist on the host is refused (and ``Unmount``-ed).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

from dockyard.errors import DockyardError, NotFound
from dockyard.specs.storage import VolumeDriver, VolumeMount
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.remote import RemotePlugin


class RemoteVolumeDriver(RemotePlugin, VolumeDriver):
    interface: ClassVar[str] = "VolumeDriver"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.scope = "local"

    async def setup(self) -> None:
        await self.activate()
        caps = await self.call("Capabilities", {}, optional=True)
        inner = caps.get("Capabilities") if isinstance(caps.get("Capabilities"), dict) else {}
        self.scope = str(inner.get("Scope") or "local")

    def status(self) -> list[tuple[str, str]]:
        return [("Plugin", self.address()), ("Scope", self.scope)]

    async def create(self, name: str, options: dict[str, str]) -> str:
        await self.call("Create", {"Name": name, "Opts": dict(options)}, long=True)
        try:
            reply = await self.call("Path", {"Name": name})
        except DockyardError:
            return ""
        return str(reply.get("Mountpoint") or "")

    async def remove(self, name: str) -> None:
        await self.call("Remove", {"Name": name})

    async def mount(self, name: str, container_id: str) -> VolumeMount:
        reply = await self.call("Mount", {"Name": name, "ID": container_id}, long=True)
        path = str(reply.get("Mountpoint") or "")
        if not path or not os.path.isabs(path) or not os.path.isdir(path):
            with contextlib.suppress(DockyardError):
                await self.call("Unmount", {"Name": name, "ID": container_id})
            raise PluginFailed(f"plugin {self.plugin_name}: Mount of {name} answered Mountpoint={path!r}, "
                               "which is not a directory on this host")
        return VolumeMount(path=path)

    async def unmount(self, name: str, container_id: str) -> None:
        await self.call("Unmount", {"Name": name, "ID": container_id})

    async def list(self) -> list[str]:
        reply = await self.call("List", {})
        vols = reply.get("Volumes") or []
        if not isinstance(vols, list):
            raise PluginFailed(f"plugin {self.plugin_name}: List answered Volumes={vols!r}")
        return sorted(str(v.get("Name")) for v in vols if isinstance(v, dict) and v.get("Name"))

    async def options(self, name: str) -> dict[str, str]:
        try:
            await self.call("Get", {"Name": name})
        except PluginFailed as exc:
            raise NotFound(f"get {name}: {exc}") from exc
        return {}
