"""``pip install dockyard`` from the tree's wheels alone runs a container, and so does a venv
with only the drivers someone chose, which also says what to install for what it lacks.

Each test makes a fresh venv (no system site-packages) from the session's wheelhouse (see
conftest.py), starts that venv's ``dockyardd`` on private roots and drives it with that
venv's ``dockyard`` CLI: nothing of the tree or of the main venv is on their path.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dockyard_plugin_sdk.testing import Daemon, Owners
from tests.packaging.conftest import ROOT, Venv, Wheelhouse

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("conmon") or not shutil.which("crun")
                                 or not os.access("/bin/busybox", os.X_OK),
                                 reason="needs root, conmon, crun and /bin/busybox (the offline image)")]

META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEFAULT_SET = {canonicalize_name(Requirement(r).name) for r in META["dependencies"]}
#: A smaller engine: one layer driver, no network, IPAM or volume driver, no builder...
CHOSEN = ["dockyard-core", "dockyard-engine", "dockyard-api-docker", "dockyard-arch-linux", "dockyard-storage-vfs"]


def stop_cleanly(d: Daemon) -> None:
    """SIGTERM: exit status 0, socket and pidfile removed, nothing logged as an error."""
    assert d.stop() == 0, d.log[-3000:]
    assert not d.socket.exists() and not d.pidfile.exists(), "socket or pidfile left behind"
    bad = [line for line in d.log.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not bad, "\n".join(bad)


def test_pip_install_dockyard_runs_a_container(wheelhouse: Wheelhouse, tmp_path: Path,
                                               dockyard_owners: Owners) -> None:
    venv = Venv.create(tmp_path / "venv")
    installed = venv.install(wheelhouse, "dockyard")
    assert {n for n in installed if n.startswith("dockyard")} == DEFAULT_SET | {"dockyard"}
    assert venv.dockyard_distributions() == DEFAULT_SET | {"dockyard"}

    d = venv.start_daemon(tmp_path / "d", dockyard_owners)
    try:
        venv.dockyard(d, "image", "bootstrap", "busybox")
        # the default network (bridge, with IPAM) and the default layer driver
        assert venv.dockyard(d, "run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
        info = d.client().get("/info")
        assert info["Driver"] in ("overlay", "vfs")
        assert d.client().get("/containers/json", all=1) == []
        stop_cleanly(d)
    finally:
        d.teardown()  # a failed test's containers; the built-in bridge outlives the daemon, as docker0


def test_chosen_drivers_make_a_smaller_engine(wheelhouse: Wheelhouse, tmp_path: Path,
                                              dockyard_owners: Owners) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.install(wheelhouse, *CHOSEN)
    assert venv.dockyard_distributions() == {canonicalize_name(n) for n in CHOSEN}

    d = venv.start_daemon(tmp_path / "d", dockyard_owners)
    try:
        info = d.client().get("/info")
        assert info["Driver"] == "vfs", "overlay is not installed: the automatic choice is vfs"
        assert d.client().get("/networks") == []
        venv.dockyard(d, "image", "bootstrap", "busybox")
        assert venv.dockyard(d, "run", "--rm", "--network", "none", "busybox", "echo", "hi").stdout == "hi\n"
        # what is missing says which distribution provides it, at use
        for args, distribution in [
            (["run", "--rm", "busybox", "true"], "dockyard-network-bridge"),   # the default network
            (["network", "create", "-d", "bridge", "net1"], "dockyard-network-bridge"),
            (["run", "--rm", "--network", "host", "busybox", "true"], "dockyard-network-bridge"),
            (["volume", "create", "vol1"], "dockyard-storage-local"),
            (["run", "--rm", "--network", "none", "-v", "vol1:/data", "busybox", "true"], "dockyard-storage-local"),
        ]:
            res = venv.dockyard(d, *args, check=False)
            assert res.returncode != 0 and f"pip install {distribution}" in res.stderr, \
                f"dockyard {' '.join(args)} exited {res.returncode}:\n{res.stderr}"
        assert d.client().get("/containers/json", all=1) == []
        assert d.client().get("/volumes")["Volumes"] in (None, [])
        stop_cleanly(d)
    finally:
        d.teardown()
