"""Drivers found at run time (DESIGN "Drivers found at run time"): a plugin's DriverSource
serves names no installed distribution provides, one adapter class for many names; installed
drivers win; listings show the names in use; a name found nowhere says where it was looked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled, PluginConflictError, PluginError
from dockyard.kernel import Kernel
from dockyard.specs import DriverInfo, VolumeDriver, hookimpl
from dockyard.specs.provides import DriverSource, ExternalPlugin
from dockyard.specs.storage import VolumeMount


class Adapter(VolumeDriver):
    async def create(self, name: str, options: dict[str, str]) -> str:
        return f"/remote/{self.info.name}/{name}"

    async def remove(self, name: str) -> None: ...

    async def mount(self, name: str, container_id: str) -> VolumeMount:
        return VolumeMount("/x")

    async def unmount(self, name: str, container_id: str) -> None: ...

    async def list(self) -> list[str]:
        return []


class Source:
    def __init__(self, names: set[str], source: str = "remote") -> None:
        self.names, self.source = names, source
        self.used: set[str] = set()

    def driver_class(self, kind: str, name: str) -> type[Any] | None:
        if name not in self.names:
            return None
        self.used.add(name)
        return type(f"Adapter[{name}]", (Adapter,), {"info": DriverInfo(name=name, kind=kind)})

    @hookimpl
    def dockyard_driver_sources(self, kernel: Kernel) -> list[DriverSource]:
        return [DriverSource(self.source, frozenset({"volume"}), driver_class=self.driver_class,
                             names=lambda kind: sorted(self.used),
                             plugins=lambda: [ExternalPlugin(n, ("VolumeDriver",), f"unix:///{n}.sock", self.source)
                                              for n in sorted(self.used)],
                             missing=lambda kind, name: f"no plugin {name} in /plugins")]


def kernel(tmp_path: Path, *plugins: object) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, plugins=plugins, autoload=False, environ={})


async def test_one_adapter_serves_many_names(tmp_path: Path) -> None:
    k = kernel(tmp_path, Source({"alpha", "beta"}))
    a = await k.driver_ready("volume", "alpha")
    b = await k.driver_ready("volume", "beta")
    assert isinstance(a, Adapter) and isinstance(b, Adapter) and type(a) is not type(b)
    assert await b.create("v", {}) == "/remote/beta/v"
    assert a.context.data_dir == tmp_path / "data" / "volume" / "alpha"
    assert {"alpha", "beta"} <= set(k.driver_names("volume"))
    assert [p.name for p in k.external_plugins()] == ["alpha", "beta"]


def test_a_name_found_nowhere_says_where_it_was_looked_for(tmp_path: Path) -> None:
    k = kernel(tmp_path, Source({"alpha"}))
    with pytest.raises(DriverNotInstalled, match="'gamma' is not installed.*no plugin gamma in /plugins"):
        k.driver("volume", "gamma")


def test_other_kinds_are_not_asked(tmp_path: Path) -> None:
    k = kernel(tmp_path, Source({"alpha"}))
    with pytest.raises(DriverNotInstalled):
        k.driver("network", "alpha")


def test_a_class_that_is_no_driver_of_the_kind_is_refused(tmp_path: Path) -> None:
    class Bad(Source):
        def driver_class(self, kind: str, name: str) -> type[Any] | None:
            return type("Bad", (Adapter,), {"info": DriverInfo(name=name, kind="network")})

    with pytest.raises(PluginError, match="registered as 'volume'"):
        kernel(tmp_path, Bad({"alpha"})).driver("volume", "alpha")


def test_two_sources_of_one_name_are_a_recorded_conflict(tmp_path: Path) -> None:
    k = kernel(tmp_path, Source({"alpha"}), Source({"alpha"}))
    assert k.driver_sources() == []
    assert any(isinstance(p, PluginConflictError) and "driver source" in str(p) for p in k.registry.problems)


def test_a_source_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown driver kinds"):
        DriverSource("x", frozenset({"gpu"}), driver_class=lambda k, n: None, names=lambda k: [])
