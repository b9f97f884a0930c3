"""The driver loads through the kernel's registry like anyone's, with the daemon's options."""

from __future__ import annotations

from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard_arch_linux.driver import LinuxRuntime


async def test_kernel_loads_the_linux_arch_driver(tmp_path):
    config = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                            "default-runtime": "runc"})
    kernel = Kernel.build(config, autoload=False)
    drv = kernel.driver("arch", "linux")
    assert isinstance(drv, LinuxRuntime)
    assert drv.info.kind == "arch" and drv.info.name == "linux"
    assert drv.default_runtime == "runc"
    assert drv.context.run_dir == tmp_path / "run" / "arch" / "linux"
    assert drv.context.owner == config.owner
