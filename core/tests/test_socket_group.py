"""dockyardd's ``-G``: the unix sockets' group, ``docker`` by default when that group exists
(dockerd's rule); a configured group that does not exist refuses the start."""

from __future__ import annotations

import grp
import os
import socket
import stat
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.server import bind_unix, socket_gid


def fake_groups(monkeypatch: pytest.MonkeyPatch, groups: dict[str, int]) -> None:
    def getgrnam(name: str) -> grp.struct_group:
        if name not in groups:
            raise KeyError(name)
        return grp.struct_group((name, "x", groups[name], []))
    monkeypatch.setattr(grp, "getgrnam", getgrnam)


def test_default_is_docker_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_groups(monkeypatch, {"docker": 998})
    assert socket_gid(None) == 998
    fake_groups(monkeypatch, {})
    assert socket_gid(None) is None  # the daemon's own group, no error


def test_configured_group(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_groups(monkeypatch, {"ops": 1234})
    assert socket_gid("ops") == 1234
    assert socket_gid("4321") == 4321
    assert socket_gid("") is None
    with pytest.raises(InvalidArgument, match="group nope not found"):
        socket_gid("nope")


def test_bound_socket_has_the_group_and_0660(tmp_path: Path) -> None:
    gid = os.getgid()
    sock = bind_unix(str(tmp_path / "d.sock"), gid)
    try:
        st = os.stat(tmp_path / "d.sock")
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660
        assert isinstance(sock, socket.socket)
    finally:
        sock.close()
