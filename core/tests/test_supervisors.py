"""The supervisor area: backends collected by the kernel (conflicts, unknown names, detection
order, handed to drivers), and dockyard.sdnotify's two protocols over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard import sdnotify
from dockyard.errors import InvalidArgument, PluginConflictError, PluginError, Unavailable
from dockyard.kernel import Kernel
from dockyard.specs import DriverContext, hookimpl
from dockyard.specs.supervisor import (
    ContainerUnit,
    DaemonUnit,
    Supervisor,
    SupervisorBackend,
    Supervisors,
    UnitFile,
)


class Fake(Supervisor):
    name = "fake"
    directory = "/etc/fake"

    def __init__(self, running: bool = False) -> None:
        self.running = running

    def detect(self, root: Path = Path("/")) -> bool:
        return self.running or (root / "fake-running").exists()

    def daemon_files(self, unit: DaemonUnit) -> list[UnitFile]:
        return [UnitFile(unit.name, " ".join(unit.command()))]

    def container_files(self, unit: ContainerUnit) -> list[UnitFile]:
        return [UnitFile(unit.name, " ".join(unit.command))]


def plugin(*backends: SupervisorBackend):
    class P:
        @hookimpl
        def dockyard_supervisors(self, kernel):
            assert isinstance(kernel, Kernel)
            return list(backends)

    return P()


def kernel(*plugins) -> Kernel:
    return Kernel.build(autoload=False, plugins=plugins)


def test_backends_are_collected_once_sorted_and_handed_to_drivers(tmp_path: Path) -> None:
    k = kernel(plugin(SupervisorBackend("zz", Fake), SupervisorBackend("fake", Fake, capabilities=frozenset({"restart"}))))
    sups = k.supervisors()
    assert sups is k.supervisors() and sups.names() == ["fake", "zz"]
    assert isinstance(sups.get("fake"), Fake) and sups.backend("fake").distribution() == "dockyard-supervisor-fake"
    ctx = DriverContext(data_dir=tmp_path, run_dir=tmp_path, owner="dy000000", provided=k.provided())
    assert ctx.need(Supervisors) is sups


def test_two_plugins_giving_one_name_are_a_recorded_conflict() -> None:
    k = kernel(plugin(SupervisorBackend("fake", Fake)), plugin(SupervisorBackend("fake", Fake)))
    assert k.supervisors().names() == []
    assert any(isinstance(p, PluginConflictError) and p.name == "fake" for p in k.registry.problems)
    with pytest.raises(PluginConflictError, match="supervisor name 'fake'"):
        k.supervisors().get("fake")


def test_unknown_names_and_bad_descriptors() -> None:
    sups = kernel(plugin(SupervisorBackend("fake", Fake))).supervisors()
    with pytest.raises(InvalidArgument, match=r"unknown supervisor 's6' \(installed: fake\); a backend is a plugin: "
                                              "pip install dockyard-supervisor-s6"):
        sups.get("s6")
    with pytest.raises(InvalidArgument, match="unknown supervisor 'a/b'") as info:
        sups.get("a/b")
    assert "pip install" not in str(info.value)
    with pytest.raises(ValueError, match="must match"):
        SupervisorBackend("Bad Name", Fake)
    with pytest.raises(ValueError, match="unknown capabilities"):
        SupervisorBackend("x", Fake, capabilities=frozenset({"teleport"}))

    class Wrong:
        @hookimpl
        def dockyard_supervisors(self, kernel):
            return ["systemd"]

    with pytest.raises(PluginError, match="not a dockyard.specs.SupervisorBackend"):
        kernel(Wrong()).supervisors()


def test_detect_follows_the_declared_order(tmp_path: Path) -> None:
    k = kernel(plugin(SupervisorBackend("late", lambda: Fake(True), detect_order=90),
                      SupervisorBackend("early", Fake, detect_order=10)))
    assert k.supervisors().detect(tmp_path).name == "late"
    (tmp_path / "fake-running").touch()
    assert k.supervisors().detect(tmp_path).name == "early"
    with pytest.raises(Unavailable, match="none of the installed supervisor backends"):
        kernel(plugin(SupervisorBackend("x", Fake))).supervisors().detect(tmp_path / "nowhere")


def test_units_as_data() -> None:
    unit = DaemonUnit(hosts=("unix:///run/d.sock", "tcp://127.0.0.1:2375"))
    assert unit.command(activated=True)[-4:] == ["-H", "fd://", "--pidfile", "/run/dockyard/dockyardd.pid"]
    assert unit.command()[1:5] == ["-H", "unix:///run/d.sock", "-H", "tcp://127.0.0.1:2375"]
    assert unit.listen_streams() == ["/run/d.sock", "127.0.0.1:2375"]
    with pytest.raises(ValueError):
        DaemonUnit(hosts=("fd://",))
    with pytest.raises(ValueError, match="restart policy"):
        ContainerUnit("c", "c", ("x",), restart="sometimes")
    assert ContainerUnit("c", "c", ("x",), stop_timeout=5).kill_timeout == 20
    for bad in ("/etc/x", "../x", ""):
        with pytest.raises(ValueError):
            UnitFile(bad, "")
    with pytest.raises(InvalidArgument, match="cannot name a fake service"):
        Fake().check_name("a b")


# ------------------------------------------------------------------------------ sd_notify, activation
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_sends_one_datagram(tmp_path: Path, abstract: bool) -> None:
    name = f"\0dy-notify-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(name)
        env = {"NOTIFY_SOCKET": "@" + name[1:] if abstract else name}
        assert sdnotify.notify("READY=1\nSTATUS=x", env)
        assert srv.recv(100) == b"READY=1\nSTATUS=x"
    assert not sdnotify.notify("READY=1", {})
    with pytest.raises(OSError):
        sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "relative"})


def test_listen_fds_takes_the_passed_socket_in_the_right_process(tmp_path: Path) -> None:
    """A child gets a listening socket as fd 3 with LISTEN_PID=its pid (as systemd passes it),
    serves one connection through listen_fds(), and finds the variables gone."""
    path = tmp_path / "s"
    lst = socket.socket(socket.AF_UNIX)
    lst.bind(str(path))
    lst.listen()
    child = ("import os, sys\nfrom dockyard.sdnotify import listen_fds\n"
             "(name, s), = listen_fds()\n"
             "c, _ = s.accept(); c.sendall((name + ' ' + str('LISTEN_FDS' in os.environ)).encode()); c.close()\n")
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "api"}
    fd = lst.fileno()
    proc = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" -c "$1"', sys.executable, child], env=env,
                            preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(3,))
    lst.close()
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(30)
        c.connect(str(path))
        assert c.recv(100) == b"api False"
    assert proc.wait(30) == 0
    assert sdnotify.listen_fds({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) == []  # not ours


def test_fd_hosts_parse_and_need_passed_sockets() -> None:
    from dockyard.server import Listener, activated_sockets, parse_host

    assert parse_host("fd://") == Listener("fd", "") and parse_host("fd://api") == Listener("fd", "api")
    with pytest.raises(InvalidArgument, match="none were"):
        activated_sockets(Listener("fd", ""), [])
    a, b = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    try:
        assert activated_sockets(Listener("fd", "b"), [("a", a), ("b", b)]) == [b]
        with pytest.raises(InvalidArgument, match="no passed socket is named 'c'"):
            activated_sockets(Listener("fd", "c"), [("a", a)])
    finally:
        a.close()
        b.close()
