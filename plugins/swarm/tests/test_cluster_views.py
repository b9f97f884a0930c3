"""The manager's images, networks, volumes, system and events services against fake engines.

Each fake engine is a small aiohttp app on 127.0.0.1 answering the Docker API calls these
services make (a fake, honestly: no containers run); the manager side is the real services with
the real engine client, over a stand-in for the ``nodes`` directory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from dockyard.config import Config
from dockyard.errors import NotFound
from dockyard.events import EventBus
from dockyard.model import Event
from dockyard.services.networks import NetworkCreate
from dockyard.specs.cluster import Node
from dockyard_swarm.engines import EnginesService
from dockyard_swarm.events import CONNECT, DISCONNECT, RECONNECT, NodeEvents
from dockyard_swarm.images import ClusterImages
from dockyard_swarm.networks import ClusterNetworks
from dockyard_swarm.system import ClusterSystem, bytes_size
from dockyard_swarm.volumes import ClusterVolumes


# ----------------------------------------------------------------------------- a fake engine
@dataclass
class FakeEngine:
    name: str
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"tags": [...], "created": s}
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    listeners: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    def __post_init__(self) -> None:
        for n in ("bridge", "host", "none"):
            self.networks[f"{self.name}-{n}".ljust(64, "0")] = {"Name": n, "Driver": n if n != "none" else "null"}

    def emit(self, type_: str, action: str, actor: str, **attrs: str) -> None:
        now = time.time_ns()
        doc = {"Type": type_, "Action": action, "Actor": {"ID": actor, "Attributes": attrs}, "scope": "local",
               "time": now // 1_000_000_000, "timeNano": now}
        self.history.append(doc)
        for q in self.listeners:
            q.put_nowait(doc)

    def add_image(self, iid: str, *tags: str) -> None:
        self.images[iid] = {"tags": list(tags), "created": 1_700_000_000}

    # -- handlers
    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"ID": f"ID-{self.name}", "Containers": 2, "ContainersRunning": 1,
                                  "ContainersPaused": 0, "ContainersStopped": 1, "Images": len(self.images),
                                  "NCPU": 2, "MemTotal": 2 << 30, "ServerVersion": "0.1.0"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        since = float(request.query.get("since") or 0)
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for doc in self.history:
            if doc["timeNano"] / 1e9 >= since:
                q.put_nowait(doc)
        self.listeners.append(q)
        try:
            while (doc := await q.get()) is not None:
                await resp.write((json.dumps(doc) + "\n").encode())
        finally:
            self.listeners.remove(q)
        return resp

    async def images_json(self, request: web.Request) -> web.Response:
        return web.json_response([{"Id": iid, "RepoTags": img["tags"] or ["<none>:<none>"], "RepoDigests": [],
                                   "Created": img["created"], "Size": 100, "ParentId": "", "Labels": None}
                                  for iid, img in self.images.items()])

    def _image(self, ref: str) -> str:
        for iid, img in self.images.items():
            if ref in (iid, iid.removeprefix("sha256:")[:12]) or ref in img["tags"] or f"{ref}:latest" in img["tags"]:
                return iid
        raise web.HTTPNotFound(text=json.dumps({"message": f"No such image: {ref}"}), content_type="application/json")

    async def image_inspect(self, request: web.Request) -> web.Response:
        iid = self._image(request.match_info["name"])
        return web.json_response({"Id": iid, "RepoTags": self.images[iid]["tags"], "Created": "2023-11-14T22:13:20Z",
                                  "Config": {"Cmd": ["sh"], "Labels": {"from": self.name}}, "Size": 100,
                                  "RootFS": {"Type": "layers", "Layers": ["sha256:l1"]}})

    async def image_history(self, request: web.Request) -> web.Response:
        self._image(request.match_info["name"])
        return web.json_response([{"Id": "x", "CreatedBy": f"made on {self.name}", "Size": 100}])

    async def image_tag(self, request: web.Request) -> web.Response:
        iid = self._image(request.match_info["name"])
        self.images[iid]["tags"].append(f"{request.query['repo']}:{request.query.get('tag') or 'latest'}")
        self.emit("image", "tag", iid)
        return web.Response(status=201)

    async def image_delete(self, request: web.Request) -> web.Response:
        iid = self._image(request.match_info["name"])
        del self.images[iid]
        self.emit("image", "delete", iid)
        return web.json_response([{"Deleted": iid}])

    async def image_create(self, request: web.Request) -> web.StreamResponse:
        name = f"{request.query['fromImage']}:{request.query.get('tag') or 'latest'}"
        resp = web.StreamResponse()
        await resp.prepare(request)
        if request.query["fromImage"] == "missing":
            await resp.write(b'{"error":"manifest unknown"}\n')
            return resp
        for line in ({"status": "Pulling fs layer", "id": "l1"}, {"status": "Pull complete", "id": "l1"},
                     {"status": f"Status: Downloaded newer image for {name}"}):
            await resp.write((json.dumps(line) + "\n").encode())
        self.add_image("sha256:" + "ab" * 32, name)
        self.emit("image", "pull", name)
        return resp

    async def image_load(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append(f"load {len(body)}")
        resp = web.StreamResponse()
        await resp.prepare(request)
        self.add_image("sha256:" + "cd" * 32, "loaded:latest")
        await resp.write(b'{"stream":"Loaded image: loaded:latest\\n"}\n')
        return resp

    async def networks_list(self, request: web.Request) -> web.Response:
        return web.json_response([{"Id": nid, "Name": n["Name"]} for nid, n in self.networks.items()])

    async def network_inspect(self, request: web.Request) -> web.Response:
        nid = request.match_info["id"]
        n = self.networks.get(nid)
        if n is None:
            raise web.HTTPNotFound(text='{"message":"no such network"}', content_type="application/json")
        return web.json_response({"Id": nid, "Name": n["Name"], "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
                                  "IPAM": {"Driver": "default", "Config": []}, "Containers": n.get("Containers", {}),
                                  "Labels": n.get("Labels", {})})

    async def network_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        nid = f"{self.name}-{body['Name']}".ljust(64, "1")
        self.networks[nid] = {"Name": body["Name"], "Driver": body.get("Driver") or "bridge",
                              "Scope": "global" if body.get("Driver") == "overlay" else "local"}
        self.emit("network", "create", nid, name=body["Name"])
        return web.json_response({"Id": nid, "Warning": ""}, status=201)

    async def network_delete(self, request: web.Request) -> web.Response:
        nid = request.match_info["id"]
        self.networks.pop(nid)
        self.emit("network", "destroy", nid)
        return web.Response(status=204)

    async def network_connect(self, request: web.Request) -> web.Response:
        body = await request.json()
        nid = request.match_info["id"]
        self.calls.append(f"connect {nid} {body['Container']}")
        self.networks[nid].setdefault("Containers", {})[body["Container"]] = {"Name": "c", "EndpointID": "e1",
                                                                              "IPv4Address": "10.0.0.2/24"}
        self.emit("network", "connect", nid, container=body["Container"])
        return web.Response(status=200)

    async def volumes_list(self, request: web.Request) -> web.Response:
        return web.json_response({"Volumes": [{"Name": n, "Driver": "local", "Labels": {}, "Scope": "local",
                                               "Mountpoint": f"/v/{n}", "CreatedAt": "2026-12-07T00:00:00Z"}
                                              for n in self.volumes], "Warnings": None})

    async def volume_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.volumes[body["Name"]] = {}
        self.emit("volume", "create", body["Name"])
        return web.json_response({"Name": body["Name"], "Driver": "local", "Scope": "local"}, status=201)

    async def volume_delete(self, request: web.Request) -> web.Response:
        self.volumes.pop(request.match_info["name"])
        self.emit("volume", "destroy", request.match_info["name"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        r = app.router
        r.add_get("/info", self.info)
        r.add_get("/events", self.events)
        r.add_get("/images/json", self.images_json)
        r.add_post("/images/create", self.image_create)
        r.add_post("/images/load", self.image_load)
        r.add_get("/images/{name:.+}/json", self.image_inspect)
        r.add_get("/images/{name:.+}/history", self.image_history)
        r.add_post("/images/{name:.+}/tag", self.image_tag)
        r.add_delete("/images/{name:.+}", self.image_delete)
        r.add_get("/networks", self.networks_list)
        r.add_post("/networks/create", self.network_create)
        r.add_get("/networks/{id}", self.network_inspect)
        r.add_delete("/networks/{id}", self.network_delete)
        r.add_post("/networks/{id}/connect", self.network_connect)
        r.add_get("/volumes", self.volumes_list)
        r.add_post("/volumes/create", self.volume_create)
        r.add_delete("/volumes/{name}", self.volume_delete)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for q in self.listeners:
            q.put_nowait(None)
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def node(self) -> Node:
        return Node(name=self.name, engine_url=f"tcp://127.0.0.1:{self.port}", cpus=2, memory=2 << 30,
                    labels={"zone": self.name[-1]}, info={"KernelVersion": "6.1", "Driver": "vfs"})


# ----------------------------------------------------------------------------- the manager side
class FakeDirectory:
    """The ``nodes`` service's interface over a list of fake engines."""

    def __init__(self, engines: list[FakeEngine]) -> None:
        self.engines = engines
        self.unhealthy: set[str] = set()
        self.queues: list[asyncio.Queue[Any]] = []

    async def nodes(self) -> list[Node]:
        out = []
        for e in self.engines:
            n = e.node
            n.healthy = e.name not in self.unhealthy
            out.append(n)
        return out

    async def node(self, name: str) -> Node:
        for n in await self.nodes():
            if n.name == name:
                return n
        raise NotFound(name)

    async def changes(self) -> AsyncIterator[Any]:
        q: asyncio.Queue[Any] = asyncio.Queue()
        self.queues.append(q)
        while True:
            yield await q.get()


