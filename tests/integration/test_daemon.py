"""dockyardd as a process: flags, pidfile, signals, side-by-side daemons, loud plugin errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for

pytestmark = pytest.mark.integration

BROKEN_PLUGIN = "raise ImportError('this plugin is broken on purpose')\n"


def api(d: Daemon, path: str) -> dict:
    from dockyard.client import Client

    return Client(d.host).get(path)


def test_sigterm_shuts_down_cleanly(dockyardd: Daemon):
    assert dockyardd.pidfile.read_text().strip() == str(dockyardd.proc.pid)
    assert dockyardd.stop(signal.SIGTERM) == 0
    assert not dockyardd.socket.exists(), "socket left behind"
    assert not dockyardd.pidfile.exists(), "pidfile left behind"


def test_a_second_daemon_on_the_same_pidfile_refuses(dockyardd: Daemon, tmp_path: Path):
    res = subprocess.run([sys.executable, "-m", "dockyard.daemon", "--data-root", str(tmp_path / "other"),
                          "--exec-root", str(dockyardd.root / "run"),
                          "-H", f"unix://{tmp_path / 'other.sock'}"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "pid file found" in res.stderr and str(dockyardd.proc.pid) in res.stderr
    assert dockyardd.proc.poll() is None  # the first one is untouched


def test_two_daemons_side_by_side(dockyardd_factory):
    a, b = dockyardd_factory("a"), dockyardd_factory("b", "--storage-driver", "vfs")
    ia, ib = api(a, "/info"), api(b, "/info")
    assert ia["ID"] != ib["ID"]
    assert (ia["Driver"], ib["Driver"]) == ("overlay", "vfs")
    assert ia["DockerRootDir"] == str(a.root / "data")


def test_sighup_reloads_reloadable_options(dockyardd_factory):
    d = dockyardd_factory("r", config={"labels": ["tier=one"]})
    assert api(d, "/info")["Labels"] == ["tier=one"]
    (d.root / "daemon.json").write_text(json.dumps({"labels": ["tier=two"], "debug": True}))
    since = str(int(time.time()) - 1)
    os.kill(d.proc.pid, signal.SIGHUP)
    info = wait_for(lambda: (i := api(d, "/info"))["Labels"] == ["tier=two"] and i, 10,
                    "/info to show the reloaded labels")
    assert info["Debug"] is True
    assert "daemon reload" in d.past_events(since, "type=daemon")


def test_a_reload_with_a_bad_file_changes_nothing(dockyardd_factory):
    d = dockyardd_factory("bad", config={"labels": ["keep=1"]})
    (d.root / "daemon.json").write_text('{"labels": ["x=1"], "no-such-option": 1}')
    logged = len(d.log)
    os.kill(d.proc.pid, signal.SIGHUP)
    # the daemon has handled the SIGHUP once it logged the refusal; only then is "nothing
    # changed" worth asserting (before, it holds whether or not a reload happened)
    log = d.wait_for_log("configuration reload refused", after=logged)
    assert "no-such-option" in log[logged:] and d.proc.poll() is None
    assert api(d, "/info")["Labels"] == ["keep=1"]
    assert "daemon reload" not in d.past_events("1m", "type=daemon")


@pytest.mark.parametrize("flags, config, message", [
    (["--storage-driver", "zfs"], None, "pip install dockyard-storage-zfs"),
    ([], {"storage-drvier": "vfs"}, "unknown configuration option(s): storage-drvier"),
    (["-H", "tcp://nohost"], None, "expected tcp://HOST:PORT"),
])
def test_startup_errors_are_clear(tmp_path: Path, flags, config, message):
    args = [sys.executable, "-m", "dockyard.daemon", "--data-root", str(tmp_path / "data"),
            "--exec-root", str(tmp_path / "run"), "-H", f"unix://{tmp_path / 'd.sock'}", *flags]
    if config is not None:
        (tmp_path / "daemon.json").write_text(json.dumps(config))
        args += ["--config-file", str(tmp_path / "daemon.json")]
    res = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert message in res.stderr
    assert not (tmp_path / "d.sock").exists() and not (tmp_path / "run" / "dockyardd.pid").exists()


def _broken_plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    info = site / "dockyard_feature_broken-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dockyard-feature-broken\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[dockyard.plugins]\nbroken = dockyard_feature_broken\n")
    (site / "dockyard_feature_broken.py").write_text(BROKEN_PLUGIN)
    return site


def test_a_broken_plugin_is_listed_with_its_error_and_in_info(tmp_path: Path, dockyardd_factory):
    site = _broken_plugin_site(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    cli = str(Path(sys.executable).parent / "dockyard")
    res = subprocess.run([cli, "plugins", "list", "--format", "json"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    rec = next(r for r in json.loads(res.stdout) if r["name"] == "broken")
    assert rec["status"] == "failed" and "broken on purpose" in rec["error"]
    assert rec["distribution"] == "dockyard-feature-broken"
    table = subprocess.run([cli, "plugins", "list"], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "broken on purpose" in table
    d = dockyardd_factory("d", env={"PYTHONPATH": str(site)})
    warnings = api(d, "/info")["Warnings"] or []
    assert any("dockyard-feature-broken" in w and "broken on purpose" in w for w in warnings)
    shown = d.docker("info")
    assert "broken on purpose" in shown.stdout + shown.stderr
    assert d.stop() == 0


def test_no_api_front_means_no_daemon(tmp_path: Path):
    res = subprocess.run([sys.executable, "-m", "dockyard.daemon", "--data-root", str(tmp_path / "data"),
                          "--exec-root", str(tmp_path / "run"), "-H", f"unix://{tmp_path / 'd.sock'}"],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "DOCKYARD_DISABLE_PLUGINS": "api-docker"})
    assert res.returncode == 1
    assert "pip install dockyard-api-docker" in res.stderr


def test_without_overlay_an_unconfigured_daemon_uses_vfs(dockyardd_factory):
    d = dockyardd_factory("d", env={"DOCKYARD_DISABLE_PLUGINS": "storage:overlay"})
    assert api(d, "/info")["Driver"] == "vfs"
    assert "Storage Driver: vfs" in d.docker("info").stdout


PROVISION_DRIVER = """
from dockyard.specs import DriverInfo, Provisioner

