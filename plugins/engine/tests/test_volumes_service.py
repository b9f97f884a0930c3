"""The volume service on a fresh kernel with the real ``local`` volume driver, tmp roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dockyard_storage_local")

from dockyard.config import Config  # noqa: E402
from dockyard.errors import Conflict, InvalidArgument, NotFound  # noqa: E402
from dockyard.kernel import Kernel  # noqa: E402
from dockyard.model import Container, ContainerConfig, HostConfig, Mount, Volume, new_id  # noqa: E402
from dockyard.services.volumes import volume_references  # noqa: E402


@pytest.fixture
async def kernel(tmp_path: Path) -> Any:
    k = Kernel.build(Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}),
                     autoload=False)
    k.open_store()
    await k.volumes.start()
    yield k
    await k.stop()


def _container(kernel: Kernel, **hc: Any) -> Container:
    mounts = hc.pop("mounts", [])
    c = Container(id=new_id(), name=f"c{new_id()[:6]}", image_id="sha256:" + "0" * 64,
                  config=ContainerConfig(image="busybox"), host_config=HostConfig(**hc), mounts=mounts)
    with kernel.open_store().transaction() as tx:
        tx.put(c)
    return c


def _events(kernel: Kernel) -> list[tuple[str, str, dict[str, str]]]:
    return [(e.action, e.actor_id, e.attributes) for e in kernel.events.history if e.type == "volume"]


async def test_create_is_idempotent_and_recorded(kernel: Kernel) -> None:
    svc = kernel.volumes
    vol = await svc.create("data", labels={"cap": "1"})
    assert vol.driver == "local" and vol.labels == {"cap": "1"} and not vol.anonymous
    assert Path(vol.mountpoint).is_dir() and vol.mountpoint.endswith("/volumes/data/_data")
    again = await svc.create("data", labels={"other": "x"})
    assert again == vol  # dockerd returns the existing volume unchanged
    assert _events(kernel) == [("create", "data", {"driver": "local"})]
    assert [v.name for v in svc.list()] == ["data"]
    assert kernel.open_store().get(Volume, "data").labels == {"cap": "1"}
    with pytest.raises(NotFound, match="get nope: no such volume"):
        svc.get("nope")


async def test_names_options_and_anonymous(kernel: Kernel, tmp_path: Path) -> None:
    svc = kernel.volumes
    anon = await svc.create_anonymous()
    assert anon.anonymous and len(anon.name) == 64 and all(c in "0123456789abcdef" for c in anon.name)
    unnamed = await svc.create()
    assert len(unnamed.name) == 64 and not unnamed.anonymous
    with pytest.raises(InvalidArgument, match="includes invalid characters"):
        await svc.create("/abs/path")
    with pytest.raises(InvalidArgument):
        await svc.create("bad-opts", options={"nonsense": "1"})
    assert svc.store.by_name(Volume, "bad-opts") is None
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    bind = await svc.create("bound", options={"type": "none", "o": "bind", "device": str(src)})
    assert bind.options == {"type": "none", "o": "bind", "device": str(src)}
    path = await svc.mount("bound", "c" * 64)
    try:
        assert (Path(path) / "f").read_text() == "x"
    finally:
        await svc.unmount("bound", "c" * 64)
    await svc.remove("bound")
    assert (src / "f").exists()  # removing a bind volume never touches its device


async def test_remove_in_use_is_409_and_force(kernel: Kernel) -> None:
    svc = kernel.volumes
    await svc.create("used")
    await svc.create("bound-by-binds")
    c = _container(kernel, mounts=[Mount(type="volume", destination="/d", name="used")])
    c2 = _container(kernel, binds=["bound-by-binds:/x:ro", "/host:/y"])
    assert volume_references(c2) == {"bound-by-binds"}
    with pytest.raises(Conflict) as info:
        await svc.remove("used")
    assert str(info.value) == f"remove used: volume is in use - [{c.id}]"
    with pytest.raises(Conflict, match=r"volume is in use - \[" + c2.id):
        await svc.remove("bound-by-binds", force=True)
    with pytest.raises(NotFound):
        await svc.remove("missing")
    await svc.remove("missing", force=True)
    with kernel.open_store().transaction() as tx:
        tx.delete(Container, c.id)
    await svc.remove("used")
    assert [v.name for v in svc.list()] == ["bound-by-binds"]
    assert ("destroy", "used", {"driver": "local"}) in _events(kernel)


async def test_mount_unmount_events_and_driver_refs(kernel: Kernel) -> None:
    svc = kernel.volumes
    vol = await svc.create("mv")
    cid = new_id()
    path = await svc.mount("mv", cid, destination="/data", read_only=True)
    assert path == vol.mountpoint
    drv = await svc.driver("local")
    assert await drv.references("mv") == {cid: 1}
    with pytest.raises(Conflict):  # the driver still holds a reference
        await svc.remove("mv")
    await svc.unmount("mv", cid)
    assert await drv.references("mv") == {}
    acts = _events(kernel)
    assert ("mount", "mv", {"container": cid, "destination": "/data", "driver": "local", "propagation": "",
                           "read/write": "false"}) in acts
    assert ("unmount", "mv", {"container": cid, "driver": "local"}) in acts
    await svc.remove("mv")


async def test_prune_and_usage(kernel: Kernel) -> None:
    svc = kernel.volumes
    keep = await svc.create("keep", labels={"keep": "1"})
    await svc.create("used")
    junk = await svc.create("junk")
    Path(junk.mountpoint, "blob").write_bytes(b"x" * 1000)
    _container(kernel, mounts=[Mount(type="volume", destination="/d", name="used")])
    assert await svc.usage(junk) == 1000
    deleted, reclaimed = await svc.prune(lambda v: "keep" not in v.labels)
    assert deleted == ["junk"] and reclaimed == 1000
    assert sorted(v.name for v in svc.list()) == ["keep", "used"]
    assert os.path.isdir(keep.mountpoint) and not os.path.exists(junk.mountpoint)
    assert svc.in_use() == {"used"}


async def test_start_adopts_and_drops(kernel: Kernel) -> None:
    svc = kernel.volumes
    drv = await svc.driver("local")
    await drv.create("orphan", {})  # as if the daemon died before recording it
    scratch = await drv.create("scratch", {"type": "tmpfs", "o": "size=1m"})
    await svc.create("gone")
    await drv.remove("gone")  # its data vanished behind the daemon's back
    await svc.start()
    vols = {v.name: v for v in svc.list()}
    assert set(vols) == {"orphan", "scratch"} and vols["orphan"].mountpoint.endswith("/volumes/orphan/_data")
    assert vols["orphan"].options == {}
    assert (vols["scratch"].mountpoint, vols["scratch"].options) == (scratch, {"type": "tmpfs", "o": "size=1m"})
    await svc.remove("orphan")
    await svc.remove("scratch")
