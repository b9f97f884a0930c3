"""``stream``: the batteries-included :class:`~dockyard.specs.storage.Migrator`. CRIU through
the engine's checkpoint/restore, the portable archive's layout on the wire, volumes through
their carriers, one TCP (TLS) connection straight from engine to engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockyard.specs.storage import (
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    MigrationTicket,
    Migrator,
    VolumeCarrier,
)


def carriers_of(kernel: Any) -> dict[str, VolumeCarrier]:
    """Every carrier the plugins offer, by name (ours, ``local``, among them)."""
    out: dict[str, VolumeCarrier] = {}
    for result in kernel.hook.dockyard_volume_carriers(kernel=kernel):
        for carrier in result or ():
            out.setdefault(carrier.name, carrier)
    return out


class StreamMigrator(Migrator):
    name = "stream"

    async def offer(self, kernel: Any, options: MigrationOptions) -> MigrationTicket:
        from dockyard_migrate.target import Receiver

        return await Receiver(kernel, self.name, carriers_of(kernel)).offer(options, options.listen)

    async def send(self, kernel: Any, ref: str, ticket: MigrationTicket, options: MigrationOptions,
                   report: Callable[[MigrationProgress], None]) -> MigrationResult:
        from dockyard_migrate.source import Sender

        return await Sender(kernel, carriers_of(kernel)).send(ref, ticket, options, report)

    async def recover(self, kernel: Any) -> None:
        from dockyard_migrate.source import Sender, recover
        from dockyard_migrate.target import Receiver

        carriers = carriers_of(kernel)
        await recover(kernel, Sender(kernel, carriers), Receiver(kernel, self.name, carriers))


def migrator_of(kernel: Any, name: str = "") -> Migrator:
    """The migrator ``name`` ("" = the daemon setting ``migrator``, default ``stream``)."""
    from dockyard.errors import Conflict, NotFound

    want = name or str(kernel.config.get("migrator") or "stream")
    found: list[Migrator] = []
    for result in kernel.hook.dockyard_migrators(kernel=kernel):
        found += [m for m in result or () if m.name == want]
    if not found:
        raise NotFound(f"no migrator named {want!r} is installed")
    if len(found) > 1:
        raise Conflict(f"two plugins offer the migrator {want!r}")
    return found[0]
