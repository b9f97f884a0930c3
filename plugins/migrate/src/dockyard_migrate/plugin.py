"""Feature hooks of dockyard-migrate: the ``stream`` migrator, the ``local`` volume carrier,
the API routes, the ``migrator`` setting and the start-up recovery of interrupted migrations."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiRoute, hookimpl
from dockyard.specs.config import ConfigOption
from dockyard.specs.events import BackgroundService


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [ConfigOption("migrator", str, "stream", "the migrator `dockyard migrate` uses when none is named")]


@hookimpl
def dockyard_migrators(kernel: Any) -> list[Any]:
    from dockyard_migrate.migrator import StreamMigrator

    return [StreamMigrator()]


@hookimpl
def dockyard_volume_carriers(kernel: Any) -> list[Any]:
    from dockyard_migrate.common import LOCAL_CARRIER

    return [LOCAL_CARRIER]


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_migrate import api

    return api.routes(kernel)


async def _recover(kernel: Any) -> None:
    """Once at start: settle what a killed daemon left half done (engines only)."""
    import logging

    from dockyard_migrate.common import data_dir

    if kernel.role != "engine" or not (data_dir(kernel) / "journal").is_dir():
        return
    from dockyard_migrate.migrator import migrator_of

    try:
        await migrator_of(kernel).recover(kernel)
    except Exception as exc:  # noqa: BLE001 - a daemon must start; the journal stays for the next try
        logging.getLogger(__name__).warning("migration recovery failed: %s", exc)


@hookimpl
def dockyard_background_services(kernel: Any) -> list[BackgroundService]:
    return [BackgroundService("migrate-recover", _recover)]
