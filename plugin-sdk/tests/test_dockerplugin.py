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
