from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.errors import InvalidArgument
from dockyard.specs._base import DriverContext
from dockyard_plugin_sdk.conformance.network import free_test_subnet, random_owner
from dockyard_plugin_sdk.testing import Owners, snapshot_host, wait_for_no_leaks
from dockyard_provision_netns.driver import NetnsProvisioner

SUBNET_BASE = "10.247.0.0/16"


def engine_missing() -> str | None:
    """Why a host's engine cannot run here (the driver itself needs only core and pyroute2)."""
    if os.geteuid() != 0:
        return "netns hosts need root"
    for module, dist in (("dockyard_engine", "dockyard-engine"), ("dockyard_api_docker", "dockyard-api-docker"),
                         ("dockyard_arch_linux", "dockyard-arch-linux")):
        if importlib.util.find_spec(module) is None:
            return f"a host's engine needs {dist}: pip install {dist}"
    return None


@pytest.fixture(autouse=True)
def _needs_an_engine() -> None:
    reason = engine_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def roots() -> Callable[[], Path]:
    """Short private directories under /tmp (the hosts' unix sockets live below them)."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp")))
        return made[-1]

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_driver(roots: Callable[[], Path]) -> Callable[..., NetnsProvisioner]:
    """``make(owner=None, root=None, **options)``: a driver on a fresh (or given) root, not set up."""
    def make(owner: str | None = None, root: Path | None = None, **options: str) -> NetnsProvisioner:
        root = root or roots()
        (root / "data").mkdir(exist_ok=True)
        (root / "run").mkdir(exist_ok=True)
        ctx = DriverContext(data_dir=root / "data", run_dir=root / "run", owner=owner or random_owner("dyn"),
                            options=options)
        return NetnsProvisioner(ctx)

    return make


@pytest_asyncio.fixture
async def netns_driver(make_driver: Callable[..., NetnsProvisioner],
                       dockyard_owners: Owners) -> AsyncIterator[NetnsProvisioner]:
    """A set-up driver on a random free /24 of 10.247.0.0/16 (another one if a parallel session
    claims it first). At teardown every host it still has is removed, it is closed, and nothing
    of its owner, or of those hosts' engines (their own owner tokens), may be left: no netns,
    link, cgroup, mount under its directories or process. The owners are recorded for the
    session's leak check too."""
    before = await asyncio.to_thread(snapshot_host)
    owners = Owners()
    for attempt in range(5):
        subnet = await asyncio.to_thread(free_test_subnet, SUBNET_BASE, 24)
        drv = make_driver(subnet=subnet)
        for o in (owners, dockyard_owners):
            o.record(drv.context.owner, drv.context.data_dir.parent)
        try:
            await drv.setup()
            break
        except InvalidArgument:
            if attempt == 4:
                raise
    try:
        yield drv
    finally:
        for rec in await asyncio.to_thread(drv._records):
            for o in (owners, dockyard_owners):  # what the host's engine made, by its own token
                o.record(rec.engine_owner, rec.root, rec.run)
            await drv.remove(drv._host(rec))
        await drv.close()
        leaks = await asyncio.to_thread(wait_for_no_leaks, before, 5.0, snapshot_host, owners.owns)
        assert not leaks, "the driver left host objects:\n" + leaks.describe()
        assert not _processes_naming(str(drv.context.data_dir.parent)), "engine processes are left"


@pytest.fixture
def processes_naming() -> Callable[[str], list[str]]:
    """``find(text)``: processes anywhere whose command line contains ``text``."""
    return _processes_naming


def _processes_naming(text: str) -> list[str]:
    """Processes (anywhere, not only our children: conmon daemonises) whose command line
    contains ``text``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name} {cmdline[:200]}")
    return found
