"""What the three adapters share: activation of their plugin and calls through its client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dockyard.errors import DockyardError, InvalidArgument
from dockyard_docker_plugins.client import PluginClient

if TYPE_CHECKING:
    from dockyard_docker_plugins.source import DockerPlugins


class RemotePlugin:
    """Mixed into each adapter; the source sets ``plugins`` and ``plugin_name`` on the class
    it makes per name."""

    plugins: ClassVar[DockerPlugins]
    plugin_name: ClassVar[str]
    interface: ClassVar[str]

    @property
    def client(self) -> PluginClient:
        return self.plugins.client(self.plugin_name)

    def address(self) -> str:
        """Where the plugin is (for ``status``), or why it cannot be found now."""
        try:
            return self.client.found.address
        except DockyardError as exc:
            return str(exc)

    async def activate(self) -> None:
        """``/Plugin.Activate`` (retried while the plugin is not reachable); the plugin must
        list this adapter's interface in ``Implements``."""
        implements = await self.client.activate()
        if self.interface not in implements:
            raise InvalidArgument(f"plugin {self.plugin_name} does not implement {self.interface} "
                                  f"(it implements: {', '.join(implements) or 'nothing'})")

    async def call(self, method: str, body: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        return await self.client.call(f"{self.interface}.{method}", body if body is not None else {}, **kwargs)
