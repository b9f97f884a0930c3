"""Test plugins as separate processes (``tests/plugins/*.py``: stdlib only, written against the
protocol, never importing dockyard), each on its own unix socket; stopped and reaped at the end
of the test that started it (a plugin process left running fails the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.netns import run_in
from dockyard_plugin_sdk.testing import wait_for

PLUGINS = Path(__file__).parent / "plugins"


@dataclass
class PluginProcess:
    name: str
    socket: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class PluginFactory:
    root: Path
    started: list[PluginProcess] = field(default_factory=list)

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    def start(self, script: str, name: str, *args: str, env: dict[str, str] | None = None,
              socket: Path | str | None = None, ready: Path | None = None,
              netns: str = "") -> PluginProcess:
        """Run ``tests/plugins/SCRIPT.py SOCKET ARGS...`` (inside the named network namespace
        ``netns``: a netns host's own plugin); ``SOCKET`` defaults to ``sockets/NAME.sock``.
        Returns once the socket (or the ``ready`` file) exists."""
        sock = socket or self.sockets / f"{name}.sock"  # or "tcp://HOST:PORT" (then pass ready)
        log = self.root / f"{name}.out"
        with open(log, "ab") as out:
            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen([sys.executable, str(PLUGINS / f"{script}.py"), str(sock), *args],
                                        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

            # a child forked from a thread inside the namespace starts there (a per-thread attribute)
            proc = run_in(f"/run/netns/{netns}", spawn) if netns else spawn()
        p = PluginProcess(name, Path(sock), proc, log)
        self.started.append(p)
        marker = ready or Path(sock)
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=10, what=f"plugin {name}")
        assert proc.poll() is None, p.output()
        return p

    def config(self, **extra: object) -> dict[str, object]:
        """daemon.json keys pointing dockyardd at this factory's directories."""
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.specs.mkdir(parents=True, exist_ok=True)
        return {"docker-plugin-sockets": [str(self.sockets)], "docker-plugin-specs": [str(self.specs)], **extra}


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[PluginFactory]:
    factory = PluginFactory(tmp_path / "p")
    factory.sockets.mkdir(parents=True)
    factory.specs.mkdir(parents=True)
    yield factory
    for p in factory.started:
        p.stop()
    assert all(p.proc.poll() is not None for p in factory.started)


@pytest.fixture
def start_plugin(plugins: PluginFactory) -> Callable[..., PluginProcess]:
    return plugins.start
