"""Fixtures around :mod:`dockyard_provision_ssh.testing`'s SSH targets (Debian's real sshd in
a network namespace the test makes; see that module): ``targets``, ``target``, ``module_target``
(checked at teardown: no process left in a target, no mount under its install root, nothing of
its or its engines' owners on this machine), ``make_driver`` and ``ssh_driver``.

``SetEnv PATH=...`` in a target's sshd_config puts a directory of shims first on the sessions'
PATH when a test asks for one (a ``dpkg`` that reports a package missing), as an administrator's
PATH would.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.specs._base import DriverContext
from dockyard_plugin_sdk.conformance.network import free_test_subnet, random_owner
from dockyard_plugin_sdk.testing import Owners, snapshot_host, wait_for_no_leaks
from dockyard_provision_ssh.driver import SshProvisioner
from dockyard_provision_ssh.testing import SUBNET_BASE, Target, make_target, remove_target, unavailable


class Targets:
    """Makes targets for one test; removes them all at :meth:`close`."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.made: list[Target] = []

    def make(self, shims: bool = False, path: str | None = None) -> Target:
        """A target; ``shims``: its sessions' PATH starts with ``<dir>/shims``; ``path="shims"``:
        it is that directory alone."""
        # pyroute2's synchronous API runs an event loop of its own: never on a running one's thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            subnet = free_test_subnet(SUBNET_BASE, 24)
            t = pool.submit(make_target, self.owner, len(self.made), subnet, shims, path).result()
        self.made.append(t)
        return t

    def close(self) -> list[str]:
        problems = []
        for t in self.made:
            mounts = t.mounts_under_root()
            if mounts:
                problems.append(f"target {t.address}: mounts left under the install root: {mounts}")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                left = pool.submit(remove_target, t).result()
            if left:
                problems.append(f"target {t.address}: processes left in the target: {left}")
        return problems


@contextlib.contextmanager
def checked_targets(dockyard_owners: Owners) -> Iterator[Targets]:
    """Targets, and at the end the check that nothing of theirs is left: no process in a
    target, no mount under an install root, and on this machine no link, netns, cgroup, nft
    table or mount of the targets' or their engines' owners."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    before = snapshot_host()
    owners = Owners()
    owner = random_owner("dys")
    owners.record(owner)
    dockyard_owners.record(owner)
    made = Targets(owner)
    try:
        yield made
    finally:
        problems = made.close()
        for t in made.made:
            for token in t.engine_tokens:
                owners.record(token, t.install_root)
                dockyard_owners.record(token, t.install_root)
        leaks = wait_for_no_leaks(before, 5.0, snapshot_host, owners.owns)
        assert not problems, "\n".join(problems)
        assert not leaks, "the targets left objects on this machine:\n" + leaks.describe()


@pytest.fixture
def targets(dockyard_owners: Owners) -> Iterator[Targets]:
    """``targets.make(shims=False)``: SSH targets for one test (see the module doc), checked
    at teardown (:func:`checked_targets`)."""
    with checked_targets(dockyard_owners) as made:
        yield made


@pytest.fixture
def target(targets: Targets) -> Target:
    return targets.make()


@pytest.fixture(scope="module")
def module_target(dockyard_owners: Owners) -> Iterator[Target]:
    """One target for a module's tests (its engines share one venv), checked at the end."""
    with checked_targets(dockyard_owners) as made:
        yield made.make()


@pytest.fixture
def make_driver(tmp_path: Path) -> Callable[..., SshProvisioner]:
    def make(**options: str) -> SshProvisioner:
        root = tmp_path / f"drv{len(list(tmp_path.glob('drv*')))}"
        (root / "data").mkdir(parents=True)
        (root / "run").mkdir()
        return SshProvisioner(DriverContext(data_dir=root / "data", run_dir=root / "run", owner=random_owner("dyk"),
                                            options=options))

    return make


@pytest_asyncio.fixture
async def ssh_driver(targets: Targets, make_driver: Callable[..., SshProvisioner]) -> AsyncIterator[SshProvisioner]:
    """A set-up driver on private directories (its own installer: no kernel hands one over).
    At teardown every host it still has is removed, before the test's targets go."""
    drv = make_driver()
    await drv.setup()
    try:
        yield drv
    finally:
        for rec in drv._records():
            await drv.remove(drv._host(rec))
        await drv.close()
