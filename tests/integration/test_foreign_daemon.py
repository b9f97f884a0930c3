"""The suite passes with another dockyardd on the machine.

The leak checks (``no_leaks``, ``--dockyard-leak-check``) count only objects named with the owner
tokens of the roots the session's fixtures created. A second, unrelated daemon -- started here
from outside the fixtures, so its owner is never recorded -- makes a network and runs a container
while a small session of container tests runs beside it: that session must pass, although the
other daemon's bridge, veth, cgroup and nft table appeared during it and are still there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Owners, snapshot_host, start_daemon

sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]

SESSION = """
import os
import subprocess

FOREIGN = os.environ["FOREIGN_DOCKYARD_HOST"]


def foreign(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = os.environ["FOREIGN_DOCKER_CONFIG"]
    return subprocess.run(["docker", "-H", FOREIGN, *args], check=True, capture_output=True, text=True,
                          env=env, timeout=60).stdout


def test_a_container_while_another_daemon_works(dockyardd, no_leaks):
    # the other daemon makes kernel objects while this test runs, and keeps them
    foreign("network", "create", "othernet")
    foreign("run", "-d", "--name", "other", "--network", "othernet", "busybox", "sleep", "300")
    dockyardd.dockyard("image", "bootstrap", "busybox")
    assert dockyardd.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\\n"
    dockyardd.docker("run", "-d", "--name", "mine", "busybox", "sleep", "300")
    assert dockyardd.docker("inspect", "-f", "{{.State.Status}}", "mine").stdout == "running\\n"
    dockyardd.docker("rm", "-f", "mine")
    assert foreign("inspect", "-f", "{{.State.Status}}", "other") == "running\\n"


def test_nothing(no_leaks):
    pass
"""


def test_the_suite_passes_with_another_dockyardd_running(tmp_path: Path) -> None:
    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
    root = Path(f"/tmp/dyf-{os.urandom(3).hex()}")  # short: the socket path must fit sun_path
    other = start_daemon(root, config={"default-address-pools": f"{pool}:24"})  # no owners: not recorded
    try:
        other.dockyard("image", "bootstrap", "busybox")
        project = tmp_path / "project"
        project.mkdir()
        (project / "test_beside.py").write_text(textwrap.dedent(SESSION))
        (project / "pytest.ini").write_text("[pytest]\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(FOREIGN_DOCKYARD_HOST=other.host, FOREIGN_DOCKER_CONFIG=str(root / "docker-config"))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               "--dockyard-leak-check", str(project)],
                              cwd=project, capture_output=True, text=True, timeout=600, env=env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "2 passed" in out, out
        assert "nothing left behind (1 owner token(s) recorded" in out, out

        # the other daemon's objects were there to be ignored: they appeared during that
        # session, carry its token, and outlived it
        theirs = snapshot_host().filter(Owners(tokens={other.owner}).owns)
        assert theirs.links and theirs.cgroups and theirs.mounts, theirs
        assert other.docker("inspect", "-f", "{{.State.Status}}", "other").stdout == "running\n"
    finally:
        try:
            other.teardown()
        finally:
            shutil.rmtree(root, ignore_errors=True)
