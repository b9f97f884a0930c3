"""docker-compose v1 (1.29.2, in its own venv) runs the demo app against dockyardd (issue 8).

The venv (``PyYAML==5.3.1 docker-compose==1.29.2 docker==6.1.3 requests<2.32``, from PyPI) is made
once and cached under ``$DOCKYARD_TEST_CACHE/compose-v1-venv`` (default ``/var/cache/dockyard-test``);
a fresh build takes about 50 s here (PyYAML 5.3.1 has no wheel for Python 3.11: pip builds its sdist,
pure Python without libyaml), a cached one costs nothing. The test skips only when the package index
pip is configured with cannot be reached.

The demo (``examples/compose-demo``) is copied to a tmp dir and run there. One change makes it a v1
file: the top-level ``name:`` is dropped (compose 1.29.2's schema rejects it: "'name' does not match
any of the regexes: '^x-'"); the project name comes from ``-p`` instead. Everything else, including
``depends_on: condition: service_completed_successfully`` / ``service_healthy``, healthchecks,
build args and ``.env`` interpolation, is v1 1.29 syntax. ``COMPOSE_DOCKER_CLI_BUILD=0`` makes
compose build through docker-py's classic ``POST /build`` (1.29 would otherwise shell out to the
docker CLI).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")

REQUIREMENTS = ["PyYAML==5.3.1", "docker-compose==1.29.2", "docker==6.1.3", "requests<2.32"]
DEMO = Path(__file__).resolve().parents[2] / "examples" / "compose-demo"
CACHE = Path(os.environ.get("DOCKYARD_TEST_CACHE", "/var/cache/dockyard-test"))


# ------------------------------------------------------------------------ the compose v1 venv
@dataclass
class ComposeV1:
    exe: Path
    built: bool  # False: reused from the cache
    seconds: float  # time spent making (or checking) the venv


def _stamp() -> str:
    return json.dumps({"requirements": REQUIREMENTS, "python": sys.version,
                       "base": getattr(sys, "_base_executable", sys.executable)}, sort_keys=True)


def _usable(venv: Path) -> bool:
    stamp = venv / ".dockyard-stamp"
    if not stamp.is_file() or stamp.read_text() != _stamp():
        return False
    res = subprocess.run([str(venv / "bin" / "docker-compose"), "version", "--short"],
                         capture_output=True, text=True, timeout=60)
    return res.returncode == 0 and res.stdout.strip() == "1.29.2"


def _index_reachable(venv: Path) -> tuple[bool, str]:
    """Can pip (with this machine's index configuration) fetch anything at all?"""
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "download", "--no-deps",
                              "--no-cache-dir", "-q", "-d", d, "docker-compose==1.29.2"],
                             capture_output=True, text=True, timeout=300)
    return res.returncode == 0, res.stderr[-1500:]


