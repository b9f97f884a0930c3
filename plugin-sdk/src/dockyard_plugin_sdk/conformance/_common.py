"""The contract every driver meets, whatever its area. Area kits subclass :class:`DriverContract`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from dockyard.mounts import read_mounts, umount
from dockyard.registry import check_driver_class
from dockyard.specs import DRIVER_API_VERSION, DRIVER_BASES, Driver, DriverContext


def make_context(tmp_path: Path, owner: str = "dytest0", **options: str) -> DriverContext:
    """A DriverContext with private directories under ``tmp_path`` (created)."""
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    return DriverContext(data_dir=data, run_dir=run, owner=owner, options=dict(options))


def mounts_under(path: Path) -> list[str]:
    """Mount points below ``path`` (from /proc/self/mountinfo, escapes decoded)."""
    prefix = str(path).rstrip("/") + "/"
    return [m.point for m in read_mounts() if m.point.startswith(prefix)]


class DriverContract:
    """Cases for any driver. Subclasses set ``kind`` and either ``driver_class`` (the
    one-line form: an instance is made on a fresh context, set up, and closed after the test)
    or their own ``driver`` fixture yielding an instance whose ``setup()`` has run."""

    kind: ClassVar[str] = ""
    #: Set to the driver class for the one-line form; otherwise override ``driver``.
    driver_class: ClassVar[type[Driver] | None] = None
    #: Options passed in the driver's context by the one-line form.
    driver_options: ClassVar[dict[str, str]] = {}

    @pytest_asyncio.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[Driver]:
        if self.driver_class is None:
            raise NotImplementedError("a conformance subclass must set `driver_class` or supply `driver`")
        drv = self.driver_class(make_context(tmp_path / "driver", **self.driver_options))
        await drv.setup()
        try:
            yield drv
        finally:
            await drv.close()

    def test_is_a_driver_of_its_kind(self, driver: Driver) -> None:
        """What the registry checks when the driver loads: the kind's ABC, a DriverInfo of that
        kind and driver API, no abstract method left, and the ABC of every capability with a
        protocol it declares (``embedded-dns``), and only those."""
        assert isinstance(driver, DRIVER_BASES[self.kind])
        assert driver.info.kind == self.kind
        assert driver.info.name and driver.info.name == driver.info.name.lower()
        assert check_driver_class(type(driver), self.kind) == ""

    def test_targets_this_driver_api(self, driver: Driver) -> None:
        assert driver.info.api_version == DRIVER_API_VERSION

    def test_status_is_pairs_of_strings(self, driver: Driver) -> None:
        status = driver.status()
        assert isinstance(status, list)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in status)

    async def test_setup_is_idempotent(self, driver: Driver) -> None:
        await driver.setup()


class NoMountLeftBehind:
    """Mixin for kits whose drivers mount things: after every case, nothing may stay mounted
    under the driver's data directory (what is found is detached, then the case fails)."""

    @pytest.fixture(autouse=True)
    def _no_mount_left(self, driver: Driver) -> Iterator[None]:
        yield
        left = mounts_under(Path(driver.context.data_dir))
        for mp in sorted(left, key=len, reverse=True):
            umount(mp, detach=True)
        assert not left, f"mounts left under the driver's data dir: {left}"
