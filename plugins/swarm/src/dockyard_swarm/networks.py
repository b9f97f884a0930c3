"""The manager's ``networks`` service: every node's networks, named as Swarm classic named them.

A local-scope network is listed once per node as ``NODE/NAME`` (``h1/bridge``); a network of a
wider scope (``global``, ``swarm``) once by its name. ``get`` takes an ID, a unique ID prefix,
``NODE/NAME`` or a bare name: a name several nodes hold answers with the first node's network
(compose and the CLI look a network up by the name they created). Reads answer from a per-node
view refreshed by the nodes' network events (connect and disconnect are network events).

Changes: ``create`` of ``NODE/NAME`` makes the network on that node; of a bare name, on every
healthy node (so containers placed on any node can join a project network; a global-scope
driver makes it once, on the first node); ``remove`` of a name removes it from every node
holding it; ``connect``/``disconnect`` go to the node running the container.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.model import EndpointSettings, IpamPool, Network
from dockyard.services import Service
from dockyard.services.networks import JOINED, Endpoint, NetworkCreate, NotConnected
from dockyard.specs.network import PortMapping
from dockyard_swarm.events import NodeView, engine, nodes_service

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.engines import EngineClient

BUILTIN = {"bridge", "host", "none"}
GLOBAL_DRIVERS = {"overlay"}


@dataclass
class NodeNetwork:
    node: str
    doc: dict[str, Any]  # the engine's inspect document
    network: Network = field(init=False)

    def __post_init__(self) -> None:
        self.network = network_model(self.doc)

    @property
    def local(self) -> bool:
        return self.network.scope == "local"

    @property
    def listed_name(self) -> str:
        return f"{self.node}/{self.network.name}" if self.local else self.network.name


def network_model(doc: dict[str, Any]) -> Network:
    ipam = doc.get("IPAM") or {}
    pools = [IpamPool(subnet=str(c.get("Subnet") or ""), gateway=str(c.get("Gateway") or ""),
                      ip_range=str(c.get("IPRange") or ""), aux_addresses=dict(c.get("AuxiliaryAddresses") or {}))
             for c in ipam.get("Config") or [] if isinstance(c, dict)]
    name = str(doc.get("Name") or "")
    return Network(id=str(doc.get("Id") or ""), name=name, driver=str(doc.get("Driver") or ""),
                   scope=str(doc.get("Scope") or "local"), created=str(doc.get("Created") or ""),
                   internal=bool(doc.get("Internal")), attachable=bool(doc.get("Attachable")),
                   ingress=bool(doc.get("Ingress")), enable_ipv6=bool(doc.get("EnableIPv6")),
                   ipam_driver=str(ipam.get("Driver") or "default"), ipam_options=dict(ipam.get("Options") or {}),
                   ipam_pools=pools, options=dict(doc.get("Options") or {}), labels=dict(doc.get("Labels") or {}),
                   builtin=name in BUILTIN)


async def fetch_networks(client: EngineClient, previous: list[NodeNetwork] | None) -> list[NodeNetwork]:
    """A node's networks, each inspected (the list has no endpoints)."""
    listed = await client.get("/networks") or []
    docs = await asyncio.gather(*(client.get(f"/networks/{n['Id']}") for n in listed), return_exceptions=True)
    return [NodeNetwork(client.node, d) for d in docs if isinstance(d, dict)]


def create_body(req: NetworkCreate, name: str) -> dict[str, Any]:
    """``POST /networks/create``'s body for a node's engine."""
    config = []
    for p in req.ipam_pools:
        item: dict[str, Any] = {"Subnet": p.subnet}
        if p.gateway:
            item["Gateway"] = p.gateway
        if p.ip_range:
            item["IPRange"] = p.ip_range
        if p.aux_addresses:
            item["AuxiliaryAddresses"] = dict(p.aux_addresses)
        config.append(item)
    return {"Name": name, "Driver": req.driver, "Internal": req.internal, "Attachable": req.attachable,
            "Ingress": req.ingress, "EnableIPv6": req.enable_ipv6, "CheckDuplicate": req.check_duplicate,
            "IPAM": {"Driver": req.ipam_driver, "Options": dict(req.ipam_options), "Config": config},
            "Options": dict(req.options), "Labels": dict(req.labels)}