@pytest.fixture(scope="session")
def compose_v1() -> ComposeV1:
    """docker-compose 1.29.2 in its own venv, built once (under a lock: parallel sessions share it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / "compose-v1-venv"
    t0 = time.monotonic()
    with open(CACHE / "compose-v1-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _usable(venv):
            return ComposeV1(venv / "bin" / "docker-compose", False, time.monotonic() - t0)
        # Built in place (a venv's scripts carry its absolute path); the stamp is written last,
        # so an interrupted build is never taken for a finished one.
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        res = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS],
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            ok, why = _index_reachable(venv)
            shutil.rmtree(venv, ignore_errors=True)
            if not ok:
                pytest.skip(f"PyPI (pip's configured index) is unreachable, cannot make the docker-compose "
                            f"1.29.2 venv:\n{why}")
            raise AssertionError(f"pip install {' '.join(REQUIREMENTS)} failed although the index is "
                                 f"reachable:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
        (venv / ".dockyard-stamp").write_text(_stamp())
        if not _usable(venv):
            raise AssertionError(f"{venv}: docker-compose 1.29.2 does not run after a clean install")
        return ComposeV1(venv / "bin" / "docker-compose", True, time.monotonic() - t0)


# ------------------------------------------------------------------------------- the daemon
@pytest.fixture(scope="module")
def d(e2e_daemon: Callable[..., AbstractContextManager[Daemon]]) -> Iterator[Daemon]:
    with e2e_daemon("dyv1") as daemon:
        yield daemon


# ---------------------------------------------------------------------------------- helpers
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def v1_project(dest: Path) -> Path:
    """The demo copied to ``dest``, its compose file made acceptable to compose 1.29.2."""
    shutil.copytree(DEMO, dest)
    f = dest / "compose.yaml"
    text = f.read_text()
    # v1 takes the project name from -p; its schema rejects a top-level `name:`.
    f.write_text(re.sub(r"(?m)^name:.*\n", "", text))
    return dest


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# ------------------------------------------------------------------------------------- test
@pytest.mark.timeout(900)  # includes a first-time venv build (about 50 s here)
def test_demo_app_with_compose_v1(d: Daemon, compose_v1: ComposeV1, tmp_path: Path,
                                  record_property: pytest.RecordProperty) -> None:
    record_property("compose_v1_venv_seconds", round(compose_v1.seconds, 1))
    record_property("compose_v1_venv_built", compose_v1.built)
    print(f"compose v1 venv {'built' if compose_v1.built else 'reused'} in {compose_v1.seconds:.1f}s")

    proj = f"dyv1{secrets.token_hex(3)}"
    port = free_port()
    app = v1_project(tmp_path / "compose-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_", "DEMO_"))}
    env.update(DOCKER_HOST=d.host, DOCKER_CONFIG=str(tmp_path / "docker-config"),
               COMPOSE_DOCKER_CLI_BUILD="0",  # docker-py's POST /build, not the docker CLI
               DEMO_PORT=str(port))  # the shell environment wins over .env, as in v1

    def compose(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(compose_v1.exe), "-p", proj, *args], cwd=app, env=env,
                             capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, (f"docker-compose {' '.join(args)} exited {res.returncode}:\n"
                                     f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}\ndaemon log:\n{d.log[-3000:]}")
        return res

    def project_ids() -> dict[str, str]:
        out = d.docker("ps", "-a", "--no-trunc", "--filter", f"label=com.docker.compose.project={proj}",
                       "--format", "{{.Names}} {{.ID}}").stdout
        return dict(line.split() for line in out.splitlines())

    names = {s: f"{proj}_{s}_1" for s in ("seed", "worker", "web")}
    down_done = False
    try:
        # 1. up -d --build: both images through /build, seed runs to completion, worker healthy, web.
        up = compose("up", "-d", "--build")
        log = up.stdout + up.stderr
        for image in ("dockyard-demo/worker:1", "dockyard-demo/web:1"):
            assert f"Successfully tagged {image}" in log, log
        assert "Step 1/6 : FROM busybox" in log and "legacy builder" not in log, log  # docker-py, not the CLI
        for n in names.values():
            assert re.search(rf"Creating {n}\s+\.\.\. done", log), log
        first = project_ids()
        assert set(first) == set(names.values()), first

        # The networks and the volume compose declared exist, labelled as v1 labels them.
        for net in ("default", "backend"):
            labels = json.loads(d.docker("network", "inspect", f"{proj}_{net}", "--format",
                                         "{{json .Labels}}").stdout)
            assert labels["com.docker.compose.project"] == proj and labels["com.docker.compose.network"] == net
        assert json.loads(d.docker("network", "inspect", f"{proj}_backend", "--format",
                                   "{{json .Labels}}").stdout)["demo.role"] == "backend"
        vlabels = json.loads(d.docker("volume", "inspect", f"{proj}_visits", "--format",
                                      "{{json .Labels}}").stdout)
        assert vlabels["com.docker.compose.volume"] == "visits", vlabels

        # 2. web answers on its published 127.0.0.1 port; the counter on the shared volume advances.
        # a connection refused or reset while the server comes up is "not yet"
        status, body = wait_for(lambda: (r := get(port, "/cgi-bin/visits"))[0] == 200 and r, 60,
                                f"web answering on 127.0.0.1:{port}", ignore=(OSError,))
        assert "Hello from dockyard compose" in body, body
        n1 = int(re.search(r"^visits: (\d+)$", body, re.M).group(1))
        _, body2 = get(port, "/cgi-bin/visits")
        assert re.search(rf"^visits: {n1 + 1}$", body2, re.M), (body, body2)
        assert re.search(r"^served by: [0-9a-f]{12}$", body2, re.M), body2

        # 3. ps once web's own healthcheck passed: seed exited 0, worker and web Up (healthy).
        wait_for(lambda: d.docker("inspect", "--format", "{{.State.Health.Status}}",
                                  names["web"]).stdout.strip() == "healthy", 60, "web healthy")
        ps = compose("ps").stdout
        rows = {line.split()[0]: line for line in ps.splitlines()[2:] if line.strip()}
        assert set(rows) == set(names.values()), ps
        assert re.search(r"\s{2,}Exit 0\s*$", rows[names["seed"]]), ps
        assert re.search(r"\s{2,}Up \(healthy\)\s*$", rows[names["worker"]]), ps
        assert re.search(rf"\s{{2,}}Up \(healthy\)\s+127\.0\.0\.1:{port}->8080/tcp\s*$", rows[names["web"]]), ps

        # 4. logs: every container's output, prefixed by v1's "<service>_1  | ".
        logs = compose("logs", "--no-color").stdout
        assert re.search(r"(?m)^seed_1\s+\| seeded$", logs), logs
        assert re.search(r"(?m)^worker_1\s+\| worker: started, ticking every 5s$", logs), logs  # from .env

        # 5. A second up -d recreates nothing (config-hash labels and image IDs round-trip); v1
        #    starts the exited one-shot seed again, in the same container.
        again = compose("up", "-d")
        log = again.stdout + again.stderr
        assert "Recreating" not in log and "Creating" not in log, log
        assert f"{names['worker']} is up-to-date" in log and f"{names['web']} is up-to-date" in log, log
        assert project_ids() == first
        #    ...and neither does a rebuild: the builder's cache gives the same image IDs.
        rebuilt = compose("up", "-d", "--build")
        log = rebuilt.stdout + rebuilt.stderr
        assert "Using cache" in log and "Recreating" not in log, log
        assert project_ids() == first

        # A stopped web has exited 0 (its shell traps TERM) and, as on dockerd, no ports any more.
        compose("stop", "web")
        ps = compose("ps").stdout
        rows = {line.split()[0]: line for line in ps.splitlines()[2:] if line.strip()}
        assert re.search(r"\s{2,}Exit 0\s*$", rows[names["web"]]), ps
        assert re.search(r"\s{2,}Up \(healthy\)\s*$", rows[names["worker"]]), ps

        # 6. down -v: containers, both networks and the volume are gone.
        down = compose("down", "-v")
        down_done = True
        log = down.stdout + down.stderr
        assert f"Removing volume {proj}_visits" in log, log
        assert project_ids() == {}
        nets = d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert not [n for n in nets if n.startswith(proj)], nets
        vols = d.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert not [v for v in vols if v.startswith(proj)], vols
        assert get_refused(port), f"127.0.0.1:{port} still answers after down"
    finally:
        if not down_done:
            subprocess.run([str(compose_v1.exe), "-p", proj, "down", "-v", "-t", "1"], cwd=app, env=env,
                           capture_output=True, timeout=120)


def get_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False
