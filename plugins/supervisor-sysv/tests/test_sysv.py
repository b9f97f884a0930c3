"""sysV scripts: ``sh -n``, a valid LSB header, and start/stop/status/restart for real against a
dockyardd (the script run directly as root, as init would)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.specs.supervisor import ContainerUnit, DaemonUnit
from dockyard_supervisor_sysv.backend import SysV

BIN = Path(sys.executable).parent
LSB_KEYS = {"Provides", "Required-Start", "Required-Stop", "Default-Start", "Default-Stop", "Short-Description"}


def lsb_header(text: str) -> dict[str, str]:
    """The LSB comment block (LSB 3.1 core, "Comment Conventions for Init Scripts"), checked."""
    m = re.search(r"^### BEGIN INIT INFO\n(.*?)^### END INIT INFO\n", text, re.M | re.S)
    assert m, "no LSB block"
    fields: dict[str, str] = {}
    for line in m.group(1).splitlines():
        km = re.fullmatch(r"# ([A-Z][A-Za-z-]+):\s+(.*)", line)
        assert km, f"not an LSB field line: {line!r}"
        assert km.group(1) not in fields, f"{km.group(1)} twice"
        fields[km.group(1)] = km.group(2)
    assert LSB_KEYS <= set(fields), f"missing {LSB_KEYS - set(fields)}"
    assert set(fields["Default-Start"].split()) <= set("0123456S") and set(fields["Default-Stop"].split()) <= set("0123456S")
    assert not set(fields["Default-Start"].split()) & set(fields["Default-Stop"].split())
    return fields


def scripts() -> list[str]:
    sup = SysV()
    return [f.text for f in sup.daemon_files(DaemonUnit(environment=(("A", "b c"),)))] + \
        [f.text for f in sup.container_files(ContainerUnit("container-web", "web", ("/usr/bin/dockyard", "supervise", "web"),
                                                           restart="no"))]


@pytest.mark.parametrize("text", scripts(), ids=["daemon", "container"])
def test_sh_n_and_lsb_header(text: str) -> None:
    assert text.startswith("#!/bin/sh\n")
    res = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
    assert res.returncode == 0, res.stderr
    fields = lsb_header(text)
    assert fields["Provides"] in ("dockyard", "container-web")


def test_names_a_dot_would_hide_from_run_parts_are_refused() -> None:
    from dockyard.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="cannot name a sysv service"):
        SysV().check_name("dockyard.old")


@pytest.mark.timeout(120)
def test_start_stop_status_restart_against_dockyardd(tmp_path: Path, dockyard_owners) -> None:
    if os.geteuid() != 0:
        pytest.skip("dockyardd needs root")
    root = tmp_path / "dy"
    owner = dockyard_owners.record_data_root(root / "data", root)
    unit = DaemonUnit(dockyardd=(str(BIN / "dockyardd"), "--data-root", str(root / "data"), "--exec-root",
                                 str(root / "run")), hosts=(f"unix://{root}/run/dockyard.sock",),
                      pidfile=str(root / "run" / "dockyardd.pid"), log_file=str(tmp_path / "dockyardd.log"),
                      stop_timeout=10)
    (f,) = SysV().daemon_files(unit)
    script = tmp_path / f.path
    script.write_text(f.text)
    script.chmod(f.mode)

    def run(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), action], capture_output=True, text=True, timeout=150)

    try:
        assert run("status").returncode == 3
        res = run("start")
        assert res.returncode == 0 and "started" in res.stdout, res.stdout + res.stderr
        assert (root / "run" / "dockyard.sock").exists()
        pid = int((root / "run" / "dockyardd.pid").read_text())
        assert run("status").returncode == 0
        assert run("start").stdout.startswith("dockyard is running")  # idempotent
        res = run("restart")
        assert res.returncode == 0, res.stdout + res.stderr
        new = int((root / "run" / "dockyardd.pid").read_text())
        assert new != pid and not Path(f"/proc/{pid}").exists()
        os.kill(new, signal.SIGKILL)  # a PID file nobody holds: "dead but pidfile exists"
        for _ in range(50):
            if not Path(f"/proc/{new}").exists():
                break
            subprocess.run(["sleep", "0.1"])
        assert run("status").returncode == 1
        assert run("start").returncode == 0
        res = run("stop")
        assert res.returncode == 0 and "stopped" in res.stdout
        assert run("status").returncode == 3
        assert not (root / "run" / "dockyard.sock").exists()
    finally:
        run("stop")
        from dockyard_plugin_sdk.testing.leaks import purge_owned

        purge_owned(owner)
