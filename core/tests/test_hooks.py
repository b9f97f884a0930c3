"""Every hook the core calls, exercised through a fresh kernel with explicit plugins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from dockyard import provisioning, scheduler
from dockyard.config import Config
from dockyard.errors import Conflict, InvalidArgument, PluginConflictError, Unavailable
from dockyard.kernel import Kernel
from dockyard.model import Host
from dockyard.server import build_app
from dockyard.specs import ApiFront, ApiMiddleware, ApiRoute, BackgroundService, hookimpl
from dockyard.specs.cluster import (
    FilterCheck,
    Node,
    NodeContainer,
    PlacementRequest,
    SchedulerFilter,
    SchedulerStrategy,
)


def kernel(tmp_path: Path, *plugins: object, **values: object) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r"), **values})
    return Kernel.build(cfg, plugins=plugins, autoload=False, environ={})


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class Front:
    @hookimpl
    def dockyard_api_fronts(self, kernel):
        return [ApiFront("test-front", "docker")]

    @hookimpl
    def dockyard_api_routes(self, kernel):
        return [ApiRoute("GET", "/thing", ok)]


class Clash:
    @hookimpl
    def dockyard_api_routes(self, kernel):
        return [ApiRoute("GET", "/thing", ok)]


class OtherDialect:
    @hookimpl
    def dockyard_api_routes(self, kernel):
        return [ApiRoute("GET", "/orch/nodes", ok, dialect="orchestration")]


def test_routes_are_served_versioned_and_plain(tmp_path: Path):
    app = build_app(kernel(tmp_path, Front()))
    paths = sorted(r.resource.canonical for r in app.router.routes())
    assert "/thing" in paths and any(p.endswith("}/thing") and p.startswith("/{api_version") for p in paths)


def test_a_route_claimed_twice_names_both_plugins(tmp_path: Path):
    with pytest.raises(PluginConflictError, match="GET /thing"):
        build_app(kernel(tmp_path, Front(), Clash()))


def test_routes_without_a_front_for_their_dialect_refuse(tmp_path: Path):
    with pytest.raises(Unavailable, match="pip install dockyard-api-orchestration"):
        build_app(kernel(tmp_path, Front(), OtherDialect()))
    with pytest.raises(Unavailable, match="no API front is installed"):
        build_app(kernel(tmp_path, Clash()))


async def test_middlewares_run_in_order(tmp_path: Path, aiohttp_client=None):
    seen: list[str] = []

    def mw(tag: str):
        @web.middleware
        async def m(request, handler):
            seen.append(tag)
            return await handler(request)
        return m

    class Mws:
        @hookimpl
        def dockyard_api_middlewares(self, kernel):
            return [ApiMiddleware("late", mw("late"), order=50), ApiMiddleware("early", mw("early"), order=5)]

    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(build_app(kernel(tmp_path, Front(), Mws())))) as client:
        assert (await client.get("/v1.41/thing")).status == 200
    assert seen == ["early", "late"]


def test_configure_sees_reload_and_can_refuse(tmp_path: Path):
    calls: list[bool] = []

    class Conf:
        @hookimpl
        def dockyard_configure(self, kernel, config, reload):
            if config.get("labels") == ["bad=1"]:
                raise InvalidArgument("label bad=1 is refused")
            calls.append(reload)

    k = kernel(tmp_path, Conf())
    k.validate_config()
    k.validate_config(reload=True)
    assert calls == [False, True]
    k.config.values["labels"] = ["bad=1"]
    with pytest.raises(InvalidArgument, match="refused"):
        k.validate_config(reload=True)


def test_config_options_are_historic(tmp_path: Path):
    from dockyard.specs import ConfigOption

    class Late:
        @hookimpl
        def dockyard_config_options(self):
            return [ConfigOption("x-late", str, "")]

    k = kernel(tmp_path)
    k.pm.register(Late())  # registered after build: the historic call is replayed to it
    assert "x-late" in {o.name for o in k.config_options()}


def test_storage_options_merge_under_config(tmp_path: Path, fake_layer_drivers):
    class Opts:
        @hookimpl
        def dockyard_storage_options(self, kernel, driver):
            return {"size": "1G", "extra": "yes"} if driver == "fake-fast" else None

    k = kernel(tmp_path, Opts(), **{"storage-driver": "fake-fast", "storage-opts": ["size=5G"]})
    drv = k.driver("storage")
    assert dict(drv.context.options) == {"size": "5G", "extra": "yes"}


async def test_background_services_run_and_failures_are_recorded(tmp_path: Path, fake_layer_drivers):
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def runs(kernel):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    failing = asyncio.Event()

    async def fails(kernel):
        failing.set()  # its waiter runs after this task's step, which records the failure below
        raise RuntimeError("service bug")

    class Svc:
        @hookimpl
        def dockyard_background_services(self, kernel):
            return [BackgroundService("runs", runs), BackgroundService("fails", fails)]

    k = kernel(tmp_path, Svc(), **{"storage-driver": "fake-fast"})
    await k.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(failing.wait(), 5)
    assert any(f.plugin == "fails" and "service bug" in f.error for f in k.events.failures)
    await k.stop()
    assert cancelled.is_set()


def _nodes() -> list[Node]:
    return [Node("n1", "tcp://n1:2376", labels={"disk": "hdd"}, containers=[NodeContainer(f"a{i}") for i in range(3)]),
            Node("n2", "tcp://n2:2376", labels={"disk": "ssd"}, containers=[NodeContainer("b0")]),
            Node("n3", "tcp://n3:2376", labels={"disk": "ssd"}, containers=[NodeContainer(f"c{i}") for i in range(5)],
                 healthy=False)]


class Sched:
    @staticmethod
    def constraint(req):
        if not req.constraints:
            return None
        pairs = [c.replace("~", "").split("==") for c in req.constraints]
        return FilterCheck(lambda n: None if all(n.labels.get(k) == v for k, v in pairs) else "no match")

    @hookimpl
    def dockyard_scheduler_filters(self, kernel):
        return [SchedulerFilter("health", lambda req: FilterCheck(lambda n: None if n.healthy else "unhealthy")),
                SchedulerFilter("constraint", self.constraint)]

    @hookimpl
    def dockyard_scheduler_strategies(self, kernel):
        return [SchedulerStrategy("spread", lambda req, oc: lambda n: len(n.containers)),
                SchedulerStrategy("binpack", lambda req, oc: lambda n: -len(n.containers))]


def test_placement_filters_then_ranks(tmp_path: Path):
    k = kernel(tmp_path, Sched())
    assert [n.name for n in scheduler.place(k, PlacementRequest("web", "busybox"), _nodes(), "spread")] == ["n2", "n1"]
    assert [n.name for n in scheduler.place(k, PlacementRequest("web", "busybox"), _nodes(), "binpack")] == ["n1", "n2"]
    ssd = PlacementRequest("db", "busybox", constraints=["disk==ssd"])
    assert [n.name for n in scheduler.place(k, ssd, _nodes(), "spread")] == ["n2"]


def test_soft_constraints_fall_back_and_hard_ones_fail(tmp_path: Path):
    k = kernel(tmp_path, Sched())
    soft = PlacementRequest("x", "busybox", constraints=["disk==~nvme"])
    assert {n.name for n in scheduler.place(k, soft, _nodes(), "spread")} == {"n1", "n2"}
    with pytest.raises(Conflict, match="no node can take container 'x': n3: constraint: no match, health: "
                                       "unhealthy; n1, n2: constraint: no match"):
        scheduler.place(k, PlacementRequest("x", "busybox", constraints=["disk==nvme"]), _nodes(), "spread")
    with pytest.raises(InvalidArgument, match="unknown scheduling strategy 'random'"):
        scheduler.place(k, soft, _nodes(), "random")
    with pytest.raises(InvalidArgument, match="unknown scheduler filter.*'port'"):
        scheduler.place(k, soft, _nodes(), "spread", enabled=["health", "port"])


def test_duplicate_filter_names_conflict(tmp_path: Path):
    with pytest.raises(PluginConflictError, match="scheduler filter name 'health'"):
        scheduler.filters(kernel(tmp_path, Sched(), Sched()))


def test_engine_flags_are_concatenated(tmp_path: Path):
    class A:
        @hookimpl
        def dockyard_engine_flags(self, kernel, host):
            return ["--label", f"host={host.name}"]

    class B:
        @hookimpl
        def dockyard_engine_flags(self, kernel, host):
            return None

    flags = provisioning.engine_flags(kernel(tmp_path, A(), B()), Host(id="h", name="n1", driver="netns"))
    assert flags == ["--label", "host=n1"]


async def test_the_first_image_puller_wins(tmp_path: Path):
    from dockyard.specs import ImagePuller

    async def pull(kernel, reference, platform="", auth=None, progress=None):
        progress({"status": f"pulled {reference}"})
        return reference

    class Puller:
        @hookimpl
        def dockyard_image_puller(self, kernel):
            return ImagePuller("test", pull=pull)

    class NoOpinion:
        @hookimpl
        def dockyard_image_puller(self, kernel):
            return None

    assert kernel(tmp_path).hook.dockyard_image_puller(kernel=None) is None
    k = kernel(tmp_path, Puller(), NoOpinion())
    puller = k.hook.dockyard_image_puller(kernel=k)
    seen: list[dict] = []
    assert puller.name == "test" and await puller.pull(k, "busybox", progress=seen.append) == "busybox"
    assert seen == [{"status": "pulled busybox"}]
