"""The migration hook spec: migrators and volume carriers come from plugins, picked by name;
no container needed (a fresh kernel, no daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Config
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.kernel import Kernel
from dockyard.specs import hookimpl
from dockyard.specs.storage import MigrationOptions, MigrationTicket, Migrator, VolumeCarrier


class Fake(Migrator):
    name = "fake"

    async def offer(self, kernel: Any, options: MigrationOptions) -> MigrationTicket:
        return MigrationTicket(address=":1", token="t", migrator=self.name)

    async def send(self, kernel: Any, ref: str, ticket: Any, options: Any, report: Any) -> Any:
        raise NotImplementedError


class SharedStorage:
    """A volume driver plugin whose volumes live on shared storage: nothing moves."""

    calls: list[str] = []

    @hookimpl
    def dockyard_migrators(self, kernel: Any) -> list[Migrator]:
        self.calls.append("migrators")
        return [Fake()]

    @hookimpl
    def dockyard_volume_carriers(self, kernel: Any) -> list[VolumeCarrier]:
        self.calls.append("carriers")
        return [VolumeCarrier("shared", drivers=("nfs",))]


def kernel_with(tmp_path: Path, *plugins: Any, **config: Any) -> Kernel:
    import dockyard_migrate.plugin

    return Kernel.build(Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r"), **config}),
                        plugins=(dockyard_migrate.plugin, *plugins), autoload=False, environ={})


def test_migrators_and_carriers_come_from_plugins(tmp_path: Path) -> None:
    from dockyard_migrate.migrator import StreamMigrator, carriers_of, migrator_of
    from dockyard_migrate.source import Sender

    k = kernel_with(tmp_path, SharedStorage())
    assert isinstance(migrator_of(k), StreamMigrator)  # the `migrator` setting's default
    assert isinstance(migrator_of(k, "fake"), Fake)
    carriers = carriers_of(k)
    assert carriers["shared"].send is None and carriers["local"].send is not None
    assert Sender(k, carriers).carrier("nfs").name == "shared"
    with pytest.raises(InvalidArgument, match="no migration carrier for volume driver 'ceph'"):
        Sender(k, carriers).carrier("ceph")
    with pytest.raises(NotFound, match="no migrator named 'rdma'"):
        migrator_of(k, "rdma")
    assert "migrators" in SharedStorage.calls and "carriers" in SharedStorage.calls
    k2 = kernel_with(tmp_path, SharedStorage(), migrator="fake")
    assert isinstance(migrator_of(k2), Fake)


def test_two_migrators_of_one_name_are_a_conflict(tmp_path: Path) -> None:
    from dockyard_migrate.migrator import migrator_of

    class Other(SharedStorage):
        pass

    k = kernel_with(tmp_path, SharedStorage(), Other())
    with pytest.raises(Conflict, match="two plugins offer the migrator 'fake'"):
        migrator_of(k, "fake")


def test_each_phase_reaches_every_plugin_and_a_raise_fails_it(tmp_path: Path) -> None:
    """``dockyard_migration_phase``: every implementation hears a phase (an auditor and a
    progress reporter alike); what one raises is the migration's failure at that point (the
    crash tests' faults come this way, from a test-only plugin in the hosts' engines)."""
    from dockyard_migrate.common import phase_reached

    heard: list[tuple[str, ...]] = []

    class Auditor:
        @hookimpl
        def dockyard_migration_phase(self, kernel: Any, side: str, phase: str, container: str,
                                     migration: str) -> None:
            heard.append((side, phase, container, migration))

    class Refuser:
        @hookimpl
        def dockyard_migration_phase(self, side: str, phase: str) -> None:  # a subset of the arguments
            if (side, phase) == ("target", "restore"):
                raise InvalidArgument("no restore here")

    k = kernel_with(tmp_path, Auditor(), Refuser())
    phase_reached(k, "source", "dump", "web", "m1")
    assert heard == [("source", "dump", "web", "m1")]
    with pytest.raises(InvalidArgument, match="no restore here"):
        phase_reached(k, "target", "restore", "web", "m1")


def test_mode_is_chosen_by_resident_memory() -> None:
    from dockyard_migrate.source import choose_mode

    opts = MigrationOptions(lazy_threshold=128 << 20)
    assert choose_mode(opts, 64 << 20) == "stop-copy"
    assert choose_mode(opts, 256 << 20) == "lazy"
    assert choose_mode(MigrationOptions(mode="stop-copy"), 1 << 40) == "stop-copy"
    with pytest.raises(InvalidArgument):
        choose_mode(MigrationOptions(mode="pre-copy"), 0)


def test_ticket_round_trips_through_json() -> None:
    t = MigrationTicket(address="10.0.0.2:4000", token="ab" * 32, migrator="stream", tls=True, expires=12.5)
    assert MigrationTicket.from_json(t.to_json()) == t


def test_the_wire_frames_json_and_data() -> None:
    from dockyard_migrate.wire import Wire, WireError

    async def main() -> None:
        got: list[Any] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            w = Wire(reader, writer)
            got.append(await w.recv_json())
            got.append(await w.frame())
            got.append(await w.frame())
            await w.send_json({"type": "error", "message": "target: no"})
            await w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        w = Wire(*await asyncio.open_connection("127.0.0.1", port))
        await w.send_json({"type": "hello"})
        await w.send_data(b"x" * 10)
        await w.send_end()
        from dockyard.errors import DockyardError

        with pytest.raises(DockyardError, match="target: no"):
            await w.recv_json()
        with pytest.raises(WireError):
            await w.recv_json()
        await w.close()
        server.close()
        assert got == [{"type": "hello"}, (b"D", b"x" * 10), (b"E", b"")]
        assert w.sent == 10

    asyncio.run(main())


def test_progress_is_throttled_but_a_phase_keeps_its_last_report() -> None:
    """At most one report per phase every 0.1 s, but the report a phase ends with (its bytes)
    is never lost to the limit: it goes out before the next phase, or at the end."""
    from dockyard.specs.storage import MigrationProgress
    from dockyard_migrate.api import ProgressThrottle

    now = [0.0]
    t = ProgressThrottle(0.1, clock=lambda: now[0])
    sent: list[tuple[str, int]] = []

    def offer(phase: str, n: int, at: float) -> None:
        now[0] = at
        sent.extend((p.phase, p.bytes) for p in t.offer(MigrationProgress(phase, n)))

    offer("image", 0, 1.00)
    offer("image", 10, 1.02)  # held back
    offer("image", 20, 1.04)  # held back, replaces 10
    offer("image", 30, 1.20)  # past the limit: sent, the held 20 is superseded
    offer("image", 40, 1.25)  # held back: the phase's last
    offer("dump", 40, 1.26)
    offer("dump", 50, 1.27)  # held back: the last of the stream
    sent.extend((p.phase, p.bytes) for p in t.flush())
    assert sent == [("image", 0), ("image", 30), ("image", 40), ("dump", 40), ("dump", 50)]
    assert t.flush() == []