class FakeContainers:
    def __init__(self) -> None:
        self.by_ref: dict[str, Any] = {}

    def get(self, ref: str) -> Any:
        if ref not in self.by_ref:
            raise NotFound(ref)
        return self.by_ref[ref]

    def list(self) -> list[Any]:
        return list(self.by_ref.values())


class FakeKernel:
    """What the services ask of a kernel: services by name, the event bus, the config."""

    def __init__(self, directory: FakeDirectory) -> None:
        self.config = Config(values={"role": "manager", "strategy": "spread"})
        self.events = EventBus()
        self.role = "manager"
        self.services: dict[str, Any] = {"nodes": directory}
        self.services["engines"] = EnginesService(self)  # type: ignore[arg-type]
        self.services["node-events"] = NodeEvents(self)  # type: ignore[arg-type]
        self.containers = FakeContainers()
        from dockyard.kernel import new_plugin_manager

        self.hook = new_plugin_manager().hook  # no scheduler plugins: /info names the configured ones

    def service(self, name: str) -> Any:
        return self.services[name]

    def has_service(self, name: str) -> bool:
        return name in self.services

    def emit(self, type_: str, action: str, actor_id: str, **attributes: str) -> Event:
        return self.events.emit(Event(type=type_, action=action, actor_id=actor_id, attributes=attributes))

    async def cluster_store(self) -> Any:
        from dockyard.errors import StoreUnavailable

        raise StoreUnavailable("no store in this test")


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeKernel, list[FakeEngine]]]:
    engines = [FakeEngine("n1"), FakeEngine("n2"), FakeEngine("n3")]
    engines[0].add_image("sha256:" + "11" * 32, "busybox:latest")
    engines[1].add_image("sha256:" + "11" * 32, "busybox:latest", "bb:1")
    engines[2].add_image("sha256:" + "22" * 32, "busybox:latest")
    for e in engines:
        await e.start()
    kernel = FakeKernel(FakeDirectory(engines))
    for name, cls in (("images", ClusterImages), ("networks", ClusterNetworks), ("volumes", ClusterVolumes),
                      ("system", ClusterSystem)):
        kernel.services[name] = cls(kernel)  # type: ignore[arg-type]
    order = ["engines", "node-events", "images", "networks", "volumes", "system"]
    for name in order:
        await kernel.services[name].start()
    await until(lambda: all(kernel.services["node-events"].connected.get(e.name) for e in engines))
    try:
        yield kernel, engines
    finally:
        for name in reversed(order):
            await kernel.services[name].stop()
        for e in engines:
            await e.stop()


