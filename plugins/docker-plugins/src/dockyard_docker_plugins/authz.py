"""Docker's authorization plugins: ``--authorization-plugin NAME`` (repeatable, in order).

An API middleware (outside the Docker front's version check, inside its error mapping) sends
every request to each plugin's ``AuthZPlugin.AuthZReq`` before it is handled and, when the
handler's answer is a buffered response, ``AuthZPlugin.AuthZRes`` before it is sent; every
plugin must allow. As dockerd (moby ``pkg/authorization``): bodies are forwarded only when JSON
or text and at most 1 MiB (base64 in the JSON, Go's ``[]byte``); streamed and hijacked answers
(logs, attach, exec) are checked at the request only; a deny is a 403 "authorization denied by
plugin NAME: MSG"; an ``Err`` or an unreachable plugin is a 500 naming it. With TLS client
authentication the user is the certificate's common name (method ``TLS``).
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from dockyard.errors import Forbidden
from dockyard.specs.api import ApiMiddleware
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.source import DockerPlugins

REQ = "AuthZPlugin.AuthZReq"
RES = "AuthZPlugin.AuthZRes"
MAX_BODY = 1 << 20  # moby pkg/authorization maxBodySize
_TEXTUAL = ("application/json", "text/")


def _forwardable(content_type: str, length: int | None) -> bool:
    return content_type.startswith(_TEXTUAL) and length is not None and length <= MAX_BODY


def _b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode() if data else None


def _user(request: web.Request) -> tuple[str, str]:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value), "TLS"
    return "", ""


def middleware(plugins: DockerPlugins, names: list[str]) -> Any:
    async def ask(method: str, doc: dict[str, Any]) -> None:
        for name in names:
            client = plugins.client(name)
            implements = await client.activate()
            if "authz" not in implements:
                raise PluginFailed(f"plugin {name} does not implement authz (it implements: "
                                   f"{', '.join(implements) or 'nothing'})")
            reply = await client.call(method, doc, check_err=False)
            if reply.get("Err"):
                raise PluginFailed(f"plugin {name} failed with error: {method}: {reply['Err']}")
            if not reply.get("Allow"):
                raise Forbidden(f"authorization denied by plugin {name}: {reply.get('Msg') or ''}")

    @web.middleware
    async def authz(request: web.Request, handler: Any) -> web.StreamResponse:
        user, method = _user(request)
        body = b""
        if request.can_read_body and _forwardable(request.content_type, request.content_length):
            body = await request.read()  # aiohttp keeps it: the handler reads it again
        doc: dict[str, Any] = {
            "User": user, "UserAuthNMethod": method, "RequestMethod": request.method,
            "RequestUri": request.path_qs, "RequestBody": _b64(body),
            "RequestHeaders": {k: v for k, v in request.headers.items()}, "RequestPeerCertificates": None}
        await ask(REQ, doc)
        resp = await handler(request)
        if isinstance(resp, web.Response) and not resp.prepared:
            raw = resp.body if isinstance(resp.body, bytes) else b""
            out = raw if _forwardable(resp.content_type or "", len(raw)) else b""
            await ask(RES, {**doc, "ResponseStatusCode": resp.status, "ResponseBody": _b64(out),
                            "ResponseHeaders": {k: v for k, v in resp.headers.items()}})
        return resp

    return authz


def middlewares(config: Any) -> list[ApiMiddleware]:
    names = [str(n) for n in config.get("authorization-plugins") or [] if str(n)]
    if not names:
        return []
    return [ApiMiddleware("docker-authz", middleware(DockerPlugins(config), names), order=15)]
