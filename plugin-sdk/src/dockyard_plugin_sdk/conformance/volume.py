"""Conformance kit for volume drivers (``dockyard.drivers.volume``).

Usage, in the driver's own tests::

    class TestMyVolumes(VolumeContract):
        driver_class = MyVolumeDriver

or supply the ``driver`` fixture yourself (an instance whose ``setup()`` has run).

The cases follow :class:`dockyard.specs.storage.VolumeDriver`: ``create`` returns a usable
mount point and refuses bad names and unknown options (:class:`~dockyard.errors.InvalidArgument`);
mounts are counted per container and the counts survive a new driver instance (a daemon
restart); ``remove`` refuses while any container holds the volume
(:class:`~dockyard.errors.Conflict`); data written through a mount persists. After every case no
mount may remain under the driver's data dir.

Capabilities enabling extra cases:

``tmpfs``
    ``type=tmpfs`` volumes (``o=size=...``) are tmpfs mounts while in use.
``bind``
    ``o=bind,device=/dir`` volumes show ``/dir``; removing the volume leaves ``/dir`` alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.specs import VolumeDriver
from dockyard_plugin_sdk.conformance import requires
from dockyard_plugin_sdk.conformance._common import DriverContract, NoMountLeftBehind

__all__ = ["VolumeContract"]


def _fstype(path: str) -> str | None:
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == path:
                found = right.split()[0]
    return found


class VolumeContract(NoMountLeftBehind, DriverContract):
    """Cases every volume driver passes."""

    kind: ClassVar[str] = "volume"

    # ------------------------------------------------------------------ create, list
    async def test_create_returns_a_usable_directory(self, driver: VolumeDriver) -> None:
        path = Path(await driver.create("data1", {}))
        assert path.is_dir()
        m = await driver.mount("data1", "c1")
        try:
            (Path(m.path) / "hello").write_bytes(b"world")
        finally:
            await driver.unmount("data1", "c1")
        assert "data1" in await driver.list()

    async def test_create_is_idempotent(self, driver: VolumeDriver) -> None:
        first = await driver.create("same", {})
        assert await driver.create("same", {}) == first
        assert await driver.list() == ["same"]

    @pytest.mark.parametrize("name", ["", "a", "../x", "a/b", "-lead", ".hidden", "with space", "x\x00", "trailing\n"])
    async def test_invalid_names(self, driver: VolumeDriver, name: str) -> None:
        with pytest.raises(InvalidArgument):
            await driver.create(name, {})
        assert await driver.list() == []

    async def test_unknown_option_is_refused(self, driver: VolumeDriver) -> None:
        with pytest.raises(InvalidArgument, match="no-such-option"):
            await driver.create("opt", {"no-such-option": "1"})
        assert await driver.list() == []

    async def test_options_recreate_the_same_volume(self, driver: VolumeDriver) -> None:
        """``create(name, options(name))`` is the existing volume (how the volume service
        adopts a volume its records lost)."""
        first = await driver.create("again", {})
        assert await driver.options("again") == {}
        assert await driver.create("again", await driver.options("again")) == first
        assert await driver.list() == ["again"]

    async def test_list(self, driver: VolumeDriver) -> None:
        assert await driver.list() == []
        for name in ("b-vol", "a.vol", "c_vol"):
            await driver.create(name, {})
        assert sorted(await driver.list()) == ["a.vol", "b-vol", "c_vol"]
        await driver.remove("b-vol")
        assert sorted(await driver.list()) == ["a.vol", "c_vol"]

    # ------------------------------------------------------------------ mounts and removal
    async def test_data_persists_across_mounts(self, driver: VolumeDriver) -> None:
        await driver.create("keep", {})
        m = await driver.mount("keep", "c1")
        (Path(m.path) / "f").write_bytes(b"kept")
        await driver.unmount("keep", "c1")
        m = await driver.mount("keep", "c2")
        try:
            assert (Path(m.path) / "f").read_bytes() == b"kept"
        finally:
            await driver.unmount("keep", "c2")

    async def test_remove_refused_while_mounted(self, driver: VolumeDriver) -> None:
        await driver.create("busy", {})
        first = await driver.mount("busy", "c1")
        second = await driver.mount("busy", "c1")
        other = await driver.mount("busy", "c2")
        assert first.path == second.path == other.path
        await driver.unmount("busy", "c1")
        with pytest.raises(Conflict):
            await driver.remove("busy")  # c1 still holds one reference, c2 one
        await driver.unmount("busy", "c1")
        with pytest.raises(Conflict):
            await driver.remove("busy")
        await driver.unmount("busy", "c2")
        await driver.remove("busy")
        assert await driver.list() == []

    async def test_concurrent_mounts_are_all_counted(self, driver: VolumeDriver) -> None:
        await driver.create("shared", {})
        await asyncio.gather(*(driver.mount("shared", f"c{i % 5}") for i in range(20)))
        await asyncio.gather(*(driver.unmount("shared", f"c{i % 5}") for i in range(19)))
        with pytest.raises(Conflict):
            await driver.remove("shared")  # one reference left
        await driver.unmount("shared", "c4")
        await driver.remove("shared")

    async def test_references_survive_a_new_instance(self, driver: VolumeDriver) -> None:
        await driver.create("persist", {})
        await driver.mount("persist", "c1")
        again = type(driver)(driver.context)
        await again.setup()
        try:
            with pytest.raises(Conflict):
                await again.remove("persist")
            await again.unmount("persist", "c1")
            await again.remove("persist")
            assert await again.list() == []
        finally:
            await again.close()

    async def test_missing_volume(self, driver: VolumeDriver) -> None:
        with pytest.raises(NotFound):
            await driver.remove("missing")
        with pytest.raises(NotFound):
            await driver.mount("missing", "c1")
        with pytest.raises(NotFound):
            await driver.unmount("missing", "c1")

    async def test_usage(self, driver: VolumeDriver) -> None:
        await driver.create("sized", {})
        m = await driver.mount("sized", "c1")
        try:
            (Path(m.path) / "f").write_bytes(b"x" * 5000)
            usage = await driver.usage("sized")
            assert usage == -1 or usage >= 5000
        finally:
            await driver.unmount("sized", "c1")

    # ------------------------------------------------------------------ capabilities
    async def test_tmpfs_volume(self, driver: VolumeDriver) -> None:
        requires(driver, "tmpfs")
        options = {"type": "tmpfs", "o": "size=4m,mode=1777"}
        path = await driver.create("scratch", options)
        assert await driver.options("scratch") == options
        assert await driver.create("scratch", await driver.options("scratch")) == path
        m = await driver.mount("scratch", "c1")
        try:
            assert _fstype(m.path) == "tmpfs"
            assert Path(m.path).stat().st_mode & 0o7777 == 0o1777
            (Path(m.path) / "f").write_bytes(b"volatile")
            again = await driver.mount("scratch", "c2")
            assert (Path(again.path) / "f").read_bytes() == b"volatile"
            await driver.unmount("scratch", "c2")
            assert _fstype(m.path) == "tmpfs"  # c1 still uses it
        finally:
            await driver.unmount("scratch", "c1")
        assert _fstype(m.path) is None
        await driver.remove("scratch")

    async def test_bind_volume(self, driver: VolumeDriver, tmp_path: Path) -> None:
        requires(driver, "bind")
        device = tmp_path / "device"
        device.mkdir()
        (device / "existing").write_bytes(b"from host")
        await driver.create("bound", {"type": "none", "o": "bind", "device": str(device)})
        m = await driver.mount("bound", "c1")
        try:
            assert (Path(m.path) / "existing").read_bytes() == b"from host"
            (Path(m.path) / "written").write_bytes(b"through the volume")
        finally:
            await driver.unmount("bound", "c1")
        assert (device / "written").read_bytes() == b"through the volume"
        await driver.remove("bound")
        assert sorted(p.name for p in device.iterdir()) == ["existing", "written"]

    async def test_bind_volume_bad_device(self, driver: VolumeDriver, tmp_path: Path) -> None:
        requires(driver, "bind")
        with pytest.raises(InvalidArgument):
            await driver.create("nodev", {"o": "bind"})
        with pytest.raises(InvalidArgument):
            await driver.create("reldev", {"o": "bind", "device": "relative/path"})
        with pytest.raises(InvalidArgument):
            await driver.create("missdev", {"o": "bind", "device": str(tmp_path / "missing")})
        assert await driver.list() == []