# ----------------------------------------------------------------------------- images
async def test_images_are_listed_once_per_id_with_every_nodes_names(cluster):
    kernel, _engines = cluster
    images = kernel.services["images"]
    listed = {i.id: i for i in images.list()}
    assert set(listed) == {"sha256:" + "11" * 32, "sha256:" + "22" * 32}
    assert listed["sha256:" + "11" * 32].repo_tags == ["busybox:latest", "bb:1"]
    assert images.holders("sha256:" + "11" * 32) == ["n1", "n2"]
    assert images.resolve("bb:1").id == "sha256:" + "11" * 32
    assert images.config_doc(images.resolve("bb:1"))["config"]["Cmd"] == ["sh"]
    assert images.history("bb:1")[0]["CreatedBy"].startswith("made on")
    with pytest.raises(NotFound):
        images.resolve("nothing:here")


async def test_tag_and_rm_reach_every_node_holding_the_image(cluster):
    kernel, engines = cluster
    images = kernel.services["images"]
    img = await images.tag("bb:1", "mine", "v1")
    assert "mine:v1" in img.repo_tags
    assert "mine:v1" in engines[0].images["sha256:" + "11" * 32]["tags"]
    assert "mine:v1" not in engines[2].images["sha256:" + "22" * 32]["tags"]
    records = await images.remove("sha256:" + "11" * 32, force=True)
    assert records == [{"Deleted": "sha256:" + "11" * 32}]
    assert "sha256:" + "11" * 32 not in engines[0].images and "sha256:" + "11" * 32 not in engines[1].images
    assert [i.id for i in images.list()] == ["sha256:" + "22" * 32]