class Toy(Provisioner):
    info = DriverInfo("toyhost", "provision")
    async def prepare(self, request): raise NotImplementedError
    async def create(self, host, tls, engine_flags): raise NotImplementedError
    async def start(self, host): pass
    async def stop(self, host): pass
    async def remove(self, host): pass
    async def state(self, host): return "none"
    async def engine_url(self, host): return ""
"""


def test_uninstalling_a_driver_removes_it_from_the_list_and_from_info(tmp_path: Path, dockyardd_factory):
    site = tmp_path / "site"
    info = site / "dockyard_provision_toyhost-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dockyard-provision-toyhost\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[dockyard.drivers.provision]\ntoyhost = dockyard_provision_toyhost:Toy\n")
    (site / "dockyard_provision_toyhost.py").write_text(PROVISION_DRIVER)
    env = {"PYTHONPATH": str(site)}
    cli = str(Path(sys.executable).parent / "dockyard")

    def listed() -> list[str]:
        out = subprocess.run([cli, "plugins", "list", "--format", "json", "--area", "provision"],
                             capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
        assert out.returncode == 0, out.stderr
        return [r["name"] for r in json.loads(out.stdout) if r["status"] == "loaded"]

    others = [n for n in listed() if n != "toyhost"]  # installed provision drivers (netns)
    d = dockyardd_factory("d", env=env)
    assert listed() == sorted([*others, "toyhost"])
    assert api(d, "/info")["DockyardAreas"]["provision"] == sorted([*others, "toyhost"])
    d.teardown()
    shutil.rmtree(info)  # what `pip uninstall` removes: the distribution's metadata (and code)
    (site / "dockyard_provision_toyhost.py").unlink()
    d = dockyardd_factory("d2", env=env)
    assert listed() == others
    assert api(d, "/info")["DockyardAreas"]["provision"] == others
