"""Exec routes: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (hijacked),
``POST /exec/{id}/resize``, ``GET /exec/{id}/json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.specs.api import ApiRoute
from dockyard_api_docker import bodies
from dockyard_api_docker.attach import pump
from dockyard_api_docker.http import json_response, kernel_of, qint, read_json
from dockyard_api_docker.streams import RAW, frame, hijack, parse_detach_keys, wants_upgrade


def _strlist(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


async def exec_create(request: web.Request) -> web.Response:
    svc = kernel_of(request).containers
    body = await read_json(request, schema=bodies.EXEC_CREATE, struct="ExecConfig")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        import shlex

        cmd = shlex.split(cmd)
    keys = body.get("DetachKeys") or ""
    parse_detach_keys(keys)  # validate
    sess = svc.exec_create(request.match_info["id"], _strlist(cmd), tty=bool(body.get("Tty")),
                           attach_stdin=bool(body.get("AttachStdin")),
                           attach_stdout=bool(body.get("AttachStdout", True)),
                           attach_stderr=bool(body.get("AttachStderr", True)), env=_strlist(body.get("Env")),
                           user=body.get("User") or "", working_dir=body.get("WorkingDir") or "",
                           privileged=bool(body.get("Privileged")), detach_keys=keys)
    return json_response({"Id": sess.id}, status=201)


async def exec_start(request: web.Request) -> web.StreamResponse:
    svc = kernel_of(request).containers
    body = await read_json(request, schema=bodies.EXEC_START, struct="ExecStartCheck")
    sess = svc.exec_get(request.match_info["id"])
    detach = bool(body.get("Detach"))
    # dockerd frames the output by the start request's Tty (docker-py sets it there), whatever
    # the exec was created with; the create's Tty only decides whether the process gets a pty.
    raw = bool(body.get("Tty"))
    if detach or not wants_upgrade(request):
        if detach:
            await svc.exec_start(sess.id, attach=False)
            return web.Response(status=200)
    if not wants_upgrade(request):
        # no hijack: stream the output in the body (dockerd does the same without Upgrade)
        sess, stream = await svc.exec_start(sess.id, attach=True)
        resp = web.StreamResponse(status=200)
        resp.content_type = RAW
        await resp.prepare(request)
        if sess.error:  # dockerd writes a start's error into the stream, ended by CRLF
            text = sess.error.rstrip("\r\n") + "\r\n"
            await resp.write(text.encode() if raw else frame("stdout", text.encode()))
        if stream is not None:
            while (item := await stream.read()) is not None:
                await resp.write(item[1] if raw else frame(*item))
            stream.close()
            await sess.done.wait()
        await resp.write_eof()
        return resp
    # a wrong state must be a plain HTTP error, before the 101
    if sess.started:
        raise Conflict(f"Exec {sess.id} has already been started")
    container = svc.get(sess.container_id)
    if not container.state.running:
        raise Conflict(f"Container {container.id} is not running")
    resp, conn = await hijack(request, RAW)
    try:
        sess, stream = await svc.exec_start(sess.id, attach=True)
    except DockyardError as exc:
        await conn.write(frame("stderr", f"{exc}\n".encode()) if not raw else str(exc).encode())
        conn.close()
        return resp
    if stream is None:
        if sess.error:  # dockerd writes a start's error into the stream, ended by CRLF
            text = sess.error.rstrip("\r\n") + "\r\n"
            await conn.write(text.encode() if raw else frame("stdout", text.encode()))
        await sess.done.wait()
        conn.close()
        return resp
    await pump(conn, stream, tty=raw, stdin=sess.attach_stdin, stdout=sess.attach_stdout,
               stderr=sess.attach_stderr, detach_keys=parse_detach_keys(sess.detach_keys),
               before_close=sess.done.wait)
    return resp


async def exec_resize(request: web.Request) -> web.Response:
    svc = kernel_of(request).containers
    h, w = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    if h <= 0 or w <= 0:
        raise InvalidArgument("invalid resize: height and width must be positive")
    await svc.exec_resize(request.match_info["id"], h, w)
    return web.Response(status=200)


async def exec_inspect(request: web.Request) -> web.Response:
    svc = kernel_of(request).containers
    s = svc.exec_get(request.match_info["id"])
    return json_response({
        "CanRemove": False, "ContainerID": s.container_id, "DetachKeys": s.detach_keys, "ExitCode": s.exit_code,
        "ID": s.id, "OpenStderr": s.attach_stderr, "OpenStdin": s.attach_stdin, "OpenStdout": s.attach_stdout,
        "ProcessConfig": {"arguments": s.cmd[1:], "entrypoint": s.cmd[0] if s.cmd else "",
                          "privileged": s.privileged, "tty": s.tty, "user": s.user},
        "Running": s.running, "Pid": s.pid})


def routes() -> list[ApiRoute]:
    return [ApiRoute("POST", "/containers/{id}/exec", exec_create, name="exec-create"),
            ApiRoute("POST", "/exec/{id}/start", exec_start, name="exec-start"),
            ApiRoute("POST", "/exec/{id}/resize", exec_resize, name="exec-resize"),
            ApiRoute("GET", "/exec/{id}/json", exec_inspect, name="exec-inspect")]