async def test_an_image_made_on_a_node_is_seen_through_its_events(cluster):
    kernel, engines = cluster
    images = kernel.services["images"]
    engines[2].add_image("sha256:" + "33" * 32, "fresh:1")
    engines[2].emit("image", "tag", "sha256:" + "33" * 32)
    await until(lambda: any(i.id == "sha256:" + "33" * 32 for i in images.list()))


async def test_pull_fans_out_to_every_node_with_progress_per_node(cluster):
    from dockyard_swarm.images_pull import pull_everywhere

    kernel, engines = cluster
    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    done, failed = await pull_everywhere(kernel, "alpine", "3", "", {}, send)
    assert sorted(done) == ["n1", "n2", "n3"] and not failed
    for e in engines:
        assert any("alpine:3" in img["tags"] for img in e.images.values())
        assert {"id": e.name, "status": "Pulling alpine:3...", "progressDetail": {}} in sent
        assert {"id": e.name, "status": "Pulling alpine:3... : downloaded", "progressDetail": {}} in sent
        assert any(m.get("id") == f"{e.name}: l1" and m["status"] == "Pull complete" for m in sent)
    assert kernel.services["images"].resolve("alpine:3").id == "sha256:" + "ab" * 32
    done, failed = await pull_everywhere(kernel, "missing", "latest", "", {}, send)
    assert not done and {n for n, _ in failed} == {"n1", "n2", "n3"}
    assert "manifest unknown" in failed[0][1]


async def test_load_sends_the_archive_to_every_node(cluster):
    import io

    kernel, engines = cluster
    lines = await kernel.services["images"].load(io.BytesIO(b"x" * 3000))
    assert sorted(lines) == [f"{e.name}: Loaded image: loaded:latest" for e in engines]
    assert all(e.calls == ["load 3000"] for e in engines)


# ----------------------------------------------------------------------------- networks, volumes
async def test_networks_are_listed_per_node_and_created_everywhere(cluster):
    kernel, engines = cluster
    nets = kernel.services["networks"]
    names = sorted(n.name for n in nets.list())
    assert names == sorted(f"{e.name}/{n}" for e in engines for n in ("bridge", "host", "none"))
    made = await nets.create(NetworkCreate(name="app"))
    assert made.name == "app"
    assert all(any(n["Name"] == "app" for n in e.networks.values()) for e in engines)
    assert nets.holders("app") == ["n1", "n2", "n3"]
    one = await nets.create(NetworkCreate(name="n2/only"))
    assert nets.holders("only") == ["n2"] and nets.get("n2/only").id == one.id
    over = await nets.create(NetworkCreate(name="wide", driver="overlay"))
    assert [n.name for n in nets.list()].count("wide") == 1 and over.scope == "global"
    await nets.remove("app")
    assert not any(n["Name"] == "app" for e in engines for n in e.networks.values())
    with pytest.raises(NotFound):
        nets.get("app")


async def test_connect_goes_to_the_containers_node(cluster):
    from dockyard.model import EndpointSettings

    kernel, engines = cluster
    nets = kernel.services["networks"]
    await nets.create(NetworkCreate(name="app"))

    class C:
        id, host = "c" * 64, "n3"

    kernel.containers.by_ref["web"] = C()
    await nets.connect_container("web", "app", EndpointSettings(aliases=["w"]))
    app_on_n3 = next(nid for nid, n in engines[2].networks.items() if n["Name"] == "app")
    assert engines[2].calls == [f"connect {app_on_n3} {'c' * 64}"] and not engines[0].calls
    assert [ep.container_id for ep in nets.endpoints("n3/app")] == ["c" * 64]


