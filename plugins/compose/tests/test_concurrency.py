"""The concurrent dependency walk (``graph.walk``) and how up/down/stop use it.

No timings are asserted: ordering comes from recorded events, concurrency from barriers that
only pass when two calls really are in flight together.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

from dockyard import errors as e
from dockyard_compose import engine as E
from dockyard_compose import graph
from dockyard_compose.compose import Compose, ComposeRuntimeError, UpOptions
from dockyard_compose.loader import LoadOptions, load
from dockyard_compose.ui import Printer

# db <- api <- web, db <- worker, cache <- api ; solo has no edges
DEPS = {"db": set(), "cache": set(), "api": {"db", "cache"}, "web": {"api"}, "worker": {"db"}, "solo": set()}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __call__(self, node: str) -> None:
        with self.lock:
            self.events.append(("start", node))
            self.running += 1
            self.peak = max(self.peak, self.running)
        with self.lock:
            self.running -= 1
            self.events.append(("end", node))

    def at(self, kind: str, node: str) -> int:
        return self.events.index((kind, node))


def test_forward_walk_finishes_dependencies_before_dependents_start() -> None:
    rec = Recorder()
    res = graph.walk(list(DEPS), DEPS, rec)
    assert sorted(res.done) == sorted(DEPS) and not res.failed and not res.skipped
    for node, deps in DEPS.items():
        for dep in deps:
            assert rec.at("end", dep) < rec.at("start", node), (dep, node)


def test_reverse_walk_finishes_dependents_before_dependencies_start() -> None:
    rec = Recorder()
    res = graph.walk(list(DEPS), graph.reverse(DEPS), rec)
    assert sorted(res.done) == sorted(DEPS)
    for node, deps in DEPS.items():
        for dep in deps:
            assert rec.at("end", node) < rec.at("start", dep), (node, dep)


def test_independent_nodes_run_together() -> None:
    barrier = threading.Barrier(3, timeout=30)  # passes only if db, cache and solo are in flight at once
    res = graph.walk(["db", "cache", "solo"], {}, lambda n: barrier.wait())
    assert not res.failed


def test_limit_bounds_the_calls_in_flight() -> None:
    rec = Recorder()
    graph.walk([f"s{i}" for i in range(12)], {}, rec, limit=1)
    assert rec.peak == 1
    assert [k for k, _ in rec.events] == ["start", "end"] * 12


def test_a_failure_skips_dependents_and_lets_running_calls_finish() -> None:
    db_running = threading.Event()
    release_db = threading.Event()
    rec: list[str] = []

    def fn(node: str) -> None:
        if node == "db":
            db_running.set()
            assert release_db.wait(30)
            rec.append(node)
            return
        if node == "cache":
            assert db_running.wait(30)  # fail while db is still in flight
            try:
                raise ComposeRuntimeError("cache: boom")
            finally:
                release_db.set()
        rec.append(node)

    res = graph.walk(["db", "cache", "api", "web", "worker"], DEPS, fn, limit=2)
    assert list(res.failed) == ["cache"]
    assert "boom" in str(res.failed["cache"])
    assert "db" in res.done  # it was running: it completed, not abandoned half-way
    assert set(res.skipped) == {"api", "web", "worker"}  # nothing new starts after a failure
    assert "api" not in rec and "web" not in rec


def test_cycles_are_refused_before_anything_runs() -> None:
    called: list[str] = []
    with pytest.raises(ValueError, match="cycle among a, b"):
        graph.walk(["a", "b", "c"], {"a": {"b"}, "b": {"a"}}, called.append)
    assert called == []


def test_edges_to_nodes_outside_the_walk_are_ignored() -> None:
    rec = Recorder()
    res = graph.walk(["web"], DEPS, rec)
    assert res.done == ["web"]


@pytest.mark.parametrize(("raw", "expected"), [("", 64), ("3", 3), ("0", 64), ("-2", 64), ("x", 64)])
def test_parallel_limit_from_the_environment(raw: str, expected: int) -> None:
    assert graph.parallel_limit({"COMPOSE_PARALLEL_LIMIT": raw}) == expected


# --- Compose over a fake engine ------------------------------------------------------------------


class FakeEngine:
    """Just enough of :class:`Engine` for up/down; records mutations in order."""

    host = "fake://"
    engine_name = "Fake"

    def __init__(self, fail: dict[tuple[str, str], str] | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []  # (action, container name)
        self.store: dict[str, dict[str, Any]] = {}
        self.fail = fail or {}
        self.ids = itertools.count(1)

    def _record(self, action: str, name: str) -> None:
        with self.lock:
            self.calls.append((action, name))
        why = self.fail.get((action, name))
        if why:
            raise e.DockyardError(why)

    def containers(self, project: str | None = None, service: str | None = None, oneoff: bool | None = False,
                   all: bool = True, extra: list[str] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [dict(c) for c in self.store.values()
                     if (project is None or c["Labels"].get(E.L_PROJECT) == project)
                     and (all or c["State"] == "running")]
        return sorted(found, key=lambda c: c["Names"][0])

    def image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:" + "0" * 64}

    def network(self, name: str) -> dict[str, Any] | None:
        return None

    def volume(self, name: str) -> dict[str, Any] | None:
        return None

    def get(self, path: str, **params: Any) -> Any:
        return []

    def inspect(self, cid: str) -> dict[str, Any]:
        c = self.store[cid]
        return {"Id": cid, "Name": c["Names"][0], "State": {"Running": c["State"] == "running"}}

    def post(self, path: str, body: Any = None, timeout: float | None = -1.0, **params: Any) -> Any:
        if path == "/containers/create":
            self._record("create", params["name"])
            cid = f"c{next(self.ids)}"
            with self.lock:
                self.store[cid] = {"Id": cid, "Names": ["/" + params["name"]], "Labels": dict(body["Labels"]),
                                   "State": "created", "ImageID": "sha256:" + "0" * 64}
            return {"Id": cid}
        if path.startswith("/containers/"):
            cid, action = path.split("/")[2:4]
            self._record(action, self.store[cid]["Names"][0][1:])
            self.store[cid]["State"] = "running" if action == "start" else "exited"
            return None
        return {}

    def delete(self, path: str, **params: Any) -> Any:
        if path.startswith("/containers/"):
            cid = path.split("/")[2]
            self._record("remove", self.store[cid]["Names"][0][1:])
            with self.lock:
                self.store.pop(cid, None)
        return None


def _compose(tmp_path: Path, engine: FakeEngine) -> Compose:
    (tmp_path / "compose.yaml").write_text(
        "name: p\nservices:\n"
        "  db:\n    image: busybox\n  cache:\n    image: busybox\n"
        "  api:\n    image: busybox\n    depends_on: [db, cache]\n"
        "  web:\n    image: busybox\n    depends_on: [api]\n"
        "  worker:\n    image: busybox\n    depends_on: [db]\n")
    loaded = load(LoadOptions(files=[str(tmp_path / "compose.yaml")], environ={}, cwd=str(tmp_path)))
    return Compose(engine, loaded, loaded.name, Printer(quiet=True))  # type: ignore[arg-type]


SERVICE_DEPS = {"db": [], "cache": [], "api": ["db", "cache"], "web": ["api"], "worker": ["db"]}


def test_up_starts_dependencies_first_and_down_removes_them_last(tmp_path: Path) -> None:
    engine = FakeEngine()
    c = _compose(tmp_path, engine)
    assert c.up(UpOptions(detach=True)) == 0
    up = engine.calls
    for svc, deps in SERVICE_DEPS.items():
        assert up.index(("create", f"p-{svc}-1")) < up.index(("start", f"p-{svc}-1"))
        for dep in deps:
            assert up.index(("start", f"p-{dep}-1")) < up.index(("create", f"p-{svc}-1")), (dep, svc)

    engine.calls = []
    c.down()
    down = engine.calls
    assert engine.store == {}
    for svc, deps in SERVICE_DEPS.items():
        assert down.index(("stop", f"p-{svc}-1")) < down.index(("remove", f"p-{svc}-1"))
        for dep in deps:
            assert down.index(("remove", f"p-{svc}-1")) < down.index(("stop", f"p-{dep}-1")), (svc, dep)


def test_a_failed_create_is_reported_and_its_dependents_are_not_made(tmp_path: Path) -> None:
    engine = FakeEngine(fail={("create", "p-api-1"): "no space left"})
    c = _compose(tmp_path, engine)
    with pytest.raises(ComposeRuntimeError, match="service api: create p-api-1: no space left"):
        c.up(UpOptions(detach=True))
    made = {name for action, name in engine.calls if action == "create"}
    started = {name for action, name in engine.calls if action == "start"}
    assert "p-web-1" not in made  # depends on api
    assert made - {"p-api-1"} == started  # what was created was also started: nothing half-made
    assert {"p-db-1", "p-cache-1"} <= started


def test_a_failed_stop_is_reported_and_its_dependencies_keep_running(tmp_path: Path) -> None:
    engine = FakeEngine()
    c = _compose(tmp_path, engine)
    c.up(UpOptions(detach=True))
    engine.fail = {("stop", "p-web-1"): "device busy"}
    engine.calls = []
    with pytest.raises(ComposeRuntimeError, match="stop p-web-1: device busy"):
        c.stop_ordered(c.containers())
    stopped = {name for action, name in engine.calls if action == "stop"}
    assert "p-api-1" not in stopped and "p-db-1" not in stopped and "p-cache-1" not in stopped


def test_several_failures_are_all_reported(tmp_path: Path) -> None:
    engine = FakeEngine()
    c = _compose(tmp_path, engine)
    c.up(UpOptions(detach=True))
    engine.fail = {("stop", "p-web-1"): "busy one", ("stop", "p-worker-1"): "busy two"}
    release = threading.Barrier(2, timeout=30)  # both stops in flight before either fails
    real = engine._record

    def record(action: str, name: str) -> None:
        if action == "stop" and name in ("p-web-1", "p-worker-1"):
            release.wait()
        real(action, name)

    engine._record = record  # type: ignore[method-assign]
    with pytest.raises(ComposeRuntimeError) as info:
        c.stop_ordered(c.containers())
    assert "busy one" in str(info.value) and "busy two" in str(info.value)


def test_down_without_a_file_orders_by_the_depends_on_label(tmp_path: Path) -> None:
    engine = FakeEngine()
    _compose(tmp_path, engine).up(UpOptions(detach=True))
    engine.calls = []
    Compose(engine, None, "p", Printer(quiet=True)).down()  # type: ignore[arg-type]
    down = engine.calls
    assert engine.store == {}
    assert down.index(("remove", "p-web-1")) < down.index(("stop", "p-api-1"))
    assert down.index(("remove", "p-api-1")) < down.index(("stop", "p-db-1"))


def test_images_are_inspected_and_pulled_once_per_reference(tmp_path: Path) -> None:
    """Five services on one image: one inspect for ``missing``, one pull for ``always``."""
    engine = FakeEngine()
    inspected: list[str] = []
    pulled: list[str] = []
    engine.image = lambda ref: inspected.append(ref) or {"Id": "sha256:" + "0" * 64}  # type: ignore[method-assign]
    c = _compose(tmp_path, engine)
    c.ensure_images(list(SERVICE_DEPS))
    assert inspected == ["busybox"]
    assert all(c.image_id(s) == "sha256:" + "0" * 64 for s in SERVICE_DEPS)
    c.pull_one = lambda service, ref, ignore_failures=False: pulled.append(ref) or True  # type: ignore[method-assign]
    c.ensure_images(list(SERVICE_DEPS), pull="always")
    assert pulled == ["busybox"]
