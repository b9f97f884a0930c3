"""Generated units pass ``systemd-analyze verify`` (a broken one does not: the check checks) and
carry what the daemon needs: socket activation, Type=notify, KillMode=process, no Requires= on
the daemon from a container's unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.specs.supervisor import ContainerUnit, DaemonUnit
from dockyard_supervisor_systemd.backend import Systemd, quote

BIN = Path(sys.executable).parent  # an executable that exists: verify checks ExecStart's binary


def verify(directory: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(["systemd-analyze", "verify", *(str(directory / n) for n in names)], capture_output=True,
                          text=True, timeout=60)


def write(directory: Path, files) -> list[str]:
    for f in files:
        (directory / f.path).write_text(f.text)
    return [f.path for f in files]


def units() -> tuple[DaemonUnit, ContainerUnit]:
    daemon = DaemonUnit(dockyardd=(str(BIN / "dockyardd"), "--data-root", "/var/lib/dock yard"),
                        hosts=("unix:///run/dockyard/dockyard.sock", "tcp://127.0.0.1:2375"),
                        environment=(("HTTP_PROXY", "http://p:3128"), ("X", "100% $HOME")))
    container = ContainerUnit("container-web", "web", (str(BIN / "dockyard"), "supervise", "--time", "3", "web"),
                              restart="on-failure", stop_timeout=3)
    return daemon, container


def test_daemon_units_verify(tmp_path: Path) -> None:
    daemon, _c = units()
    names = write(tmp_path, Systemd().daemon_files(daemon))
    assert names == ["dockyard.service", "dockyard.socket"]
    res = verify(tmp_path, names)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    service = (tmp_path / "dockyard.service").read_text()
    for line in ("Type=notify", "KillMode=process", "TimeoutStopSec=20", "Restart=always", "Requires=dockyard.socket",
                 f"ExecStart={BIN}/dockyardd --data-root \"/var/lib/dock yard\" -H fd:// --pidfile "
                 "/run/dockyard/dockyardd.pid", 'Environment="X=100%% $$HOME"'):
        assert line + "\n" in service, line
    socket = (tmp_path / "dockyard.socket").read_text()
    assert "ListenStream=/run/dockyard/dockyard.sock\nListenStream=127.0.0.1:2375\n" in socket
    assert "PartOf=" not in socket  # a stop of the service leaves the socket: the next client restarts it


def test_without_socket_activation(tmp_path: Path) -> None:
    daemon, _c = units()
    files = Systemd().daemon_files(DaemonUnit(dockyardd=daemon.dockyardd, socket_activation=False))
    assert [f.path for f in files] == ["dockyard.service"]
    assert "-H unix:///run/dockyard/dockyard.sock --pidfile" in files[0].text and "Requires=" not in files[0].text
    assert verify(tmp_path, write(tmp_path, files)).returncode == 0


def test_container_unit_verifies(tmp_path: Path) -> None:
    _d, container = units()
    names = write(tmp_path, Systemd().container_files(container))
    res = verify(tmp_path, names)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    text = (tmp_path / "container-web.service").read_text()
    assert "Restart=on-failure\n" in text and "TimeoutStopSec=18\n" in text and "Type=notify\n" in text
    assert "Requires=" not in text and "BindsTo=" not in text  # the daemon's restart leaves it running


def test_a_broken_unit_fails_verify(tmp_path: Path) -> None:
    (tmp_path / "x.service").write_text("[Service]\nType=notifyy\nExecStart=relative/path\n")
    res = verify(tmp_path, ["x.service"])
    assert res.returncode != 0 or "notifyy" in res.stderr


def test_quoting_and_names() -> None:
    assert quote("a b") == '"a b"' and quote("%n") == "%%n" and quote("$X") == "$$X" and quote("plain") == "plain"
    from dockyard.errors import InvalidArgument

    for bad in ("a/b", "a b", "x@y", ""):
        with pytest.raises(InvalidArgument):
            Systemd().check_name(bad)
    Systemd().check_name("container-web_1.2")


def test_detect(tmp_path: Path) -> None:
    assert not Systemd().detect(tmp_path)
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert Systemd().detect(tmp_path)


def test_activate_enables_the_socket_first() -> None:
    daemon, _c = units()
    sup = Systemd()
    assert sup.activate("dockyard", sup.daemon_files(daemon))[-1] == ["systemctl", "enable", "--now", "dockyard.socket"]