async def test_volumes_are_named_node_slash_name(cluster):
    kernel, engines = cluster
    vols = kernel.services["volumes"]
    await vols.create("data")
    assert sorted(v.name for v in vols.list()) == ["n1/data", "n2/data", "n3/data"]
    v = await vols.create("n2/logs")
    assert v.name == "n2/logs" and set(engines[1].volumes) == {"data", "logs"} and "logs" not in engines[0].volumes
    assert vols.get("n2/logs").name == "logs"
    await vols.remove("n2/logs")
    assert "logs" not in engines[1].volumes
    await vols.remove("data")
    assert not any(e.volumes for e in engines)


# ----------------------------------------------------------------------------- system, events
async def test_info_has_swarm_classics_fields(cluster):
    kernel, engines = cluster
    kernel.services["nodes"].unhealthy.add("n3")
    info = await kernel.services["system"].info()
    status = dict(info.system_status)
    assert status["Role"] == "primary" and status["Strategy"] == "spread" and status["Nodes"] == "3"
    assert info.server_version.startswith("swarm/")
    assert (info.containers_running, info.containers_stopped) == (2, 2)  # the healthy nodes' sum
    assert info.ncpu == 4 and info.mem_total == 4 << 30
    pairs = info.system_status
    at = pairs.index((" n1", f"127.0.0.1:{engines[0].port}"))
    block = dict(pairs[at + 1:at + 11])
    assert block["  └ ID"] == "ID-n1" and block["  └ Status"] == "Healthy"
    assert block["  └ Containers"] == "2 (1 Running, 0 Paused, 1 Stopped)"
    assert block["  └ Reserved CPUs"] == "0 / 2" and block["  └ Reserved Memory"] == "0 B / 2 GiB"
    assert block["  └ Labels"] == "kernelversion=6.1, ostype=linux, storagedriver=vfs, zone=1"
    assert block["  └ ServerVersion"] == "0.1.0" and block["  └ Error"] == "(none)"
    at3 = pairs.index((" n3", f"127.0.0.1:{engines[2].port}"))
    assert dict(pairs[at3 + 1:at3 + 11])["  └ Status"] == "Unhealthy"
    # a container event makes n1's counts stale; /info fetches them again, not the event
    system = kernel.services["system"]
    before = system.view.updated["n1"]
    engines[0].emit("container", "start", "c" * 64)
    await until(lambda: "n1" in system.view.stale)
    assert system.view.updated["n1"] == before
    await system.info()
    assert system.view.updated["n1"] > before and not system.view.stale


def test_bytes_size_as_swarm_classic_printed_it():
    assert bytes_size(0) == "0 B" and bytes_size(1_073_741_824) == "1 GiB" and bytes_size(2_095_000_000) == "1.951 GiB"


async def test_events_are_relayed_with_the_node_and_resumed_after_a_reconnect(cluster):
    kernel, engines = cluster
    stream = kernel.events.subscribe()
    got: list[Event] = []

    async def collect(n: int) -> None:
        async for ev in stream:
            got.append(ev)
            if len(got) >= n:
                return

    engines[1].emit("container", "start", "c" * 64, name="web", image="busybox")
    await asyncio.wait_for(collect(1), 5)
    ev = got[0]
    assert (ev.type, ev.action, ev.actor_id) == ("container", "start", "c" * 64)
    assert ev.node == {"Name": "n2", "Id": "ID-n2", "Addr": f"127.0.0.1:{engines[1].port}", "Ip": "127.0.0.1"}
    assert ev.attributes["node.name"] == "n2" and ev.attributes["name"] == "web"
    from dockyard_api_docker.system import event_json

    assert event_json(ev)["node"]["Name"] == "n2"

    # the stream breaks: the manager says so, reconnects and replays what it missed
    relay = kernel.services["node-events"]
    for q in list(engines[1].listeners):
        q.put_nowait(None)
    await asyncio.sleep(0.05)
    engines[1].emit("container", "die", "c" * 64, name="web")
    await asyncio.wait_for(collect(4), 10)
    actions = [(e.type, e.action) for e in got[1:4]]
    assert ("node", DISCONNECT) in actions and ("node", RECONNECT) in actions and ("container", "die") in actions
    assert relay.connected["n2"] is True
    assert sum(1 for e in got if e.action == "start") == 1  # the replay did not repeat the start
    await stream.aclose()
    assert CONNECT == "engine_connect"


