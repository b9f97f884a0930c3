"""The contract every driver meets, whatever its area. Area kits subclass :class:`DriverContract`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from dockyard.specs import DRIVER_API_VERSION, DRIVER_BASES, Driver, DriverContext


def make_context(tmp_path: Path, owner: str = "dytest0", **options: str) -> DriverContext:
    """A DriverContext with private directories under ``tmp_path`` (created)."""
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    return DriverContext(data_dir=data, run_dir=run, owner=owner, options=dict(options))


class DriverContract:
    """Cases for any driver. Subclasses set ``kind`` and supply the ``driver`` fixture
    (an instance whose ``setup()`` has already run)."""

    kind: ClassVar[str] = ""

    @pytest.fixture
    def driver(self) -> Driver:
        raise NotImplementedError("a conformance subclass must supply the `driver` fixture")

    def test_is_a_driver_of_its_kind(self, driver: Driver) -> None:
        assert isinstance(driver, DRIVER_BASES[self.kind])
        assert driver.info.kind == self.kind
        assert driver.info.name and driver.info.name == driver.info.name.lower()

    def test_targets_this_driver_api(self, driver: Driver) -> None:
        assert driver.info.api_version == DRIVER_API_VERSION

    def test_status_is_pairs_of_strings(self, driver: Driver) -> None:
        status = driver.status()
        assert isinstance(status, list)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in status)

    async def test_setup_is_idempotent(self, driver: Driver) -> None:
        await driver.setup()
