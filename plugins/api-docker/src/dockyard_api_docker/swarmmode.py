"""Endpoints clients probe that this engine does not serve: Docker's swarm mode and managed
plugins.

Swarm mode (``/swarm``, ``/nodes``, ``/services``, ``/tasks``, ``/secrets``, ``/configs``)
answers as dockerd does on a node that is not in a swarm: 503 "This node is not a swarm
manager..." (docker-py's and compose's clean-ups branch on that status; a 404 reads as a
missing API). Swarm classic did not serve these endpoints either; dockyard's Swarm-classic
manager is a role of its own (``dockyard-swarm``). ``swarm init`` and ``join`` are refused
with the same status, naming why. ``GET /plugins`` lists the Docker plugins the kernel's driver sources found
(``Kernel.external_plugins``: legacy plugins by socket or spec file, with
``dockyard-docker-plugins``) in the shape of dockerd's managed plugins, enabled.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from dockyard.errors import NotFound, Unavailable
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.http import json_response, kernel_of

#: dockerd's ``errNoManager`` for a node outside any swarm (daemon/cluster/helpers.go)
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                 "to connect this node to swarm and try again.")
#: dockerd's ``errNoSwarm``
NOT_IN_A_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = ("This node cannot join or start a swarm: dockyard does not run Docker's swarm mode "
                 "(a Swarm-classic manager is dockyardd with the manager role)")


async def not_a_manager(request: web.Request) -> web.Response:
    raise Unavailable(NOT_A_MANAGER)


async def not_in_a_swarm(request: web.Request) -> web.Response:
    raise Unavailable(NOT_IN_A_SWARM)


async def no_swarm_mode(request: web.Request) -> web.Response:
    raise Unavailable(NO_SWARM_MODE)


#: a legacy plugin's ``Implements`` entry -> the managed plugins' interface type
_TYPES = {"NetworkDriver": "docker.networkdriver/1.0", "IpamDriver": "docker.ipamdriver/1.0",
          "VolumeDriver": "docker.volumedriver/1.0", "authz": "docker.authz/1.0",
          "LogDriver": "docker.logdriver/1.0", "MetricsCollector": "docker.metricscollector/1.0"}


def plugin_shape(p: Any) -> dict[str, Any]:
    """dockerd's ``types.Plugin`` for a plugin found at run time (``ExternalPlugin``)."""
    types = [t for t in (_TYPES.get(i, "") for i in p.implements) if t]  # Go reads each as a string
    return {"Id": hashlib.sha256(f"{p.source}/{p.name}".encode()).hexdigest(), "Name": p.name,
            "Enabled": True, "PluginReference": "",
            "Settings": {"Mounts": [], "Env": [], "Args": [], "Devices": []},
            "Config": {"Description": f"{', '.join(p.implements) or 'not activated yet'} at {p.address}",
                       "Documentation": "", "Interface": {"Types": types, "Socket": p.address},
                       "Entrypoint": None, "WorkDir": "", "Network": {"Type": ""}, "Linux": {"Capabilities": None,
                       "AllowAllDevices": False, "Devices": None}, "PropagatedMount": "", "IpcHost": False,
                       "PidHost": False, "Mounts": None, "Env": None, "Args": {"Name": "", "Settable": None,
                       "Value": None, "Description": ""}}}


async def plugins_list(request: web.Request) -> web.Response:
    return json_response([plugin_shape(p) for p in kernel_of(request).external_plugins()])


async def plugin_inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    for p in kernel_of(request).external_plugins():
        if name in (p.name, f"{p.name}:latest"):
            return json_response(plugin_shape(p))
    raise NotFound(f'plugin "{name}" not found')


def _objects(kind: str, create: bool = True, update: bool = True, logs: bool = False) -> list[ApiRoute]:
    out = [ApiRoute("GET", f"/{kind}", not_a_manager, name=f"{kind}-list"),
           ApiRoute("GET", f"/{kind}/{{id}}", not_a_manager, name=f"{kind}-inspect")]
    if create:
        out.append(ApiRoute("POST", f"/{kind}/create", not_a_manager, name=f"{kind}-create"))
    out.append(ApiRoute("DELETE", f"/{kind}/{{id}}", not_a_manager, name=f"{kind}-delete"))
    if update:
        out.append(ApiRoute("POST", f"/{kind}/{{id}}/update", not_a_manager, name=f"{kind}-update"))
    if logs:
        out.append(ApiRoute("GET", f"/{kind}/{{id}}/logs", not_a_manager, name=f"{kind}-logs"))
    return out


def routes() -> list[ApiRoute]:
    swarm = [ApiRoute("GET", "/swarm", not_a_manager, name="swarm-inspect"),
             ApiRoute("POST", "/swarm/init", no_swarm_mode, name="swarm-init"),
             ApiRoute("POST", "/swarm/join", no_swarm_mode, name="swarm-join"),
             ApiRoute("POST", "/swarm/leave", not_in_a_swarm, name="swarm-leave"),
             ApiRoute("POST", "/swarm/update", not_a_manager, name="swarm-update"),
             ApiRoute("GET", "/swarm/unlockkey", not_a_manager, name="swarm-unlockkey"),
             ApiRoute("POST", "/swarm/unlock", not_a_manager, name="swarm-unlock")]
    tasks = [ApiRoute("GET", "/tasks", not_a_manager, name="tasks-list"),
             ApiRoute("GET", "/tasks/{id}", not_a_manager, name="tasks-inspect"),
             ApiRoute("GET", "/tasks/{id}/logs", not_a_manager, name="tasks-logs")]
    plugins = [ApiRoute("GET", "/plugins", plugins_list, name="plugins-list"),
               ApiRoute("GET", "/plugins/{name:.+}/json", plugin_inspect, name="plugins-inspect")]
    return [*swarm, *_objects("nodes", create=False), *_objects("services", logs=True), *tasks,
            *_objects("secrets"), *_objects("configs"), *plugins]
