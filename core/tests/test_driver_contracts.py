"""Contracts between the kernel and its drivers stay explicit: the kernel keeps its own record of
which drivers are set up (nothing is written onto a driver)."""

from __future__ import annotations

from pathlib import Path

from dockyard.config import Config
from dockyard.kernel import Kernel

COUNTING_VOLUME_DRIVER = """
from dockyard.specs import DriverInfo, VolumeDriver

CALLS = []


class Counting(VolumeDriver):
    info = DriverInfo("counting", "volume")

    async def setup(self):
        CALLS.append("setup")

    async def close(self):
        CALLS.append("close")

    async def create(self, name, options): return "/"
    async def remove(self, name): pass
    async def mount(self, name, container_id): raise NotImplementedError
    async def unmount(self, name, container_id): pass
    async def list(self): return []
"""


def kernel(tmp_path: Path) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, autoload=False, environ={})


async def test_the_kernel_records_ready_drivers_itself(make_dist, tmp_path: Path) -> None:
    make_dist("dockyard-storage-counting", {"dockyard.drivers.volume": {"counting": "counting_vol:Counting"}},
              {"counting_vol": COUNTING_VOLUME_DRIVER})
    import counting_vol

    k = kernel(tmp_path)
    built = k.driver("volume", "counting")
    assert not k.is_ready("volume", "counting") and k.ready_drivers("volume") == {}
    attrs = set(vars(built))
    drv = await k.driver_ready("volume", "counting")
    assert drv is built and await k.driver_ready("volume", "counting") is drv
    assert counting_vol.CALLS == ["setup"]
    assert k.is_ready("volume", "counting") and k.ready_drivers("volume") == {"counting": drv}
    assert set(vars(drv)) == attrs, "the kernel wrote attributes onto the driver"
    assert drv.context.data_dir.is_dir() and drv.context.run_dir.is_dir()
    await k.stop()
    assert counting_vol.CALLS == ["setup", "close"]
    assert not k.is_ready("volume", "counting") and k.ready_drivers("volume") == {}
    await k.stop()  # closed once
    assert counting_vol.CALLS == ["setup", "close"]


async def test_a_driver_never_set_up_is_not_closed(make_dist, tmp_path: Path) -> None:
    make_dist("dockyard-storage-counting", {"dockyard.drivers.volume": {"counting": "counting_vol2:Counting"}},
              {"counting_vol2": COUNTING_VOLUME_DRIVER})
    import counting_vol2

    k = kernel(tmp_path)
    k.driver("volume", "counting")
    await k.stop()
    assert counting_vol2.CALLS == []
