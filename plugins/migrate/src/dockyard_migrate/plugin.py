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


#: CRIU settings for the containers this engine runs (runc hands CRIU the file named by the
#: ``org.criu.config`` annotation): connections still in a listener's backlog when the dump
#: freezes it are dropped (their clients retry), where CRIU would refuse the whole dump
CRIU_CONF = "skip-in-flight\n"


@hookimpl
def dockyard_runtime_spec(kernel: Any, container: Any, spec: dict[str, Any]) -> None:
    from dockyard_migrate.common import data_dir

    path = data_dir(kernel) / "criu-runc.conf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CRIU_CONF)
    spec.setdefault("annotations", {}).setdefault("org.criu.config", str(path))


@hookimpl
def dockyard_background_services(kernel: Any) -> list[BackgroundService]:
    return [BackgroundService("migrate-recover", _recover)]
