"""Network routes of the Docker API front (``shared/reference/docker-engine-api.md`` §10).

The core's network service does the work; this module only translates Docker's bodies,
filters and shapes. Connect/disconnect name a container (looked up in the store): a running one
is attached or detached at once through the network service and its ``Container.networks``
entry updated in one store transaction; a stopped one only gets the entry recorded (or dropped)
for its next start, which is when the container service connects it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.model import EndpointSettings, IpamPool, Network
from dockyard.specs.api import ApiRoute
from dockyard_api_docker import bodies
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of, no_content, read_json

LIST_FILTERS = {"driver", "id", "label", "name", "scope", "type", "dangling"}
PRUNE_FILTERS = {"until", "label", "label!"}


def _svc(kernel: Kernel) -> Any:
    return kernel.networks


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: expected an object")
    return {str(k): str(v) for k, v in value.items()}


# ----------------------------------------------------------------------------- shapes
def network_json(kernel: Kernel, net: Network, containers: bool = True) -> dict[str, Any]:
    """The network object of ``GET /networks/{id}`` (and, without ``Containers``, of the list)."""
    config = []
    for pool in net.ipam_pools:
        item: dict[str, Any] = {"Subnet": pool.subnet}
        if pool.ip_range:
            item["IPRange"] = pool.ip_range
        if pool.gateway:
            item["Gateway"] = pool.gateway
        if pool.aux_addresses:
            item["AuxiliaryAddresses"] = dict(pool.aux_addresses)
        config.append(item)
    eps: dict[str, Any] = {}
    if containers:
        for ep in _svc(kernel).endpoints(net):
            eps[ep.container_id] = {"Name": ep.container_name, "EndpointID": ep.id,
                                    "MacAddress": ep.mac_address, "IPv4Address": ep.ipv4_address,
                                    "IPv6Address": ep.ipv6_address}
    return {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": net.scope, "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        # null when none were given, as dockerd shows its bridge and docker-py's networks
        "IPAM": {"Driver": net.ipam_driver, "Options": dict(net.ipam_options) or None, "Config": config},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": net.ingress,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": eps,
        "Options": dict(net.options), "Labels": dict(net.labels),
    }


def _rx(pattern: str, text: str) -> bool:
    """dockerd matches ``name``/``id`` filters as regular expressions (substring search)."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _matches(kernel: Kernel, net: Network, flt: Filters) -> bool:
    if not flt.match_any("driver", net.driver) or not flt.match_any("scope", net.scope):
        return False
    if "name" in flt and not any(_rx(w, net.name) for w in flt.get("name")):
        return False
    if "id" in flt and not any(_rx(w, net.id) for w in flt.get("id")):
        return False
    if not flt.match_labels(net.labels):
        return False
    for t in flt.get("type"):
        if t not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{t}'")
    if "type" in flt and ("builtin" if net.builtin else "custom") not in flt.get("type"):
        return False
    if "dangling" in flt:
        dangling = not net.builtin and not _svc(kernel).endpoints(net)
        if not flt.match_bool("dangling", dangling):
            return False
    return True


# ----------------------------------------------------------------------------- handlers
async def list_networks(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), LIST_FILTERS)
    out = [network_json(kernel, n, containers=False) for n in _svc(kernel).list() if _matches(kernel, n, flt)]
    return json_response(out)


async def inspect_network(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    net = _svc(kernel).get(request.match_info["id"])
    return json_response(network_json(kernel, net))


def create_request(body: dict[str, Any]) -> Any:
    """``POST /networks/create`` body (CLI, docker-py and compose forms) -> NetworkCreate."""
    from dockyard.services.networks import NetworkCreate

    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    if body.get("ConfigOnly") or body.get("ConfigFrom") and (body["ConfigFrom"] or {}).get("Network"):
        raise InvalidArgument("config-only networks are not supported")
    if body.get("Ingress"):
        raise InvalidArgument("ingress networks need a swarm, which this daemon does not run")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("IPAM: expected an object")
    pools = []
    for item in ipam.get("Config") or []:
        if not isinstance(item, dict):
            raise InvalidArgument("IPAM.Config: expected a list of objects")
        pools.append(IpamPool(subnet=str(item.get("Subnet") or ""), gateway=str(item.get("Gateway") or ""),
                              ip_range=str(item.get("IPRange") or ""),
                              aux_addresses=_str_map(item.get("AuxiliaryAddresses") or item.get("AuxAddress"),
                                                     "IPAM.Config.AuxiliaryAddresses")))
    for pool in pools:
        if not pool.subnet and (pool.ip_range or pool.gateway):
            raise InvalidArgument("an IPAM config with an ip-range or gateway needs a subnet")
    return NetworkCreate(
        name=name, driver=str(body.get("Driver") or "bridge"), internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")), ingress=False, enable_ipv6=bool(body.get("EnableIPv6")),
        ipam_driver=str(ipam.get("Driver") or "default"), ipam_options=_str_map(ipam.get("Options"), "IPAM.Options"),
        ipam_pools=pools, options=_str_map(body.get("Options"), "Options"),
        labels=_str_map(body.get("Labels"), "Labels"), check_duplicate=bool(body.get("CheckDuplicate", True)),
        scope=str(body.get("Scope") or ""))


async def create_network(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    body = await read_json(request, allow_empty=False, schema=bodies.NETWORK_CREATE, struct="NetworkCreateRequest")
    net = await _svc(kernel).create(create_request(body))
    return json_response({"Id": net.id, "Warning": ""}, status=201)


async def remove_network(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    await _svc(kernel).remove(request.match_info["id"])
    return no_content()


async def prune_networks(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), PRUNE_FILTERS)
    until = flt.get("until")
    if len(until) > 1:
        raise InvalidArgument("more than one until filter specified")
    removed = await _svc(kernel).prune(until=until[0] if until else None, labels=flt.get("label"),
                                       not_labels=flt.get("label!"))
    return json_response({"NetworksDeleted": removed})


def endpoint_config(body: dict[str, Any]) -> EndpointSettings:
    from dockyard_api_docker.bodies import NETWORK_CONNECT, check
    from dockyard_api_docker.containers import endpoint_settings_from

    check(body, NETWORK_CONNECT, "NetworkConnect")
    return endpoint_settings_from(body.get("EndpointConfig") or {})


async def connect_container(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    body = await read_json(request)
    await kernel.networks.connect_container(str(body.get("Container") or ""), request.match_info["id"],
                                            endpoint_config(body))
    return web.Response(status=200)


async def disconnect_container(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    body = await read_json(request, schema=bodies.NETWORK_DISCONNECT, struct="NetworkDisconnect")
    await kernel.networks.disconnect_container(str(body.get("Container") or ""), request.match_info["id"],
                                               force=bool(body.get("Force")))
    return web.Response(status=200)


def routes() -> list[ApiRoute]:
    return [
        # a name may hold a "/": a swarm manager's NODE/NAME (Swarm classic's network names)
        ApiRoute("GET", "/networks", list_networks, name="networks-list"),
        ApiRoute("POST", "/networks/create", create_network, name="networks-create"),
        ApiRoute("POST", "/networks/prune", prune_networks, name="networks-prune"),
        ApiRoute("GET", "/networks/{id:.+}", inspect_network, name="networks-inspect"),
        ApiRoute("DELETE", "/networks/{id:.+}", remove_network, name="networks-remove"),
        ApiRoute("POST", "/networks/{id:.+}/connect", connect_container, name="networks-connect"),
        ApiRoute("POST", "/networks/{id:.+}/disconnect", disconnect_container, name="networks-disconnect"),
    ]
