"""The SDK's portable runtime contract also holds for the Linux driver (crun)."""

from __future__ import annotations

import shutil

import pytest

from dockyard_arch_linux.driver import LinuxRuntime
from dockyard_plugin_sdk.conformance.arch import busybox_rootfs, leftovers
from dockyard_plugin_sdk.conformance.arch_portable import PortableRuntimeContract

pytestmark = pytest.mark.skipif(not (shutil.which("conmon") and shutil.which("crun")), reason="conmon/crun missing")


class TestLinuxPortable(PortableRuntimeContract):
    programs = {
        "echo_hi": ["echo", "hi"],
        "exit_3": ["sh", "-c", "exit 3"],
        "out_err_5": ["sh", "-c", "echo out; echo err >&2; exit 5"],
        "forever": ["sh", "-c", "echo ready; while true; do sleep 0.1; done"],
        "short": ["sleep", "0.3"],
        "missing": ["/no/such/command"],
    }

    @pytest.fixture
    async def driver(self, runtime_context):
        drv = LinuxRuntime(runtime_context)
        await drv.setup()
        return drv

    @pytest.fixture
    def rootfs(self, tmp_path):
        return busybox_rootfs(tmp_path / "rootfs")

    async def leftovers(self, driver, ids):  # cgroups, processes and mounts too, as the Linux kit checks
        return await super().leftovers(driver, ids) + leftovers(driver.context.owner, driver.context.run_dir)
