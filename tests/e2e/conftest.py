"""What the end-to-end modules share: one daemon per module and a docker-py client of it.

A module declares its daemon with the ``e2e_daemon`` factory (its root prefix in /tmp, short:
the socket path must fit sun_path)::

    @pytest.fixture(scope="module")
    def d(e2e_daemon):
        with e2e_daemon("dye") as daemon:
            yield daemon

and gets ``client`` (a ``docker.DockerClient`` of ``d``, closed after each test) for free.

``multiarch_daemon`` (module scope): a daemon with busybox for linux/amd64, arm64 and arm/v7 and
the binfmt handlers to run the foreign two (the emulation and cross-build modules).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard_plugin_sdk.testing import Daemon


@pytest.fixture(scope="session")
def e2e_daemon(start_dockyardd: Callable[..., Daemon]) -> Callable[..., contextlib.AbstractContextManager[Daemon]]:
    """``with e2e_daemon(prefix, clean_log=False) as d``: a daemon on ``/tmp/PREFIX-XXXXXX`` with
    its own free address pool and busybox bootstrapped; at the end every container is removed,
    the daemon stopped, nothing it made may be left (``clean_log``: nor a Traceback in its log)
    and the root is deleted."""
    from dockyard_plugin_sdk.conformance.network import free_test_subnet
    from tests.e2e.test_run_cli import bootstrap, stop_and_check

    @contextlib.contextmanager
    def run(prefix: str, *, clean_log: bool = False) -> Iterator[Daemon]:
        pool = free_test_subnet("10.213.0.0/17", prefixlen=20)
        root = Path(f"/tmp/{prefix}-{os.urandom(3).hex()}")
        daemon = start_dockyardd(root, config={"default-address-pools": f"{pool}:24"})
        try:
            bootstrap(daemon)
            yield daemon
        finally:
            try:
                if clean_log:
                    assert "Traceback" not in daemon.log, daemon.log[-3000:]
                stop_and_check(daemon)
            finally:
                shutil.rmtree(root, ignore_errors=True)

    return run


@pytest.fixture
def client(d: Daemon) -> Iterator[Any]:
    """A docker-py client of the module's daemon ``d``."""
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def multiarch_daemon(tmp_path_factory: pytest.TempPathFactory, start_dockyardd: Callable[..., Daemon],
                     binfmt_emulation: dict[str, str]) -> Iterator[Daemon]:
    """A daemon with busybox of three platforms (the module checks the foreign busybox exists)."""
    d = start_dockyardd(tmp_path_factory.mktemp("multiarch") / "d")
    d.dockyard("image", "bootstrap", "busybox")
    d.dockyard("image", "bootstrap", "busybox", "--platform", "linux/arm64")
    d.dockyard("image", "bootstrap", "busybox", "--platform", "linux/arm/v7")
    yield d
    d.remove_all_containers()
    assert d.stop() == 0
