"""Discovery as dockerd's and the client's wire rules, without a daemon: spec files, TLS to a
TCP plugin from a .json spec, the socket in a directory of its own, broken specs."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Config
from dockyard.errors import NotFound, Unavailable
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.source import DockerPlugins
from dockyard_plugin_sdk.testing import TestCA


def source(plugins: Any) -> DockerPlugins:
    return DockerPlugins(Config(values=plugins.config(**{"docker-plugin-retry": 1.0})))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_tls_to_a_tcp_plugin_from_a_json_spec(plugins: Any, tmp_path: Path) -> None:
    ca = TestCA()
    cert, key = ca.issue("plugin", server=True, addresses=["127.0.0.1"])
    for name, data in (("ca.pem", ca.ca_pem), ("server.pem", cert), ("server-key.pem", key)):
        (tmp_path / name).write_bytes(data)
    client_dir = ca.write_client(tmp_path / "client")
    port, ready = free_port(), tmp_path / "ready"
    plugins.start("volplugin", "tlsvol", str(tmp_path / "root"), socket=f"tcp://127.0.0.1:{port}",
                  env={"PLUGIN_TLS_CERT": str(tmp_path / "server.pem"), "PLUGIN_TLS_KEY": str(tmp_path / "server-key.pem"),
                       "PLUGIN_TLS_CA": str(tmp_path / "ca.pem"), "PLUGIN_READY_FILE": str(ready)},
                  ready=ready)
    tls = {"CAFile": str(client_dir / "ca.pem"), "CertFile": str(client_dir / "cert.pem"),
           "KeyFile": str(client_dir / "key.pem")}
    (plugins.specs / "tlsvol.json").write_text(json.dumps({"Name": "tlsvol", "Addr": f"https://127.0.0.1:{port}",
                                                           "TLSConfig": tls}))
    client = source(plugins).client("tlsvol")
    assert await client.activate() == ("VolumeDriver",)
    assert await client.call("VolumeDriver.List", {}) == {"Volumes": [], "Err": ""}
    # without a client certificate the plugin refuses the handshake: an error naming it
    (plugins.specs / "tlsvol.json").write_text(json.dumps({"Addr": f"https://127.0.0.1:{port}",
                                                           "TLSConfig": {"CAFile": tls["CAFile"]}}))
    with pytest.raises(PluginFailed, match="plugin tlsvol"):
        await source(plugins).client("tlsvol").activate()


async def test_spec_files_and_socket_directories(plugins: Any, tmp_path: Path) -> None:
    sub = plugins.sockets / "nested" / "nested.sock"
    plugins.start("volplugin", "nested", str(tmp_path / "r1"), socket=sub)
    elsewhere = tmp_path / "elsewhere" / "x.sock"
    plugins.start("volplugin", "viaspec", str(tmp_path / "r2"), socket=elsewhere)
    (plugins.specs / "viaspec.spec").write_text(f"unix://{elsewhere}\n")
    (plugins.specs / "relative.spec").write_text("unix://relative/x.sock")
    (plugins.specs / "broken.json").write_text("{nope")
    src = source(plugins)
    assert await src.client("nested").activate() == ("VolumeDriver",)
    assert await src.client("viaspec").activate() == ("VolumeDriver",)
    with pytest.raises(Unavailable, match="relative.spec.*must be absolute"):
        src.client("relative")
    with pytest.raises(Unavailable, match="broken.json is not a plugin spec"):
        src.client("broken")
    with pytest.raises(NotFound, match='plugin "ghost" not found'):
        src.client("ghost")
    assert src.driver_class("volume", "ghost") is None
    assert src.driver_class("volume", "nested").info.name == "nested"
    assert src.driver_class("storage", "nested") is None  # layer drivers are not a plugin kind
    assert {"nested", "viaspec"} <= {p.name for p in src.plugins()}
    assert src.names("volume") == ["nested", "viaspec"]  # activated, implementing VolumeDriver
    assert src.names("network") == []


async def test_a_plugin_that_implements_something_else_is_refused(plugins: Any, tmp_path: Path) -> None:
    plugins.start("volplugin", "onlyvol", str(tmp_path / "r"))
    src = source(plugins)
    cls = src.driver_class("network", "onlyvol")
    from dockyard_plugin_sdk.conformance._common import make_context

    with pytest.raises(Exception, match="plugin onlyvol does not implement NetworkDriver .it implements: VolumeDriver"):
        await cls(make_context(tmp_path / "ctx")).setup()