def split_node(ref: str, nodes: set[str]) -> tuple[str, str]:
    """``NODE/NAME`` -> (NODE, NAME) when NODE is a node of the cluster, else ("", ref)."""
    node, sep, rest = ref.partition("/")
    return (node, rest) if sep and node in nodes else ("", ref)


class ClusterNetworks(Service):
    """The manager's ``networks`` service over every node's engine."""

    name = "networks"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self.view: NodeView[list[NodeNetwork]] = NodeView(kernel, "networks", {"network"}, fetch_networks)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    # ------------------------------------------------------------------ the view
    def _all(self) -> list[NodeNetwork]:
        return [n for _node, nets in self.view.items() for n in nets]

    def _find(self, ref: str) -> list[NodeNetwork]:
        """Every node network ``ref`` names, in dockerd's order (a full ID, a name, an ID
        prefix; ``NODE/`` first narrows to that node): a name made of hex digits (``cafe``) is
        a name before it is the prefix of another network's ID."""
        every = self._all()
        exact = [n for n in every if n.network.id == ref]
        if exact:
            return exact
        node, name = split_node(ref, set(self.view.data))
        if node:
            every, ref = [n for n in every if n.node == node], name
            exact = [n for n in every if n.network.id == ref]
            if exact:
                return exact
        named = [n for n in every if n.network.name == ref]
        if named:
            return named
        return [n for n in every if len(ref) >= 3 and n.network.id.startswith(ref)]

    def _one(self, ref: str) -> NodeNetwork:
        found = self._find(ref)
        if not found:
            raise NotFound(f"network {ref} not found")
        return found[0]

    def holders(self, ref: str) -> list[str]:
        """The nodes holding a network named (or identified by) ``ref``: where a container
        asking for it can run (Swarm classic pinned such containers to the network's node)."""
        return sorted({n.node for n in self._find(ref)})

    def list(self) -> list[Network]:
        out: list[Network] = []
        seen: set[str] = set()
        for n in self._all():
            if n.network.id in seen:
                continue  # a global network seen from several nodes
            seen.add(n.network.id)
            net = Network(**{**n.network.__dict__, "name": n.listed_name})
            out.append(net)
        return out

    def get(self, ref: str) -> Network:
        return self._one(ref).network

    def endpoints(self, network: Network | str) -> list[Endpoint]:
        """The network's endpoints; a network wider than one node (one ID on several nodes, an
        overlay) gathers every node's, as each engine lists only its own."""
        found = self._one(network if isinstance(network, str) else network.id)
        docs = [found] if found.local else [n for n in self._all() if n.network.id == found.network.id]
        out = []
        for nn in docs:
            for cid, ep in (nn.doc.get("Containers") or {}).items():
                out.append(Endpoint(id=str(ep.get("EndpointID") or ""), network_id=nn.network.id, container_id=cid,
                                    container_name=str(ep.get("Name") or ""),
                                    mac_address=str(ep.get("MacAddress") or ""),
                                    ipv4_address=str(ep.get("IPv4Address") or ""),
                                    ipv6_address=str(ep.get("IPv6Address") or ""), state=JOINED))
        return out

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        out = []
        for n in self._all():
            if container_id in (n.doc.get("Containers") or {}):
                out.extend(ep for ep in self.endpoints(n.network.id) if ep.container_id == container_id)
        return out

    def endpoint(self, container_id: str, network: Network | str) -> Endpoint:
        for ep in self.endpoints(network):
            if ep.container_id == container_id:
                return ep
        raise NotConnected(f"container {container_id} is not connected to network "
                           f"{network if isinstance(network, str) else network.name}")

    def ports_of(self, container_id: str) -> list[PortMapping]:
        """The container service knows a remote container's published ports."""
        containers = self.kernel.containers
        ports_of = getattr(containers, "ports_of", None)
        return list(ports_of(container_id)) if ports_of is not None else []

    # ------------------------------------------------------------------ changes
    async def _healthy(self) -> list[Any]:
        nodes = [n for n in await nodes_service(self.kernel).nodes() if n.healthy]
        if not nodes:
            raise NotFound("no healthy node in the cluster")
        return nodes

    async def create(self, req: NetworkCreate) -> Network:
        nodes = await self._healthy()
        node_name, name = split_node(req.name, {n.name for n in nodes})
        if node_name:
            targets = [n for n in nodes if n.name == node_name]
        elif req.driver in GLOBAL_DRIVERS or req.scope in ("global", "swarm"):
            targets = nodes[:1]
        else:
            targets = nodes
        if not name:
            raise InvalidArgument("network name is required")
        body = create_body(req, name)
        results = await asyncio.gather(*(engine(self.kernel, n).post("/networks/create", body=body) for n in targets),
                                       return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(n.name) for n in targets))
        made = [(n, r) for n, r in zip(targets, results, strict=True) if isinstance(r, dict)]
        if not made:
            raise next(r for r in results if isinstance(r, BaseException))
        first_node, first = made[0]
        for n in self.view.data.get(first_node.name, []):
            if n.network.id == first.get("Id"):
                return n.network
        return Network(id=str(first.get("Id") or ""), name=name, driver=req.driver)

    async def remove(self, ref: str) -> Network:
        found = self._find(ref)
        if not found:
            raise NotFound(f"network {ref} not found")
        node_name, _name = split_node(ref, set(self.view.data))
        exact_id = any(n.network.id == ref or n.network.id[:12] == ref for n in found)
        targets = found[:1] if node_name or exact_id or not found[0].local else found
        directory = nodes_service(self.kernel)
        nodes = {n.node: await directory.node(n.node) for n in targets}
        results = await asyncio.gather(*(engine(self.kernel, nodes[n.node]).request(
            "DELETE", f"/networks/{n.network.id}") for n in targets), return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(n.node) for n in targets))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return targets[0].network

    async def prune(self, until: str | None = None, labels: list[str] | None = None,
                    not_labels: list[str] | None = None) -> list[str]:
        filters: dict[str, list[str]] = {}
        if until:
            filters["until"] = [until]
        if labels:
            filters["label"] = list(labels)
        if not_labels:
            filters["label!"] = list(not_labels)
        nodes = await self._healthy()
        results = await asyncio.gather(*(engine(self.kernel, n).post("/networks/prune", {"filters": filters or None})
                                         for n in nodes), return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(n.name) for n in nodes))
        out: list[str] = []
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, dict):
                out.extend(f"{n.name}/{name}" for name in r.get("NetworksDeleted") or [])
        return out

    async def _container_node(self, container_ref: str) -> tuple[Any, str]:
        c = self.kernel.containers.get(container_ref)
        if not c.host:
            raise NotFound(f"container {container_ref} is on no known node")
        return await nodes_service(self.kernel).node(c.host), c.id

    def _network_on(self, node: str, network: str) -> str:
        """The ID of ``network`` on ``node`` (a name several nodes hold means that node's)."""
        node_name, name = split_node(network, set(self.view.data))
        held = self.view.data.get(node, [])
        for found in ([n for n in held if n.network.id == network],  # dockerd's order: ID, name, short ID
                      [n for n in held if n.network.name == name and node_name in ("", node)],
                      [n for n in held if n.network.id[:12] == network]):
            if found:
                return found[0].network.id
        return network  # the node's engine decides (an ID prefix, a network made since)

    async def connect_container(self, container_ref: str, network: str, settings: EndpointSettings) -> None:
        node, cid = await self._container_node(container_ref)
        body: dict[str, Any] = {"Container": cid}
        config: dict[str, Any] = {}
        if settings.aliases:
            config["Aliases"] = list(settings.aliases)
        ipv4 = settings.ipv4_address
        ipv6 = settings.ipv6_address
        if ipv4 or ipv6:
            config["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ipv4), ("IPv6Address", ipv6)) if v}
        if settings.driver_opts:
            config["DriverOpts"] = dict(settings.driver_opts)
        if config:
            body["EndpointConfig"] = config
        await engine(self.kernel, node).request("POST", f"/networks/{self._network_on(node.name, network)}/connect",
                                                body=body)
        await self.view.refresh(node.name)

    async def disconnect_container(self, container_ref: str, network: str, force: bool = False) -> None:
        node, cid = await self._container_node(container_ref)
        await engine(self.kernel, node).request("POST",
                                                f"/networks/{self._network_on(node.name, network)}/disconnect",
                                                body={"Container": cid, "Force": force})
        await self.view.refresh(node.name)


__all__ = ["ClusterNetworks", "NodeNetwork", "create_body", "fetch_networks", "network_model", "split_node"]
