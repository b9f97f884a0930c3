"""``/dockyard/v1/machines``: the machines API (shapes in docs/api-extensions.md).

Every route is also served under ``/vX.Y/`` (the Docker front's version check applies), and
errors are the Docker front's ``{"message": ...}`` with its statuses: 400 a bad request, 404 no
such machine, 409 a name in use or a machine in the wrong state, 304 already in the state asked
for, 501 a provision driver that is not installed, 503 a driver that cannot do what was asked,
500 anything else. A create answers 200 with a stream of Docker's JSON messages once it has
started; its failure then is the stream's last message (``errorDetail``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.server import KERNEL_KEY
from dockyard.specs import ApiRoute
from dockyard_machine.listing import Filters, go_duration
from dockyard_machine.options import MachineCreate
from dockyard_machine.service import MachineService, Observed

log = logging.getLogger(__name__)

PREFIX = "/dockyard/v1/machines"


def service_of(request: web.Request) -> MachineService:
    svc = request.app[KERNEL_KEY].service("machines")  # type: ignore[attr-defined]
    assert isinstance(svc, MachineService)
    return svc


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json", body=json.dumps(data) + "\n")


def summary(svc: MachineService, o: Observed) -> dict[str, Any]:
    """One machine as ``GET /dockyard/v1/machines`` lists it (Docker Machine's ``ls`` item)."""
    return {"Name": o.host.name, "Id": o.host.id, "DriverName": o.host.driver, "State": o.state,
            "URL": o.url, "Error": o.error, "DockerVersion": o.docker_version,
            "ResponseTime": go_duration(round(o.response_time, 3)), "Addresses": list(o.host.addresses),
            "Labels": dict(o.host.labels), "Created": o.host.created,
            "EngineOptions": svc.engine_options(o.host.name).to_json(),
            "SwarmOptions": svc.swarm_options(o.host.name).to_json(), "SwarmMaster": svc.swarm_of(o.host.name)}


async def list_machines(request: web.Request) -> web.Response:
    try:
        filters = Filters.parse_json(json.loads(request.query.get("filters") or "null"))
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"filters is not JSON: {exc}") from exc
    try:
        timeout = float(request.query.get("timeout") or 10)
    except ValueError:
        raise InvalidArgument(f"timeout {request.query['timeout']!r} is not a number of seconds") from None
    svc = service_of(request)
    return json_response([summary(svc, o) for o in await svc.list(filters, timeout)])


async def create_machine(request: web.Request) -> web.StreamResponse:
    """Start a create, then relay its progress as Docker's JSON messages. The create runs on
    when the client goes away (``rm -f`` cancels it)."""
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the request body is not JSON: {exc}") from exc
    creation = await service_of(request).create(MachineCreate.from_json(body))  # 400/409/501 from here
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    connected = True

    async def send(msg: dict[str, Any]) -> None:
        nonlocal connected
        if connected:
            try:
                await resp.write((json.dumps(msg) + "\r\n").encode())
            except (ConnectionError, RuntimeError):
                connected = False  # the client left; the create goes on

    while (line := await creation.messages.get()) is not None:
        await send({"status": line})
    try:
        host = await creation.task
    except asyncio.CancelledError:
        await send({"errorDetail": {"message": "the create was cancelled"}, "error": "the create was cancelled"})
    except DockyardError as exc:
        await send({"errorDetail": {"message": str(exc)}, "error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - reported in the stream, as dockerd reports a failed pull
        log.exception("machine create failed")
        await send({"errorDetail": {"message": f"internal error: {exc}"}, "error": f"internal error: {exc}"})
    else:
        await send({"aux": {"Name": host.name, "Id": host.id, "DriverName": host.driver, "URL": host.engine_url,
                            "Addresses": list(host.addresses)}})
    if connected:
        try:
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
    return resp


async def inspect_machine(request: web.Request) -> web.Response:
    return json_response(await service_of(request).inspect(request.match_info["name"]))


def _action(method: str, status: int = 204) -> Any:
    async def handler(request: web.Request) -> web.Response:
        result = await getattr(service_of(request), method)(request.match_info["name"])
        if status == 204:
            return web.Response(status=204)
        return json_response(result, status)

    handler.__name__ = method
    return handler


async def kill_machine(request: web.Request) -> web.Response:
    await service_of(request).stop_machine(request.match_info["name"], action="kill")
    return web.Response(status=204)


async def remove_machine(request: web.Request) -> web.Response:
    force = request.query.get("force", "").strip().lower() not in ("", "0", "false", "no")
    await service_of(request).remove_machine(request.match_info["name"], force=force)
    return web.Response(status=204)


async def machine_env(request: web.Request) -> web.Response:
    return json_response(await service_of(request).env(request.match_info["name"]))


def routes() -> list[ApiRoute]:
    one = PREFIX + "/{name}"
    return [
        ApiRoute("GET", PREFIX, list_machines, name="dockyard-machines-list"),
        ApiRoute("POST", PREFIX + "/create", create_machine, name="dockyard-machines-create"),
        ApiRoute("GET", one + "/json", inspect_machine, name="dockyard-machines-inspect"),
        ApiRoute("GET", one + "/env", machine_env, name="dockyard-machines-env"),
        ApiRoute("POST", one + "/start", _action("start_machine"), name="dockyard-machines-start"),
        ApiRoute("POST", one + "/stop", _action("stop_machine"), name="dockyard-machines-stop"),
        ApiRoute("POST", one + "/restart", _action("restart_machine"), name="dockyard-machines-restart"),
        ApiRoute("POST", one + "/kill", kill_machine, name="dockyard-machines-kill"),
        ApiRoute("POST", one + "/regenerate-certs", _action("regenerate_certs"),
                 name="dockyard-machines-regenerate-certs"),
        ApiRoute("POST", one + "/upgrade", _action("upgrade_machine", 200), name="dockyard-machines-upgrade"),
        ApiRoute("DELETE", one, remove_machine, name="dockyard-machines-remove"),
    ]


__all__ = ["PREFIX", "routes", "summary"]
