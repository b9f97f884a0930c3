"""What a daemon in another role (a swarm manager) gives the Docker front through generic seams:
``EngineInfo``'s ``system_status`` and totals in ``/info``, its server version in ``/version``,
``Event.node`` in ``/events``, and ``NODE/NAME`` network and volume paths. Nothing here knows
about swarm: a stand-in system service plays the manager."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard.model import Event
from dockyard.server import KERNEL_KEY
from dockyard.services import Service
from dockyard.services.system import DiskUsage, EngineInfo
from dockyard_api_docker import networks, system, volumes


class StandInSystem(Service):
    name = "system"

    async def info(self) -> EngineInfo:
        return EngineInfo(containers_running=2, images=3, system_status=[("Role", "primary"), ("Nodes", "2")],
                          ncpu=8, mem_total=1 << 33, server_version="swarm/9.9")

    async def df(self) -> DiskUsage:
        return DiskUsage()


def request_for(kernel: Kernel, path: str) -> web.Request:
    app = web.Application()
    app[KERNEL_KEY] = kernel
    return make_mocked_request("GET", path, app=app)


@pytest.mark.parametrize("role", ["engine", "manager"])
async def test_info_and_version_render_what_the_system_service_adds(tmp_path: Any, role: str) -> None:
    import json

    kernel = Kernel.build(Config(values={"data-root": str(tmp_path), "role": role}), autoload=False, environ={})
    kernel.services["system"] = StandInSystem(kernel)
    try:
        doc = json.loads((await system.info(request_for(kernel, "/info"))).body)
        assert doc["SystemStatus"] == [["Role", "primary"], ["Nodes", "2"]]
        assert (doc["NCPU"], doc["MemTotal"], doc["ServerVersion"]) == (8, 1 << 33, "swarm/9.9")
        version = json.loads((await system.version(request_for(kernel, "/version"))).body)
        # only a daemon in another role asks its services for the version it reports
        assert (version["Version"] == "swarm/9.9") == (role == "manager")
        kernel.services["system"] = type("Plain", (StandInSystem,), {"info": lambda self: _plain()})(kernel)
        assert "SystemStatus" not in json.loads((await system.info(request_for(kernel, "/info"))).body)
    finally:
        await kernel.stop()


async def _plain() -> EngineInfo:
    return EngineInfo()


def test_a_relayed_event_carries_its_node() -> None:
    ev = Event(type="container", action="start", actor_id="c1", attributes={"image": "busybox"},
               node={"Name": "h1", "Id": "X", "Addr": "10.0.0.2:2376", "Ip": "10.0.0.2"})
    assert system.event_json(ev)["node"] == {"Name": "h1", "Id": "X", "Addr": "10.0.0.2:2376", "Ip": "10.0.0.2"}
    assert "node" not in system.event_json(Event(type="container", action="start", actor_id="c1"))
    from dockyard_api_docker.filters import Filters

    by_node = Filters.parse('{"node": ["h1"]}', system.EVENT_FILTERS)
    assert system.event_matches(ev, by_node)  # relayed from h1
    assert not system.event_matches(Event(type="container", action="start", actor_id="c1"), by_node)
    assert system.event_matches(Event(type="node", action="engine_connect", actor_id="h1"), by_node)


async def test_network_and_volume_paths_take_a_node_slash_name() -> None:
    app = web.Application()
    for route in networks.routes() + volumes.routes():
        app.router.add_route(route.method, route.path, route.handler)
    for method, path, name in (("GET", "/networks/h1/app", "h1/app"), ("DELETE", "/networks/h1/app", "h1/app"),
                               ("POST", "/networks/h1/app/connect", "h1/app"), ("GET", "/volumes/h2/data", "h2/data"),
                               ("DELETE", "/volumes/h2/data", "h2/data"), ("GET", "/networks/abc", "abc"),
                               ("POST", "/networks/create", None)):
        match = await app.router.resolve(make_mocked_request(method, path))
        assert match.http_exception is None, (method, path)
        if name is None:
            assert match.handler is networks.create_network
        else:
            assert name in match.values(), (method, path, dict(match))
