"""``IpamDriver`` over a Docker IPAM plugin (libnetwork's remote IPAM).

``request_pool`` is ``RequestPool`` then, as libnetwork does on network create, the gateway:
from the pool's ``Data`` (``com.docker.network.gateway``) when the plugin gave one, else a
``RequestAddress`` of type gateway (the ``--gateway`` asked for, or any). Which gateway address
was taken is kept in the driver's data directory, so ``release_pool`` gives it back first, then
``ReleasePool`` (libnetwork's reverse order). Addresses are CIDR both ways; an answer without a
prefix length gets the pool's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from typing import Any, ClassVar

from dockyard.errors import DockyardError
from dockyard.jsonfile import write_json
from dockyard.specs.network import GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, IpamDriver, Pool
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.remote import RemotePlugin

GATEWAY_KEY = "com.docker.network.gateway"
REQUEST_TYPE = "RequestAddressType"


class RemoteIpamDriver(RemotePlugin, IpamDriver):
    interface: ClassVar[str] = "IpamDriver"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.spaces = (LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE)
        self.requires_mac = False

    async def setup(self) -> None:
        await self.activate()
        caps = await self.call("GetCapabilities", {}, optional=True)
        self.requires_mac = bool(caps.get("RequiresMACAddress"))
        spaces = await self.call("GetDefaultAddressSpaces", {})
        self.spaces = (str(spaces.get("LocalDefaultAddressSpace") or LOCAL_ADDRESS_SPACE),
                       str(spaces.get("GlobalDefaultAddressSpace") or GLOBAL_ADDRESS_SPACE))

    def default_address_spaces(self) -> tuple[str, str]:
        return self.spaces

    # ------------------------------------------------------------------ bookkeeping
    @property
    def _state_file(self) -> Any:
        return self.context.data_dir / "pools.json"

    def _pools(self) -> dict[str, dict[str, str]]:
        try:
            doc = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _save(self, pools: dict[str, dict[str, str]]) -> None:
        write_json(self._state_file, pools)

    # ------------------------------------------------------------------ the protocol
    async def request_pool(self, subnet: str = "", ip_range: str = "", gateway: str = "", v6: bool = False,
                           options: dict[str, str] | None = None, address_space: str = "") -> Pool:
        reply = await self.call("RequestPool", {"AddressSpace": address_space or self.spaces[0], "Pool": subnet,
                                                "SubPool": ip_range, "Options": dict(options or {}), "V6": v6})
        pool_id, cidr = str(reply.get("PoolID") or ""), str(reply.get("Pool") or "")
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            if pool_id:
                with contextlib.suppress(DockyardError):
                    await self.call("ReleasePool", {"PoolID": pool_id})
            raise PluginFailed(f"plugin {self.plugin_name}: RequestPool answered PoolID={pool_id!r} "
                               f"Pool={cidr!r}") from exc
        data = reply.get("Data") if isinstance(reply.get("Data"), dict) else {}
        gw, requested = str(data.get(GATEWAY_KEY) or ""), False
        try:
            if not gw:
                gw = await self._request(pool_id, net.prefixlen, gateway.split("/")[0], {REQUEST_TYPE: GATEWAY_KEY})
                requested = True
        except BaseException:
            with contextlib.suppress(DockyardError):
                await self.call("ReleasePool", {"PoolID": pool_id})
            raise
        pools = self._pools()
        pools[pool_id] = {"pool": str(net), "gateway": gw if requested else ""}
        self._save(pools)
        return Pool(pool_id=pool_id, subnet=str(net), gateway=gw)

    async def release_pool(self, pool_id: str) -> None:
        pools = self._pools()
        known = pools.get(pool_id, {})
        if known.get("gateway"):
            with contextlib.suppress(DockyardError):
                await self.call("ReleaseAddress", {"PoolID": pool_id, "Address": known["gateway"].split("/")[0]})
        await self.call("ReleasePool", {"PoolID": pool_id})
        pools.pop(pool_id, None)
        self._save(pools)

    async def request_address(self, pool_id: str, address: str = "") -> str:
        prefix = ipaddress.ip_network(self._pools().get(pool_id, {}).get("pool") or "0.0.0.0/32").prefixlen
        return await self._request(pool_id, prefix, address, {})

    async def _request(self, pool_id: str, prefixlen: int, address: str, options: dict[str, str]) -> str:
        reply = await self.call("RequestAddress", {"PoolID": pool_id, "Address": address, "Options": options})
        got = str(reply.get("Address") or "")
        try:
            iface = ipaddress.ip_interface(got if "/" in got else f"{got}/{prefixlen}")
        except ValueError as exc:
            raise PluginFailed(f"plugin {self.plugin_name}: RequestAddress answered Address={got!r}") from exc
        return str(iface)

    async def release_address(self, pool_id: str, address: str) -> None:
        await self.call("ReleaseAddress", {"PoolID": pool_id, "Address": address.split("/")[0]})
