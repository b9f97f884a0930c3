"""Cross-package fixtures: a real ``dockyardd`` per test (own data root, exec root, socket)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import purge_owned  # noqa: F401 - re-exported for the test modules

DOCKER = shutil.which("docker")


@dataclass
class Daemon:
    """A running dockyardd started by a test; stop() checks it shut down cleanly."""

    root: Path
    proc: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.root / "run" / "dockyard.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "dockyardd.pid"

    @property
    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real docker CLI against this daemon."""
        if DOCKER is None:
            pytest.skip("the docker CLI is not installed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.root / "docker-config")
        res = subprocess.run([DOCKER, "-H", self.host, *args], input=input, capture_output=True,
                             env=env, timeout=timeout)
        out = subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {out.returncode}:\n{out.stderr}\n"
                                 f"daemon log:\n{self.log[-3000:]}")
        return out

    def past_events(self, since: str, *filters: str) -> str:
        """``docker events`` replayed from ``since`` up to the next whole second.

        The CLI sends ``--until`` in whole seconds, so ``--until 0s`` misses events of the
        current second (dockerd behaves the same); ending at the next second includes them.
        """
        until = str(int(time.time()) + 1)
        args = ["events", "--since", since, "--until", until]
        for f in filters:
            args += ["--filter", f]
        return self.docker(*args).stdout

    def dockyard(self, *args: str, check: bool = True, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """Run our own CLI against this daemon."""
        res = subprocess.run([str(Path(sys.executable).parent / "dockyard"), "-H", self.host, *args],
                             capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} exited {res.returncode}:\n{res.stderr}")
        return res

    def remove_all_containers(self) -> None:
        """Force-remove every container (a stopped daemon would leave them running)."""
        import docker

        client = docker.APIClient(base_url=self.host, timeout=60)
        try:
            for c in client.containers(all=True):
                client.remove_container(c["Id"], force=True, v=True)
        finally:
            client.close()

    def teardown(self) -> None:
        """What a test leaves behind: no containers, no daemon, no kernel objects it owned."""
        if self.proc.poll() is None:
            try:
                self.remove_all_containers()
            except Exception:  # noqa: BLE001 - the daemon may be wedged; stopping still cleans
                pass
        self.stop()
        purge_owned(owner_of(self.root))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"dockyardd did not stop within {timeout}s:\n{self.log[-3000:]}") from None
        return self.proc.returncode


def owner_of(root: Path) -> str:
    """The owner token a daemon with data root ``root/data`` puts in its kernel objects' names."""
    from dockyard.config import Config

    return Config(values={"data-root": str(root / "data")}).owner


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dockyardd exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        if path.exists():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(path))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                if s.recv(64).split(b" ")[1:2] == [b"200"]:
                    return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"dockyardd did not answer on {path}:\n{log.read_text(errors='replace')}")


def start_daemon(root: Path, *extra: str, config: dict | None = None,
                 env: dict[str, str] | None = None) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "dockyard.daemon",
            "--data-root", str(root / "data"), "--exec-root", str(root / "run"),
            "-H", f"unix://{root / 'run' / 'dockyard.sock'}"]
    if config is not None:
        (root / "daemon.json").write_text(json.dumps(config))
        args += ["--config-file", str(root / "daemon.json")]
    args += list(extra)
    log = root / "daemon.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    daemon = Daemon(root=root, proc=proc, args=args)
    wait_for_socket(daemon.socket, proc, log)
    return daemon


@pytest.fixture
def dockyardd_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons with ``factory(name, *flags, config=...)``; all are stopped at teardown."""
    started: list[Daemon] = []

    def factory(name: str = "d", *extra: str, config: dict | None = None,
                env: dict[str, str] | None = None) -> Daemon:
        d = start_daemon(tmp_path / name, *extra, config=config, env=env)
        started.append(d)
        return d

    yield factory
    for d in started:
        d.teardown()


@pytest.fixture
def dockyardd(dockyardd_factory: Callable[..., Daemon]) -> Daemon:
    """One real daemon with the default drivers, its own roots and socket."""
    return dockyardd_factory("d")
