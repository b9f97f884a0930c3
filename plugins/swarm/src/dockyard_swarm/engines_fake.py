"""A FAKE Docker engine, for the manager's tests and benchmarks: it answers just enough of the
Docker Engine API for a manager to place, list, inspect, start, stop and remove containers on
it, and runs nothing (no process, no file system, no network). Many of them serve from one
process, each on its own loopback port (:func:`serve_fake_engines`).

What it answers: ``/_ping``, ``/version``, ``/info``, ``/containers/create`` (a missing image
is a 404 as dockerd's), ``/containers/json``, ``/containers/{id}/json``, ``start``, ``stop``,
``kill``, ``restart``, ``pause``, ``unpause``, ``wait``, ``DELETE``, ``rename``, ``update``,
``logs`` (what :attr:`FakeEngine.output` holds, framed), ``top``, one-shot ``stats``, exec
create, detached exec start and exec inspect, ``/images/json``, image inspect and history. Not attach or attached exec
(no hijack): the integration tests reach real engines for those. Paths are unversioned (the
manager's client sends them so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@dataclass
class FakeEngine:
    """One fake engine's state."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    ncpu: int = 4
    memory: int = 8 << 30
    images: set[str] = field(default_factory=lambda: {"busybox:latest", "busybox"})
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    execs: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: bytes = b"hello from a fake engine\n"
    id: str = field(default_factory=lambda: secrets.token_hex(16).upper())
    calls: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ helpers
    def named(self, name: str) -> dict[str, Any] | None:
        """The container called ``name`` (a name conflict is by name only, as dockerd's: an ID
        that happens to start with the name's letters, say ``c3``, is no conflict)."""
        want = "/" + name.lstrip("/")
        return next((c for c in self.containers.values() if c["Name"] == want), None)

    def find(self, ref: str) -> dict[str, Any] | None:
        ref = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        for c in self.containers.values():
            if c["Name"] == "/" + ref:
                return c
        hits = [c for cid, c in self.containers.items() if cid.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/_ping", self.ping)
        r.add_get("/version", self.version)
        r.add_get("/info", self.info)
        r.add_get("/images/json", self.image_list)
        r.add_get("/images/{name:.+}/json", self.image_inspect)
        r.add_get("/images/{name:.+}/history", self.image_history)
        r.add_get("/events", self.events)
        r.add_get("/networks", self.empty_list)
        r.add_get("/volumes", self.volumes)
        r.add_post("/containers/create", self.create)
        r.add_get("/containers/json", self.ps)
        r.add_get("/containers/{id}/json", self.inspect)
        r.add_post("/containers/{id}/{action:start|stop|kill|restart|pause|unpause}", self.transition)
        r.add_post("/containers/{id}/wait", self.wait)
        r.add_delete("/containers/{id}", self.remove)
        r.add_post("/containers/{id}/rename", self.rename)
        r.add_post("/containers/{id}/update", self.update)
        r.add_get("/containers/{id}/logs", self.logs)
        r.add_get("/containers/{id}/top", self.top)
        r.add_get("/containers/{id}/stats", self.stats)
        r.add_post("/containers/{id}/exec", self.exec_create)
        r.add_post("/exec/{id}/start", self.exec_start)
        r.add_get("/exec/{id}/json", self.exec_inspect)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(f"{request.method} {request.path}")
        return await handler(request)

    # ------------------------------------------------------------------ system
    async def ping(self, _r: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": "1.41"})

    async def version(self, _r: web.Request) -> web.Response:
        return web.json_response({"Version": "20.10.0-fake", "ApiVersion": "1.41", "MinAPIVersion": "1.24",
                                  "Os": "linux", "Arch": "amd64", "KernelVersion": "6.1.0-fake"})

    async def info(self, _r: web.Request) -> web.Response:
        running = sum(1 for c in self.containers.values() if c["State"]["Running"])
        return web.json_response({
            "ID": self.id, "Name": self.name, "NCPU": self.ncpu, "MemTotal": self.memory,
            "Containers": len(self.containers), "ContainersRunning": running, "Images": len(self.images),
            "ServerVersion": "20.10.0-fake", "KernelVersion": "6.1.0-fake", "OperatingSystem": "Fake OS",
            "OSType": "linux", "Architecture": "x86_64", "Driver": "fake",
            "Labels": [f"{k}={v}" for k, v in self.labels.items()]})

    def _image_ids(self) -> dict[str, str]:
        """Image ID -> its tag (one tag each)."""
        return {f"sha256:{i:064x}": t for i, t in enumerate(sorted(t for t in self.images if ":" in t))}

    async def image_list(self, _r: web.Request) -> web.Response:
        return web.json_response([{"Id": iid, "RepoTags": [t], "Size": 0, "Created": 0}
                                  for iid, t in self._image_ids().items()])

    def _image(self, ref: str) -> tuple[str, str]:
        for iid, tag in self._image_ids().items():
            if ref in (iid, tag) or f"{ref}:latest" == tag:
                return iid, tag
        raise web.HTTPNotFound(text=json.dumps({"message": f"No such image: {ref}"}), content_type="application/json")

    async def image_inspect(self, request: web.Request) -> web.Response:
        iid, tag = self._image(request.match_info["name"])
        return web.json_response({"Id": iid, "RepoTags": [tag], "RepoDigests": [], "Created": "2024-01-01T00:00:00Z",
                                  "Architecture": "amd64", "Os": "linux", "Size": 0,
                                  "Config": {"Cmd": ["sh"]}, "RootFS": {"Type": "layers", "Layers": []}})

    async def image_history(self, request: web.Request) -> web.Response:
        iid, _tag = self._image(request.match_info["name"])
        return web.json_response([{"Id": iid, "Created": 0, "CreatedBy": "fake", "Tags": None, "Size": 0,
                                   "Comment": ""}])

    async def events(self, request: web.Request) -> web.StreamResponse:
        """An event stream that stays open and reports nothing (a relay may follow it)."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await asyncio.Event().wait()
        return resp

    async def empty_list(self, _r: web.Request) -> web.Response:
        return web.json_response([])

    async def volumes(self, _r: web.Request) -> web.Response:
        return web.json_response({"Volumes": [], "Warnings": None})

    # ------------------------------------------------------------------ containers
    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        image = body.get("Image") or ""
        if image not in self.images and f"{image}:latest" not in self.images:
            return _err(404, f"No such image: {image if ':' in image else image + ':latest'}")
        name = request.query.get("name") or f"fake_{secrets.token_hex(4)}"
        if self.named(name) is not None:
            return _err(409, f'Conflict. The container name "/{name}" is already in use')
        cid = secrets.token_hex(32)
        hc = body.get("HostConfig") or {}
        self.containers[cid] = {
            "Id": cid, "Name": "/" + name, "Created": _iso(), "Path": "sh", "Args": [],
            "Image": f"sha256:{abs(hash(image)):064x}"[:71],
            "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
            "Config": {"Image": image, "Env": body.get("Env") or [], "Cmd": body.get("Cmd"),
                       "Labels": body.get("Labels") or {}, "Tty": bool(body.get("Tty")),
                       "OpenStdin": bool(body.get("OpenStdin")), "ExposedPorts": body.get("ExposedPorts")},
            "HostConfig": hc, "Driver": "fake", "RestartCount": 0, "Mounts": [],
            "NetworkSettings": {"Networks": {}, "Ports": {}},
        }
        return web.json_response({"Id": cid, "Warnings": []}, status=201)

    def _must(self, request: web.Request) -> dict[str, Any]:
        c = self.find(request.match_info["id"])
        if c is None:
            raise web.HTTPNotFound(text=json.dumps({"message": f"No such container: {request.match_info['id']}"}),
                                   content_type="application/json")
        return c

    async def ps(self, request: web.Request) -> web.Response:
        show_all = request.query.get("all") in ("1", "true", "True")
        out = []
        for c in self.containers.values():
            if not show_all and not c["State"]["Running"]:
                continue
            out.append({"Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"]["Image"], "ImageID": c["Image"],
                        "Command": "sh", "Created": int(time.time()), "Ports": [], "Labels": c["Config"]["Labels"],
                        "State": c["State"]["Status"], "Status": c["State"]["Status"],
                        "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}}, "Mounts": []})
        return web.json_response(out)

    async def inspect(self, request: web.Request) -> web.Response:
        return web.json_response(self._must(request))

    async def transition(self, request: web.Request) -> web.Response:
        c = self._must(request)
        st = c["State"]
        action = request.match_info["action"]
        if action in ("start", "restart", "unpause"):
            if action == "start" and st["Running"]:
                return web.Response(status=304)
            st.update(Status="running", Running=True, Paused=False, Pid=4242, StartedAt=_iso())
        elif action == "pause":
            st.update(Status="paused", Paused=True)
        else:
            if not st["Running"]:
                return web.Response(status=304) if action == "stop" else _err(409, f"Container {c['Id']} is not running")
            st.update(Status="exited", Running=False, Paused=False, Pid=0, ExitCode=137 if action == "kill" else 0,
                      FinishedAt=_iso())
        return web.Response(status=204)

    async def wait(self, request: web.Request) -> web.Response:
        c = self._must(request)
        removed = request.query.get("condition") == "removed"
        for _ in range(600):
            if (c["Id"] not in self.containers) if removed else not c["State"]["Running"]:
                break
            await asyncio.sleep(0.05)
        return web.json_response({"StatusCode": c["State"]["ExitCode"], "Error": None})

    async def remove(self, request: web.Request) -> web.Response:
        c = self._must(request)
        if c["State"]["Running"] and request.query.get("force") not in ("1", "true", "True"):
            return _err(409, f"You cannot remove a running container {c['Id']}. Stop the container before "
                             "attempting removal or force remove")
        del self.containers[c["Id"]]
        return web.Response(status=204)

    async def rename(self, request: web.Request) -> web.Response:
        c = self._must(request)
        new = request.query.get("name", "")
        if self.named(new) is not None:
            return _err(409, f'Conflict. The container name "/{new}" is already in use')
        c["Name"] = "/" + new
        return web.Response(status=204)

    async def update(self, request: web.Request) -> web.Response:
        """dockerd's two checks of a memory update (daemon/update_linux.go): the 6 MB minimum, and
        a new limit above a swap limit already set needs the swap limit too."""
        c = self._must(request)
        body = await request.json()
        memory, swap = int(body.get("Memory") or 0), int(body.get("MemorySwap") or 0)
        if memory and memory < 6 << 20:
            return _err(400, "Minimum memory limit allowed is 6MB")
        had_swap = int(c["HostConfig"].get("MemorySwap") or 0)
        if memory and not swap and had_swap > 0 and memory > had_swap:
            return _err(400, f"Cannot update container {c['Id']}: Memory limit should be smaller than already "
                             "set memoryswap limit, update the memoryswap at the same time")
        c["HostConfig"].update(body)
        return web.json_response({"Warnings": []})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        c = self._must(request)
        resp = web.StreamResponse()
        await resp.prepare(request)
        data = self.output
        await resp.write(data if c["Config"]["Tty"] else struct.pack(">BxxxL", 1, len(data)) + data)
        await resp.write_eof()
        return resp

    async def top(self, request: web.Request) -> web.Response:
        self._must(request)
        return web.json_response({"Titles": ["PID", "CMD"], "Processes": [["4242", "sh"]]})

    async def stats(self, request: web.Request) -> web.Response:
        c = self._must(request)
        return web.json_response({"id": c["Id"], "name": c["Name"], "read": _iso(),
                                  "memory_stats": {"usage": 1 << 20}, "cpu_stats": {}, "precpu_stats": {}})

    async def exec_create(self, request: web.Request) -> web.Response:
        c = self._must(request)
        if not c["State"]["Running"]:
            return _err(409, f"Container {c['Id']} is not running")
        eid = secrets.token_hex(32)
        self.execs[eid] = {"ID": eid, "ContainerID": c["Id"], "Running": False, "ExitCode": None, "Pid": 0,
                           "body": await request.json()}
        return web.json_response({"Id": eid}, status=201)

    async def exec_start(self, request: web.Request) -> web.Response:
        ex = self.execs.get(request.match_info["id"])
        if ex is None:
            return _err(404, f"No such exec instance: {request.match_info['id']}")
        ex.update(Running=False, ExitCode=0)
        return web.Response(status=200)

    async def exec_inspect(self, request: web.Request) -> web.Response:
        ex = self.execs.get(request.match_info["id"])
        if ex is None:
            return _err(404, f"No such exec instance: {request.match_info['id']}")
        return web.json_response({k: v for k, v in ex.items() if k != "body"})


@dataclass
class FakeEngines:
    """Fake engines serving on loopback ports: ``engines[i]`` at ``addrs[i]`` (``127.0.0.1:PORT``)."""

    engines: list[FakeEngine]
    addrs: list[str]
    runners: list[web.AppRunner]

    async def close(self) -> None:
        for r in self.runners:
            await r.cleanup()


async def serve_fake_engines(n: int, prefix: str = "n", *, labels: dict[str, dict[str, str]] | None = None,
                             ncpu: int = 4, memory: int = 8 << 30) -> FakeEngines:
    """``n`` fake engines named ``<prefix>1``..., each on its own free port of 127.0.0.1."""
    engines, addrs, runners = [], [], []
    try:
        for i in range(1, n + 1):
            name = f"{prefix}{i}"
            eng = FakeEngine(name, labels=dict((labels or {}).get(name, {})), ncpu=ncpu, memory=memory)
            runner = web.AppRunner(eng.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
            await site.start()
            port = runner.addresses[0][1]
            engines.append(eng)
            addrs.append(f"127.0.0.1:{port}")
            runners.append(runner)
    except BaseException:
        for r in runners:
            await r.cleanup()
        raise
    return FakeEngines(engines, addrs, runners)


def main(argv: list[str] | None = None) -> None:
    """``python -m dockyard_swarm.engines_fake N ADDRS.json [PREFIX]``: serve ``N`` fake engines
    from this process (a benchmark's simulated nodes), write their names and addresses to
    ``ADDRS.json`` once all listen, serve until SIGTERM."""
    import signal
    import sys

    args = sys.argv[1:] if argv is None else argv
    count, out, prefix = int(args[0]), args[1], (args[2] if len(args) > 2 else "n")

    async def serve() -> None:
        fakes = await serve_fake_engines(count, prefix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        with open(out + ".tmp", "w") as fh:
            json.dump([{"name": e.name, "addr": a, "id": e.id, "ncpu": e.ncpu, "memory": e.memory}
                       for e, a in zip(fakes.engines, fakes.addrs, strict=True)], fh)
        import os

        os.replace(out + ".tmp", out)
        await stop.wait()
        await fakes.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()


__all__ = ["FakeEngine", "FakeEngines", "main", "serve_fake_engines"]
