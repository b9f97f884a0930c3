"""The SDK's pytest plugin (``pytest11`` entry point ``dockyard``): fixtures for authors.

Fixtures:

``dockyard_kernel``
    A fresh :class:`dockyard.kernel.Kernel` per test (``autoload=False``: no installed plugin
    is registered), its data and exec roots in the test's ``tmp_path``; stopped at teardown.
``hook_recorder``
    A :class:`dockyard_plugin_sdk.testing.HookRecorder` on that kernel's plugin manager.
``no_leaks``
    Fails the test (at teardown) naming every mount, link, named netns, cgroup, nft table or
    child process that appeared during it and is still there.

Option ``--dockyard-leak-check``: at the end of the session, fail it when any object named
like dockyard's (a name containing ``dockyard`` or starting with ``dy``: links, netns, cgroups,
nft tables, mounts) exists that did not exist when the session started.

Loaded into every pytest run where the SDK is installed, so imports stay light: the kernel is
imported only when a fixture asks for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from dockyard_plugin_sdk.testing import (
    HookRecorder,
    HostSnapshot,
    dockyard_named,
    snapshot_host,
    wait_for_no_leaks,
)

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

LEAK_OPTION = "--dockyard-leak-check"
_BASELINE = pytest.StashKey[HostSnapshot]()
_BEFORE = pytest.StashKey[HostSnapshot]()
_REMAINING = pytest.StashKey[HostSnapshot]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dockyard")
    group.addoption(LEAK_OPTION, action="store_true", default=False,
                    help="fail the session if a dockyard-named link, netns, cgroup, nft table or "
                         "mount created during it remains at the end")


# ---------------------------------------------------------------------------------- kernel
@pytest_asyncio.fixture
async def dockyard_kernel(tmp_path: Path) -> AsyncIterator[Kernel]:
    """A fresh kernel with no plugins loaded; data/exec roots under ``tmp_path``."""
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    root = tmp_path / "dockyard-root"
    root.mkdir()
    kernel = Kernel.build(Config.load(overrides={"data-root": str(root), "exec-root": str(root)}),
                          autoload=False)
    try:
        yield kernel
    finally:
        await kernel.stop()


@pytest.fixture
def hook_recorder(dockyard_kernel: Kernel) -> Iterator[HookRecorder]:
    """Every hook call made through ``dockyard_kernel.pm`` during the test."""
    recorder = HookRecorder(dockyard_kernel.pm)
    try:
        yield recorder
    finally:
        recorder.finish_recording()


# ---------------------------------------------------------------------------------- leaks
@pytest.fixture
def no_leaks() -> None:
    """Fail the test if it leaves kernel objects or child processes behind.

    The host is recorded before any fixture of the test is set up and compared after every
    one of them is torn down (hooks below), so the order in which a test lists its fixtures
    does not matter: a fixture that cleans up in its teardown does not count as a leak.
    """


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if "no_leaks" in getattr(item, "fixturenames", ()):
        item.stash[_BEFORE] = snapshot_host()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is not None:
        del item.stash[_BEFORE]
        leaks = wait_for_no_leaks(before)
        if leaks:
            pytest.fail("the test leaked host objects:\n" + leaks.describe(), pytrace=False)
    return result


def _dockyard_objects() -> HostSnapshot:
    return snapshot_host().filter(dockyard_named)


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption(LEAK_OPTION, default=False):
        session.config.stash[_BASELINE] = _dockyard_objects()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    baseline = config.stash.get(_BASELINE, None)
    if baseline is None:
        return
    remaining = _dockyard_objects()
    config.stash[_REMAINING] = remaining
    if remaining - baseline and session.exitstatus in (pytest.ExitCode.OK,
                                                        pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    baseline = config.stash.get(_BASELINE, None)
    remaining = config.stash.get(_REMAINING, None)
    if baseline is None or remaining is None:
        return
    leaks = remaining - baseline
    if leaks:
        terminalreporter.section("dockyard leak check", red=True)
        terminalreporter.line("dockyard objects left behind by this session:\n" + leaks.describe(), red=True)
    else:
        terminalreporter.section("dockyard leak check")
        terminalreporter.line("no dockyard objects left behind")
    preexisting = remaining.filter(lambda c, i: i in getattr(baseline, c)) - HostSnapshot()
    if preexisting:
        terminalreporter.line("present before the session started (not counted):\n"
                              + preexisting.describe(), yellow=True)
