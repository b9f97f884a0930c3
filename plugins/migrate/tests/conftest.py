"""Two netns hosts (module scope, ~2 s), each a real engine with TLS that checkpoints with runc
and CRIU 4.x; the busybox image bootstrapped on both.

The engines load a test-only plugin, ``engine_plugins/dockyard_test_migrate_faults.py`` (never
installed: the SDK's ``engine_plugins_env`` names it in ``DOCKYARD_PLUGINS`` and puts its
directory on the engines' ``PYTHONPATH``). It implements ``dockyard_migration_phase``: it logs
every phase an engine reaches and, when a test asks (:meth:`Faults.inject`), fails or kills the
engine at one."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

CRIU = "/opt/criu/sbin/criu"
#: the test-only plugin the engines load, and the variable naming its directory of instructions
ENGINE_PLUGINS = Path(__file__).parent / "engine_plugins"
FAULTS_PLUGIN = "dockyard_test_migrate_faults"
FAULTS_ENV = "DOCKYARD_TEST_MIGRATE_FAULTS"


@dataclass
class Faults:
    """The test-only plugin's instructions and log, one file each per host (by host name)."""

    directory: Path

    def engine_env(self) -> dict[str, str]:
        """What an engine needs to load the plugin and find this directory."""
        from dockyard_plugin_sdk.testing import engine_plugins_env

        self.directory.mkdir(parents=True, exist_ok=True)
        return {**engine_plugins_env(FAULTS_PLUGIN, path=ENGINE_PLUGINS), FAULTS_ENV: str(self.directory)}

    def inject(self, host: Any, side: str, phase: str, action: str) -> Path:
        """Make ``host``'s engine fail (``raise``) or die (``kill``) when a migration reaches
        ``side:phase`` there; the returned file is removed as it fires."""
        fault = self.directory / host.name
        fault.write_text(f"{side}:{phase}:{action}")
        return fault

    def phases(self, host: Any) -> list[tuple[str, str, str, str]]:
        """Every ``(side, phase, container, migration ID)`` ``host``'s engine reached, in order."""
        try:
            text = (self.directory / f"{host.name}.phases").read_text()
        except FileNotFoundError:
            return []
        return [tuple(line.split(" ", 3)) for line in text.splitlines() if line]  # type: ignore[misc]


@dataclass
class Pair:
    root: Path
    netns: Any  # NetnsHosts
    hosts: list[Any]
    faults: Faults

    async def revive(self, host: Any) -> None:
        """Start a host's engine again once the driver saw it die (else start() would kill the
        host's cgroup, containers and all)."""
        import time

        drv = self.netns.driver
        end = time.monotonic() + 20
        while (await drv.state(host.host)).state == "running":
            assert time.monotonic() < end, "the killed engine still counts as running"
            await asyncio.sleep(0.1)
        await drv.start(host.host)


def unavailable() -> str | None:
    from dockyard_plugin_sdk.testing import netns_hosts_unavailable

    if not os.access(CRIU, os.X_OK):
        return "needs CRIU 4.x at /opt/criu (make install builds it)"
    if not shutil.which("runc") or not shutil.which("conmon"):
        return "needs runc and conmon"
    return netns_hosts_unavailable()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Faults:
    """The test-only plugin's directory for a module's engines (give ``faults.engine_env()`` to
    the hosts it makes)."""
    return Faults(tmp_path_factory.mktemp("faults"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(dockyard_owners: Any, faults: Faults) -> AsyncIterator[Pair]:
    from dockyard_plugin_sdk.testing import NetnsHosts

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dymg{uuid.uuid4().hex[:6]}")
    netns = await NetnsHosts.open(base / "n", owners=dockyard_owners)
    try:
        hosts = await netns.create(2, engine_options=["--default-runtime", "runc"], engine_env=faults.engine_env())
        await asyncio.gather(*(asyncio.to_thread(h.bootstrap, "busybox") for h in hosts))
        yield Pair(root=base, netns=netns, hosts=hosts, faults=faults)
    finally:
        errors = await netns.close()
        shutil.rmtree(base, ignore_errors=True)
        assert not errors, errors
