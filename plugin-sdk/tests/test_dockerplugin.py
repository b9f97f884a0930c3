"""The SDK's helper for writing Docker plugins answers the protocol's wire rules."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from dockyard_plugin_sdk.dockerplugin import DockerPluginServer, PluginError, socket_path


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("plugin")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def post(path: str, method: str, body: bytes = b"") -> tuple[int, str, Any]:
    conn = UnixConnection(path)
    conn.request("POST", f"/{method}", body=body,
                 headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
    resp = conn.getresponse()
    out = resp.status, resp.getheader("Content-Type") or "", json.loads(resp.read() or b"{}")
    conn.close()
    return out


def test_the_server_speaks_the_protocol(tmp_path: Path) -> None:
    server = DockerPluginServer(socket_path("vol", str(tmp_path)))
    created: list[str] = []

    @server.handler("VolumeDriver.Create")
    def create(body: dict[str, Any]) -> dict[str, Any]:
        if body["Name"] == "bad":
            raise PluginError("no such pool")
        created.append(body["Name"])
        return {"Err": ""}

    @server.handler("AuthZPlugin.AuthZReq")
    def authz(body: dict[str, Any]) -> dict[str, Any]:
        return {"Allow": True}

    with server.running():
        sock = str(tmp_path / "vol.sock")
        status, ctype, reply = post(sock, "Plugin.Activate")
        assert (status, reply) == (200, {"Implements": ["VolumeDriver", "authz"]})
        assert ctype == "application/vnd.docker.plugins.v1.1+json"
        assert post(sock, "VolumeDriver.Create", b'{"Name": "v1"}')[2] == {"Err": ""}
        assert post(sock, "VolumeDriver.Create", b'{"Name": "bad"}')[2] == {"Err": "no such pool"}
        assert post(sock, "VolumeDriver.Mount", b"{}")[0] == 404
        assert post(sock, "VolumeDriver.Create", b"{nope")[0] == 400
        assert created == ["v1"]
    assert not (tmp_path / "vol.sock").exists()


def test_a_socket_address_is_a_path_or_unix_url_never_another_scheme(tmp_path: Path, monkeypatch: Any) -> None:
    """``Path("tcp://1.2.3.4:5").parent`` is ``tcp:``: taking a TCP address for a socket path
    made a directory of that name where the plugin ran (found at the repository's root)."""
    import pytest

    monkeypatch.chdir(tmp_path)
    for address in ("tcp://127.0.0.1:2376", "http://127.0.0.1:80", "npipe:////./pipe/x"):
        with pytest.raises(ValueError, match="serves a unix socket"):
            DockerPluginServer(address)
    assert list(tmp_path.iterdir()) == []
    server = DockerPluginServer(f"unix://{tmp_path}/run/p.sock")
    assert server.path == f"{tmp_path}/run/p.sock"
    with server.running():
        assert post(server.path, "Plugin.Activate")[2] == {"Implements": []}
    (tmp_path / "run" / "p.sock").write_text("not a socket")  # another file there is never replaced
    with pytest.raises(FileExistsError, match="not a socket"):
        DockerPluginServer(str(tmp_path / "run" / "p.sock")).bind()
    assert (tmp_path / "run" / "p.sock").read_text() == "not a socket"
