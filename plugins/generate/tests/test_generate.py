"""``dockyard generate`` and ``dockyard daemon install``: bad input writes nothing; the restart
matrix (docs/supervisors.md) row by row -- the rows on units as data here, and for real under a
supervisord started by the test: a container with a restart policy is restarted by dockyardd and
not by its unit; a ``--new`` unit owns its container (no restart policy; a kill gives a new one).
The daemon's row (the unit restarts dockyardd, containers keep running) runs for real in
dockyard-supervisor-supervisord's and -runit's tests and in the qemu VM (systemd)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.cli.root import cli
from dockyard_generate.units import ContainerRequest, container_unit, create_spec, decode_spec
from dockyard_plugin_sdk.testing import wait_for
from dockyard_plugin_sdk.testing.supervised import start_supervisord, supervisorctl

BIN = Path(sys.executable).parent


def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)
    finally:
        os.chdir(old)
    return res.exit_code, res.output


def inspect_doc(policy: str = "no") -> dict:
    return {"Id": "0123456789ab" + "c" * 52, "Name": "/web",
            "Config": {"Hostname": "0123456789ab", "Image": "busybox", "Cmd": ["sleep", "9"], "Env": None},
            "HostConfig": {"RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}, "AutoRemove": False,
                           "NetworkMode": "default"}}


# ------------------------------------------------------------------------------ the matrix, as data
def test_row_a_container_with_a_restart_policy_is_restarted_by_dockyardd_only() -> None:
    unit = container_unit(inspect_doc("always"), ContainerRequest())
    assert unit.restart == "no" and not unit.new
    assert unit.name == "container-0123456789ab" + "c" * 52
    from dockyard.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="dockyardd restarts it"):
        container_unit(inspect_doc("always"), ContainerRequest(restart="always"))
    assert container_unit(inspect_doc("no"), ContainerRequest()).restart == "on-failure"


def test_row_a_new_unit_owns_the_container_which_gets_no_restart_policy() -> None:
    unit = container_unit(inspect_doc("unless-stopped"), ContainerRequest(new=True, restart="always"))
    assert unit.new and unit.restart == "always" and unit.name == "container-web"
    spec = decode_spec(unit.command[unit.command.index("--spec") + 1])
    assert spec == create_spec(inspect_doc("unless-stopped"))
    assert spec["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert "Hostname" not in spec and spec["Cmd"] == ["sleep", "9"] and "Env" not in spec


# ------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def daemon(start_dockyardd, tmp_path_factory):
    """One dockyardd for this module's tests (each start costs about a second), with busybox and
    a container ``web`` (the matrix test, last, replaces it through a --new unit)."""
    d = start_dockyardd(tmp_path_factory.mktemp("gen") / "d")
    try:
        d.client().post("/dockyard/images/bootstrap", name="busybox")
        d.client().post("/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="web")
        yield d
    finally:
        d.teardown()


def test_bad_input_writes_nothing(daemon, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        (("generate", "s6", "--files", "web"), "unknown supervisor 's6' (installed: runit, supervisord, systemd, sysv, "
                                               "upstart); a backend is a plugin: pip install dockyard-supervisor-s6"),
        (("generate", "systemd", "--files", "nosuch"), "nosuch"),
        (("generate", "systemd", "--files", "--container-prefix", "my units", "web"), "cannot name a systemd service"),
        (("generate", "sysv", "--files", "--name", "--separator", ".", "web"), "cannot name a sysv service"),
        (("generate", "supervisord", "--files", "--restart-policy", "on-success", "web"),
         "supervisord cannot restart a service 'on-success'"),
        (("generate", "systemd", "--files", "--daemon-unit", "a/b", "daemon"), "cannot name a systemd service"),
        (("daemon", "install", "--supervisor", "s6", "--root", str(out)), "unknown supervisor 's6'"),
        (("daemon", "install", "--supervisor", "runit", "--service", "bad name", "--root", str(out)),
         "cannot name a runit service"),
        (("daemon", "install", "--root", str(out)), "finds its supervisor running on this host"),
    ]
    for args, message in cases:
        code, text = invoke("-H", daemon.host, *args, cwd=out)
        assert code != 0, (args, text)
        assert message in text, (args, text)
        assert "nothing written" in text or args[1] == "s6", (args, text)
        assert not any(out.rglob("*")), f"{args} wrote {list(out.rglob('*'))}"


def test_generate_prints_or_writes(daemon, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    code, text = invoke("-H", daemon.host, "generate", "systemd", "--name", "web", cwd=tmp_path)
    assert code == 0 and "[Service]" in text and "supervise --unit container-web --time 10 web" in text
    assert not any(tmp_path.iterdir())
    code, text = invoke("-H", daemon.host, "generate", "systemd", "--new", "--files", "web", cwd=tmp_path)
    assert code == 0 and text.split() == [str(tmp_path / "container-web.service")]
    # an address from the environment is written into the unit, which will not see that environment
    code, text = invoke("generate", "runit", "--name", "web", cwd=tmp_path, env={"DOCKYARD_HOST": daemon.host})
    assert code == 0 and f"dockyard -H {daemon.host} supervise" in text, text


def test_daemon_install_below_a_root(tmp_path: Path) -> None:
    code, text = invoke("daemon", "install", "--supervisor", "systemd", "--root", str(tmp_path), cwd=tmp_path)
    assert code == 0, text
    unit_dir = tmp_path / "etc/systemd/system"
    assert sorted(p.name for p in unit_dir.iterdir()) == ["dockyard.service", "dockyard.socket"]
    assert "to start it: systemctl enable --now dockyard.socket" in text
    (tmp_path / "run/systemd/system").mkdir(parents=True)  # auto finds systemd on that root
    code, text = invoke("daemon", "install", "--root", str(tmp_path), "--no-socket-activation", cwd=tmp_path)
    assert code == 0 and "-H unix:///run/dockyard/dockyard.sock" in (unit_dir / "dockyard.service").read_text()


# ------------------------------------------------------------------------------ the matrix, for real
@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Path]:
    """A supervisord of this test (config in ``d/conf.d``); ``d`` is yielded."""
    if shutil.which("supervisord") is None:
        pytest.skip("supervisord is not installed (apt-get install supervisor; make install does)")
    d = tmp_path / "sd"
    proc = start_supervisord(d)
    try:
        wait_for(lambda: (d / "supervisor.sock").exists(), 30, "supervisord")
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def ctl(d: Path, *args: str) -> str:
    return supervisorctl(d, *args)


def state(daemon, name: str) -> dict:
    return daemon.client().get(f"/containers/{name}/json")


@pytest.mark.timeout(120)
def test_matrix_rows_for_real_under_supervisord(daemon, supervisord: Path) -> None:
    client = daemon.client()
    client.post("/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"],
                                       "HostConfig": {"RestartPolicy": {"Name": "always"}}}, name="pol")
    for args in (("--name", "pol"), ("--new", "--restart-policy", "always", "web")):
        code, text = invoke("-H", daemon.host, "generate", "supervisord", "--time", "1", "--files", *args,
                            cwd=supervisord / "conf.d")
        assert code == 0, text
    assert "autorestart=false" in (supervisord / "conf.d/container-pol.conf").read_text()
    ctl(supervisord, "update")

    from dockyard.errors import NotFound

    def pid(name: str) -> int:
        try:
            st = state(daemon, name)["State"]
        except NotFound:  # between the --new unit's remove and its next create
            return 0
        return st["Pid"] if st["Running"] else 0

    wait_for(lambda: pid("pol") and pid("web"), 60, "both units to start their containers")
    web = state(daemon, "web")
    assert web["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert web["Config"]["Labels"]["dockyard.unit"] == "container-web"
    shims = {n: int(ctl(supervisord, "pid", f"container-{n}").strip()) for n in ("pol", "web")}
    old = {n: pid(n) for n in ("pol", "web")}
    for n in ("pol", "web"):
        os.kill(old[n], signal.SIGKILL)
    # row 1: dockyardd restarts "pol" (its policy); the unit's command followed it and was not restarted
    wait_for(lambda: pid("pol") not in (0, old["pol"]), 60, "dockyardd to restart pol")
    assert state(daemon, "pol")["RestartCount"] >= 1
    # row 2: the --new unit's command ended with the container; supervisord made a new one
    wait_for(lambda: pid("web") not in (0, old["web"]) and state(daemon, "web")["Id"] != web["Id"], 60,
             "the --new unit to make web again")
    time.sleep(0.3)  # a restart of the unit would show by now (RestartSec-like 1 s start delay)
    assert int(ctl(supervisord, "pid", "container-pol").strip()) == shims["pol"]
    assert int(ctl(supervisord, "pid", "container-web").strip()) != shims["web"]
    # stopping the units: pol stopped (dockyardd does not restart a stopped container), web removed
    ctl(supervisord, "stop", "container-pol", "container-web")
    assert not state(daemon, "pol")["State"]["Running"] and not state(daemon, "pol")["State"]["Restarting"]
    assert [c["Names"] for c in client.get("/containers/json", all=1)] == [["/pol"]] or \
        sorted(n for c in client.get("/containers/json", all=1) for n in c["Names"]) == ["/pol"]
