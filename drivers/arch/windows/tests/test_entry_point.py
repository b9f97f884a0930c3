"""The driver loads through the kernel's registry like anyone's, with its options."""

from __future__ import annotations

from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard_arch_windows.driver import WindowsRuntime


async def test_kernel_loads_the_windows_arch_driver(tmp_path):
    config = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                            "arch-opts": ["transport=fake", "isolation=hyperv"]})
    kernel = Kernel.build(config, autoload=False)
    drv = kernel.driver("arch", "windows")
    assert isinstance(drv, WindowsRuntime) and drv.info.kind == "arch" and drv.info.name == "windows"
    assert drv.transport_name == "fake" and drv.default_isolation == "hyperv"
    assert [str(p) for p in drv.platforms()] == ["windows/amd64"]
