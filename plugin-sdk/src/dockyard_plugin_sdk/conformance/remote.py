"""Run a kit against a Docker plugin (plugin API v1) process, through the kernel's driver source.

Put :class:`DockerPluginContract` before a kit and name the plugin's command; the ``driver``
fixture starts that process for each case (its socket in a fresh directory), builds a kernel
with the installed feature plugins (the driver source is ``dockyard-docker-plugins``, found by
entry point, never imported), asks it for the driver of the plugin's name, and stops the process
after the case (a plugin that does not exit on SIGTERM fails it)::

    class TestMyVolumePlugin(DockerPluginContract, VolumeContract):
        plugin_command = ["my-volume-plugin", "--socket", "{socket}", "--root", "{root}"]

    class TestMyNetworkPlugin(DockerPluginContract, NetworkContract):
        plugin_command = [sys.executable, "netplugin.py", "{socket}", "{owner}"]
        plugin_capabilities = frozenset({"connectivity", "internal"})

Placeholders in ``plugin_command``: ``{socket}`` (the unix socket to serve), ``{root}`` (a
directory of its own), ``{owner}`` (the driver context's owner token: name host objects with it
and the network kit's leak checks find them). The protocol has no capability list, so
``plugin_capabilities`` declares what the plugin does, as a native driver's ``DriverInfo`` would.
The case is skipped when no installed plugin offers a driver source serving the kind.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled
from dockyard.kernel import Kernel
from dockyard_plugin_sdk.testing import wait_for

__all__ = ["DockerPluginContract"]


class DockerPluginContract:
    """Mixin: the kit's ``driver`` is the kernel's adapter for a plugin process it starts."""

    plugin_command: ClassVar[list[str]] = []
    plugin_name: ClassVar[str] = "kitplugin"
    plugin_capabilities: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[str]

    @pytest_asyncio.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[Any]:
        if not self.plugin_command:
            raise NotImplementedError("a DockerPluginContract subclass must set `plugin_command`")
        sockets, root = tmp_path / "plugins", tmp_path / "plugin-root"
        sockets.mkdir()
        root.mkdir()
        config = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                                "docker-plugin-sockets": [str(sockets)], "docker-plugin-specs": []})
        kernel = Kernel.build(config, environ={})
        sock = sockets / f"{self.plugin_name}.sock"
        args = [a.format(socket=sock, root=root, owner=config.owner) for a in self.plugin_command]
        with open(tmp_path / "plugin.log", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        drivers = []
        try:
            wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=10, what="the plugin's socket")
            assert proc.poll() is None, (tmp_path / "plugin.log").read_text(errors="replace")
            try:
                drv = await kernel.driver_ready(self.kind, self.plugin_name)
            except DriverNotInstalled as exc:
                pytest.skip(f"no installed driver source serves Docker plugins: {exc}")
            if self.plugin_capabilities:  # what the plugin declares, as a DriverInfo would
                info = dataclasses.replace(drv.info, capabilities=frozenset(self.plugin_capabilities))
                drv = type(type(drv).__name__, (type(drv),), {"info": info})(drv.context)
                await drv.setup()
                drivers.append(drv)
            yield drv
        finally:
            for d in drivers:
                await d.close()
            await kernel.stop()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    pytest.fail(f"plugin {self.plugin_command[0]} did not exit on SIGTERM")
