"""``CniDriver``: a dockyard network driver that runs CNI conflists with the
containernetworking-plugins binaries (entry point ``dockyard.drivers.network:cni``).

Per network a conflist ``<data_dir>/conf/<network id>.conflist`` chains ``bridge`` (a Linux
bridge named after the daemon's owner, the gateway on it, hairpin mode), ``host-local`` IPAM over
the network's IPAM pools (the service reserves the pool; host-local hands out the addresses, so
``allocates_addresses`` is true) and, when the binary is present, ``portmap`` for published ports
(``runtimeConfig.portMappings``). ``join`` is ADD, ``leave`` is DEL with the cached result of the
ADD (``<data_dir>/results/<network id>/<container id>-<ifname>.json``), :meth:`CniDriver.check`
is CHECK. An nft table (``isolation.py``) keeps this daemon's CNI networks apart.

Settings (driver option, else the daemon config key): ``cni-path`` (``:``-separated plugin
directories, default ``/usr/lib/cni:/opt/cni/bin:/usr/libexec/cni``), ``mtu`` (1500).
Network options: ``com.docker.network.driver.mtu``; anything else is an InvalidArgument.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument
from dockyard.jsonfile import write_json
from dockyard.model import Network
from dockyard.specs import ConfigOption, DriverContext, DriverInfo, NetworkDriver
from dockyard.specs.network import EndpointRequest, EndpointResult, PortMapping
from dockyard_network_cni import cni, isolation

log = logging.getLogger(__name__)

DEFAULT_CNI_PATH = "/usr/lib/cni:/opt/cni/bin:/usr/libexec/cni"
CNI_VERSION = "1.0.0"
OPT_MTU = "com.docker.network.driver.mtu"
KNOWN_OPTIONS = (OPT_MTU,)
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _setting(context: DriverContext, key: str, default: str) -> str:
    value = context.options.get(key)
    if value is None:
        value = context.daemon_config.get(key)
    return default if value is None else str(value)


def tag(owner: str) -> str:
    """The owner itself when it fits in 8 characters, else 2 characters + 6 hex of its hash."""
    if 0 < len(owner) <= 8 and re.fullmatch(r"[A-Za-z0-9_.-]+", owner):
        return owner
    return (owner[:2] or "dy") + hashlib.sha256(owner.encode()).hexdigest()[:6]


def bridge_name(owner: str, network_id: str) -> str:
    t = tag(owner)
    return f"{t}c{network_id[:15 - len(t) - 1]}"


def _bridge_links(prefix: str) -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [m.get("ifname") for m in ipr.link("dump")
                if (m.get("ifname") or "").startswith(prefix)
                and m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "bridge"]


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                raise


def _free_port(protocol: str, host_ip: str, low: int, high: int, taken: set[tuple[str, int]]) -> int:
    """A host port nobody listens on: ``low`` itself, the first free one of ``low..high``, or
    (``low == 0``) one the kernel picks."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    candidates = [0] if low == 0 else list(range(low, (high or low) + 1))
    for port in candidates:
        if port and (protocol, port) in taken:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host_ip or "0.0.0.0", port))
            except OSError:
                continue
            chosen = s.getsockname()[1]
            if (protocol, chosen) not in taken:
                return chosen
    raise Conflict(f"no free host port for {protocol} {low}-{high or low}")


