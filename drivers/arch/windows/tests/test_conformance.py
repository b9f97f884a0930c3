"""The SDK's portable runtime contract through the driver, on the fake HCS (both isolations)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from dockyard_arch_windows.driver import WindowsRuntime
from dockyard_arch_windows.fake import FakeHcs
from dockyard_plugin_sdk.conformance.arch import make_runtime_context
from dockyard_plugin_sdk.conformance.arch_portable import PortableRuntimeContract

TICK = 0.1


class _OnFakeHcs(PortableRuntimeContract):
    isolation: ClassVar[str] = "process"
    short_seconds = TICK  # ``ping -n 2`` waits one (fake) second
    programs: ClassVar[dict[str, list[str]]] = {
        "echo_hi": ["cmd", "/c", "echo hi"],
        "exit_3": ["cmd", "/c", "exit /b 3"],
        "out_err_5": ["cmd", "/c", "echo out & echo err 1>&2 & exit /b 5"],
        "forever": ["cmd", "/c", "echo ready & ping -t localhost"],
        "short": ["ping", "-n", "2", "127.0.0.1"],
        "missing": ["C:\\no\\such.exe"],
    }

    @pytest.fixture
    async def driver(self, tmp_path):
        ctx = make_runtime_context(tmp_path / "drv", "dyc" + tmp_path.name[-6:], isolation=self.isolation)
        drv = WindowsRuntime(ctx, transport=FakeHcs(tick=TICK))
        await drv.setup()
        return drv

    @pytest.fixture
    def rootfs(self, make_scratch):
        return make_scratch()

    async def leftovers(self, driver, ids):
        left = await super().leftovers(driver, ids)
        fake = driver.hcs
        assert isinstance(fake, FakeHcs)
        return left + [sid for sid in fake.systems if sid.split("@")[0] in ids]


class TestProcessIsolation(_OnFakeHcs):
    isolation = "process"


class TestHyperVIsolation(_OnFakeHcs):
    isolation = "hyperv"
