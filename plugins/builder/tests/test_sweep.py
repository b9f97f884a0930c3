"""The start-up sweep removes what interrupted builds of an earlier daemon process left."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dockyard.errors import Conflict
from dockyard_builder.sweep import PREFIX, RUN_TOKEN, layer_key, stale, sweep, work_dir_name


class FakeDriver:
    def __init__(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.unmounted: list[str] = []

    async def list(self) -> list[str]:
        return list(self.keys)

    async def unmount(self, key: str) -> None:
        self.unmounted.append(key)

    async def remove(self, key: str) -> None:
        if key.endswith("busy"):
            raise Conflict("in use")
        self.keys.remove(key)


def test_keys_carry_this_process_token() -> None:
    key = layer_key("src")
    assert key.startswith(f"{PREFIX}{RUN_TOKEN}-src-") and not stale(key)
    assert stale("build-00000000-abc") and not stale("sha256:" + "0" * 64) and not stale("c0ffee")


async def test_sweep_removes_only_stale_build_layers_and_tmp(tmp_path: Path) -> None:
    tmp = tmp_path / "builder" / "tmp" / "deadbeef-0123"  # an earlier daemon process's build
    tmp.mkdir(parents=True)
    (tmp / "context.tar").write_bytes(b"")
    ours = tmp_path / "builder" / "tmp" / work_dir_name()
    ours.mkdir()
    mine = layer_key()
    drv = FakeDriver(["sha256:" + "a" * 64, "containerid", mine, "build-deadbeef-1", "build-deadbeef-busy"])

    async def driver_ready(kind: str) -> FakeDriver:
        assert kind == "storage"
        return drv

    kernel = SimpleNamespace(config=SimpleNamespace(data_root=tmp_path), driver_ready=driver_ready)
    await sweep(kernel)
    assert not tmp.exists() and ours.is_dir()
    assert drv.keys == ["sha256:" + "a" * 64, "containerid", mine, "build-deadbeef-busy"]
    assert drv.unmounted == ["build-deadbeef-1", "build-deadbeef-busy"]