def test_build_placement_rides_on_build_args():
    from dockyard_swarm.images_build import placement_args

    assert placement_args({"constraint:node": "=h2", "affinity:image!": "~busybox", "HTTP_PROXY": "x"}) == (
        ["constraint:node==h2", "affinity:image!=~busybox"], {"HTTP_PROXY": "x"})


async def test_a_node_that_leaves_is_dropped_and_one_that_joins_is_followed(cluster):
    from dockyard_swarm.membership import NodeChange

    kernel, engines = cluster
    directory, images, relay = kernel.services["nodes"], kernel.services["images"], kernel.services["node-events"]
    n3 = engines[2]
    directory.engines = engines[:2]
    for q in directory.queues:
        q.put_nowait(NodeChange("leave", n3.node))
    await until(lambda: "n3" not in images.view.data)
    assert "sha256:" + "22" * 32 not in {i.id for i in images.list()}
    assert [(e.type, e.action) for e in kernel.events.history if e.actor_id == "n3"][-1:] == [("node", DISCONNECT)]
    directory.engines = engines
    for q in directory.queues:
        q.put_nowait(NodeChange("join", n3.node))
    await until(lambda: "n3" in images.view.data and relay.connected.get("n3"))
    assert "sha256:" + "22" * 32 in {i.id for i in images.list()}
    assert [(e.type, e.action) for e in kernel.events.history if e.actor_id == "n3"][-1:] == [("node", CONNECT)]


async def test_a_global_network_lists_the_endpoints_of_every_node(cluster):
    kernel, engines = cluster
    nets = kernel.services["networks"]
    nid = "ov" * 32
    for i, e in enumerate(engines[:2]):  # one overlay network, one ID, seen by two engines
        e.networks[nid] = {"Name": "ov", "Driver": "overlay", "Scope": "global",
                           "Containers": {f"c{i}" * 32: {"Name": f"web{i}", "EndpointID": f"e{i}"}}}
        e.emit("network", "create", nid)
    await until(lambda: len(nets._find(nid)) == 2)
    assert [n.name for n in nets.list()].count("ov") == 1
    assert sorted(ep.container_name for ep in nets.endpoints("ov")) == ["web0", "web1"]


async def test_resolve_by_id_prefix_and_an_ambiguous_one(cluster):
    from dockyard.errors import Conflict

    kernel, engines = cluster
    images = kernel.services["images"]
    engines[2].add_image("sha256:1111" + "0" * 60, "other:1")
    engines[2].emit("image", "tag", "sha256:1111" + "0" * 60)
    await until(lambda: len(images.list()) == 3)
    assert images.resolve("111111").id == "sha256:" + "11" * 32
    assert images.resolve("sha256:2222").id == "sha256:" + "22" * 32
    with pytest.raises(Conflict):
        images.resolve("1111")  # two IDs start with it
    with pytest.raises(NotFound):
        images.resolve("111")  # shorter than a prefix may be
    assert images.resolve("busybox").id in {"sha256:" + "11" * 32, "sha256:" + "22" * 32}


async def test_a_hex_name_is_a_name_before_an_id_prefix(cluster):
    """dockerd's order (ID, name, ID prefix): an image or network named with hex digits
    (``cafe``) is found by its name even when another's ID starts with those digits."""
    kernel, engines = cluster
    images, nets = kernel.services["images"], kernel.services["networks"]
    engines[0].add_image("sha256:cafe" + "0" * 60, "other:1")
    engines[0].add_image("sha256:" + "33" * 32, "cafe:latest")
    engines[0].emit("image", "tag", "sha256:" + "33" * 32)
    for nid, name in (("beef" + "0" * 60, "other"), ("44" * 32, "beef")):
        engines[1].networks[nid] = {"Name": name, "Driver": "bridge"}
    engines[1].emit("network", "create", "44" * 32)
    await until(lambda: len(images.list()) == 4 and any(n.name == "n2/beef" for n in nets.list()))
    assert images.resolve("cafe").id == "sha256:" + "33" * 32
    assert images.resolve("cafe0000").id == "sha256:cafe" + "0" * 60  # a prefix no name has
    assert images.resolve("sha256:cafe").id == "sha256:cafe" + "0" * 60
    assert nets.get("beef").id == "44" * 32 and nets.get("n2/beef").id == "44" * 32
    assert nets.get("beef0000").id == "beef" + "0" * 60
