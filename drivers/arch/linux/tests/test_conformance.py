"""The plugin-sdk runtime contract, once per OCI runtime (crun, the default, and runc)."""

from __future__ import annotations

import shutil

import pytest

from dockyard_arch_linux.driver import LinuxRuntime
from dockyard_plugin_sdk.conformance.arch import RuntimeContract

pytestmark = pytest.mark.skipif(not shutil.which("conmon"), reason="conmon is not installed")


class _LinuxContract(RuntimeContract):
    @pytest.fixture
    async def driver(self, runtime_context):
        drv = LinuxRuntime(runtime_context)
        await drv.setup()
        return drv

    @pytest.fixture
    def emulation_ready(self, binfmt_emulation):
        """arm64 and arm/v7 handlers (made, and removed at the session's end, when missing)."""
        return binfmt_emulation


@pytest.mark.skipif(not shutil.which("crun"), reason="crun is not installed")
class TestLinuxCrun(_LinuxContract):
    runtime = "crun"


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
class TestLinuxRunc(_LinuxContract):
    runtime = "runc"