class CniDriver(NetworkDriver):
    info = DriverInfo(
        name="cni", kind="network",
        description="Runs CNI conflists (bridge + host-local + portmap) with containernetworking-plugins",
        capabilities=frozenset({"connectivity", "isolation", "internal", "port-publishing"}),
    )
    config_options = (
        ConfigOption("cni-path", str, DEFAULT_CNI_PATH, "directories holding CNI plugin binaries"),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.owner = context.owner
        self.path = [p for p in _setting(context, "cni-path", DEFAULT_CNI_PATH).split(":") if p]
        try:
            self._default_mtu = int(_setting(context, "mtu", "1500"))
        except ValueError as exc:
            raise InvalidArgument(f"cni driver option mtu: {exc}") from exc
        data = Path(context.data_dir)
        self.conf_dir = data / "conf"
        self.results_dir = data / "results"
        self.ipam_dir = data / "ipam"
        self._lock = asyncio.Lock()
        self._portmap = False

    @property
    def allocates_addresses(self) -> bool:
        return True

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        """Check the plugins are installed and speak CNI 1.0.0; delete bridges of ours that no
        conflist explains (networks removed while the daemon was down)."""
        for plugin in ("bridge", "host-local", "loopback"):
            cni.find_plugin(plugin, self.path)
        supported = await asyncio.to_thread(cni.version, self.path, "bridge")
        if CNI_VERSION not in supported:
            raise cni.CniError("bridge", "VERSION", 1, f"CNI {CNI_VERSION} not supported (only {supported})")
        try:
            cni.find_plugin("portmap", self.path)
            self._portmap = shutil.which("iptables") is not None
        except Exception:  # noqa: BLE001 - portmap is optional
            self._portmap = False
        for d in (self.conf_dir, self.results_dir, self.ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        known = {bridge_name(self.owner, p.stem) for p in self.conf_dir.glob("*.conflist")}
        for name in await asyncio.to_thread(_bridge_links, tag(self.owner) + "c"):
            if name not in known:
                log.info("removing leftover CNI bridge %s", name)
                await asyncio.to_thread(_delete_link, name)
        async with self._lock:
            await self._sync_isolation()

    async def _sync_isolation(self) -> None:
        """Regenerate the isolation table from the conflists on disk (under ``_lock``)."""
        bridges = [bridge_name(self.owner, p.stem) for p in self.conf_dir.glob("*.conflist")]
        await isolation.apply(isolation.table_name(self.owner), bridges)

    def status(self) -> list[tuple[str, str]]:
        nets = len(list(self.conf_dir.glob("*.conflist"))) if self.conf_dir.exists() else 0
        return [("CNI path", ":".join(self.path)), ("Networks", str(nets)),
                ("portmap", "yes" if self._portmap else "no")]

    # ------------------------------------------------------------------ networks
    def conflist_for(self, network: Network) -> dict[str, Any]:
        """The conflist of ``network`` (validated): bridge + host-local [+ portmap]."""
        unknown = sorted(set(network.options) - set(KNOWN_OPTIONS))
        if unknown:
            raise InvalidArgument(f"cni driver: unknown option(s) {', '.join(unknown)}; known: {', '.join(KNOWN_OPTIONS)}")
        mtu = self._default_mtu
        if OPT_MTU in network.options:
            try:
                mtu = int(network.options[OPT_MTU])
            except ValueError as exc:
                raise InvalidArgument(f"option {OPT_MTU}: {network.options[OPT_MTU]!r} is not an integer") from exc
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"option {OPT_MTU}: MTU {mtu} is outside 68..65535")
        if not network.ipam_pools:
            raise InvalidArgument("a cni network needs at least one IPAM pool (subnet)")
        ranges = []
        for pool in network.ipam_pools:
            try:
                subnet = ipaddress.ip_network(pool.subnet, strict=False)
            except ValueError as exc:
                raise InvalidArgument(f"bad subnet {pool.subnet!r}: {exc}") from exc
            r: dict[str, Any] = {"subnet": str(subnet)}
            if pool.gateway:
                r["gateway"] = pool.gateway.split("/")[0]
            if pool.ip_range:
                rng = ipaddress.ip_network(pool.ip_range, strict=False)
                hosts = [rng.network_address + 1, rng.broadcast_address - 1] if rng.num_addresses > 2 else \
                    [rng.network_address, rng.broadcast_address]
                r["rangeStart"], r["rangeEnd"] = str(hosts[0]), str(hosts[1])
            ranges.append([r])
        plugins: list[dict[str, Any]] = [{
            "type": "bridge", "bridge": bridge_name(self.owner, network.id), "isGateway": True,
            "isDefaultGateway": not network.internal, "ipMasq": False, "hairpinMode": True, "mtu": mtu,
            "ipam": {"type": "host-local", "ranges": ranges, "dataDir": str(self.ipam_dir)},
        }]
        if self._portmap and not network.internal:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
        return {"cniVersion": CNI_VERSION, "name": f"dockyard-{self.owner}-{network.id[:12]}", "plugins": plugins}

    def _conf_path(self, network_id: str) -> Path:
        return self.conf_dir / f"{network_id}.conflist"

    async def create_network(self, network: Network) -> dict[str, Any]:
        conflist = self.conflist_for(network)
        async with self._lock:
            path = self._conf_path(network.id)
            if path.exists():
                raise Conflict(f"network {network.id[:12]} already exists in the cni driver")
            await asyncio.to_thread(write_json, path, conflist, durable=True)
            try:
                await self._sync_isolation()
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return {"bridge": conflist["plugins"][0]["bridge"], "cni_name": conflist["name"]}

    async def delete_network(self, network: Network) -> None:
        """Remove the conflist, host-local's records and the bridge the plugin made. Refused
        while endpoints are attached."""
        from dockyard.errors import Forbidden

        async with self._lock:
            results = self.results_dir / network.id
            if results.exists() and any(results.glob("*.json")):
                raise Forbidden(f"network {network.id[:12]} has active endpoints")
            self._conf_path(network.id).unlink(missing_ok=True)
            shutil.rmtree(results, ignore_errors=True)
            shutil.rmtree(self.ipam_dir / f"dockyard-{self.owner}-{network.id[:12]}", ignore_errors=True)
            await asyncio.to_thread(_delete_link, bridge_name(self.owner, network.id))
            await self._sync_isolation()

    async def restore(self, network: Network) -> None:
        """Re-write a lost conflist (the bridge comes back with the next ADD)."""
        async with self._lock:
            path = self._conf_path(network.id)
            if not path.exists():
                await asyncio.to_thread(write_json, path, self.conflist_for(network), durable=True)
            await self._sync_isolation()

    # ------------------------------------------------------------------ endpoints
    def _result_path(self, network_id: str, container_id: str, ifname: str) -> Path:
        return self.results_dir / network_id / f"{container_id}-{ifname}.json"

    def _load_conflist(self, network: Network) -> dict[str, Any]:
        path = self._conf_path(network.id)
        if not path.exists():
            write_json(path, self.conflist_for(network), durable=True)
        return json.loads(path.read_text())

    def _taken_ports(self) -> set[tuple[str, int]]:
        taken = set()
        for f in self.results_dir.glob("*/*.json"):
            with contextlib.suppress(OSError, ValueError):
                for p in json.loads(f.read_text()).get("ports", []):
                    taken.add((p["protocol"], p["host_port"]))
        return taken

    async def join(self, request: EndpointRequest) -> EndpointResult:
        if not _IFNAME.match(request.ifname):
            raise InvalidArgument(f"bad interface name {request.ifname!r}")
        if not request.netns_path or not os.path.exists(request.netns_path):
            raise InvalidArgument(f"network namespace {request.netns_path!r} does not exist")
        async with self._lock:
            conflist = await asyncio.to_thread(self._load_conflist, request.network)
            path = self._result_path(request.network.id, request.container_id, request.ifname)
            if path.exists():
                raise Conflict(f"container {request.container_id[:12]} already joined on {request.ifname}")
            ports: list[PortMapping] = []
            if request.ports:
                if not any(p["type"] == "portmap" for p in conflist["plugins"]):
                    raise InvalidArgument("this cni network cannot publish ports (internal, or no portmap plugin)")
                taken = self._taken_ports()
                for p in request.ports:
                    if p.protocol not in ("tcp", "udp"):
                        raise InvalidArgument(f"the cni driver publishes tcp and udp only, not {p.protocol}")
                    port = await asyncio.to_thread(_free_port, p.protocol, p.host_ip, p.host_port,
                                                   p.host_port_end, taken)
                    taken.add((p.protocol, port))
                    ports.append(PortMapping(container_port=p.container_port, protocol=p.protocol,
                                             host_ip=p.host_ip, host_port=port))
            runtime = {"portMappings": [{"hostPort": p.host_port, "containerPort": p.container_port,
                                         "protocol": p.protocol, "hostIP": p.host_ip} for p in ports]}
            inv = cni.Invocation(request.container_id, request.netns_path, request.ifname,
                                 runtime_config=runtime)
            result = await cni.add(conflist, inv, self.path)
            record = {"conflist": conflist, "result": result, "netns": request.netns_path,
                      "ifname": request.ifname, "runtime": runtime,
                      "ports": [{"container_port": p.container_port, "protocol": p.protocol,
                                 "host_ip": p.host_ip, "host_port": p.host_port} for p in ports]}
            try:
                await asyncio.to_thread(write_json, path, record, durable=True)
                # the namespace's loopback, with CNI's own plugin (the embedded DNS needs it up)
                await cni.invoke("ADD", {"cniVersion": CNI_VERSION, "name": "dockyard-lo", "type": "loopback"},
                                 cni.Invocation(request.container_id, request.netns_path, "lo"), self.path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await cni.delete(conflist, inv, self.path, result)
                path.unlink(missing_ok=True)
                raise
        ip4 = next((ip for ip in result.get("ips", []) if ipaddress.ip_interface(ip["address"]).version == 4), {})
        ip6 = next((ip for ip in result.get("ips", []) if ipaddress.ip_interface(ip["address"]).version == 6), {})
        mac = next((i.get("mac", "") for i in result.get("interfaces", [])
                    if i.get("name") == request.ifname and i.get("sandbox")), "")
        return EndpointResult(ifname=request.ifname, mac_address=mac, ipv4_address=ip4.get("address", ""),
                              ipv6_address=ip6.get("address", ""), gateway=ip4.get("gateway", ""), ports=ports,
                              extra={"cni_result": str(path)})

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        """DEL with the cached ADD result; succeeds when the namespace or the record is gone."""
        async with self._lock:
            path = self._result_path(request.network.id, request.container_id, request.ifname)
            try:
                record = json.loads(await asyncio.to_thread(path.read_text))
            except FileNotFoundError:
                return  # never joined, or already left
            netns = record["netns"] if os.path.exists(record["netns"]) else ""
            inv = cni.Invocation(request.container_id, netns, record["ifname"],
                                 runtime_config=record.get("runtime") or {})
            await cni.delete(record["conflist"], inv, self.path, record["result"])
            path.unlink(missing_ok=True)

    async def check(self, request: EndpointRequest) -> None:
        """CNI CHECK of an endpoint: raises CniError when its interface, address or routes are
        no longer what ADD made; NotFound when the endpoint is unknown."""
        from dockyard.errors import NotFound

        path = self._result_path(request.network.id, request.container_id, request.ifname)
        try:
            record = json.loads(await asyncio.to_thread(path.read_text))
        except FileNotFoundError:
            raise NotFound(f"no CNI endpoint for {request.container_id[:12]} on {request.ifname}") from None
        inv = cni.Invocation(request.container_id, record["netns"], record["ifname"],
                             runtime_config=record.get("runtime") or {})
        await cni.check(record["conflist"], inv, self.path, record["result"])
