"""A real ``dockyardd`` for tests: private roots, its own socket, clean-shutdown checks.

:func:`start_daemon` runs ``python -m dockyard.daemon`` with its data root, exec root and socket
under one directory (``root/data``, ``root/run``, ``root/run/dockyard.sock``), waits until it
answers ``/_ping`` and returns a :class:`Daemon`. The SDK's pytest plugin wraps it in fixtures
(``dockyardd``, ``dockyardd_factory``, ``start_dockyardd``) that record each daemon's owner
token for the leak checks; called directly, nothing is recorded unless ``owners`` is given.

Optional extras skip the calling test with the reason instead of failing: the docker CLI
(:meth:`Daemon.docker`), docker-py (:meth:`Daemon.docker_client`) and an API front (a daemon
without one serves nothing: ``pip install dockyard-api-docker``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .leaks import Owners, owner_of_data_root, purge_owned
from .waiting import WaitTimeout, wait_for

if TYPE_CHECKING:
    from dockyard.client import Client

__all__ = ["API_FRONT", "Daemon", "answers_ping", "engine_plugins_env", "owner_of", "start_daemon", "wait_for_socket"]

#: The module of the API front the daemon helpers drive (the Docker Engine API).
API_FRONT = "dockyard_api_docker"


@dataclass
class Daemon:
    """A running dockyardd started by a test; :meth:`stop` checks it shut down cleanly."""

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
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "run"

    @property
    def owner(self) -> str:
        """The owner token in the names of this daemon's kernel objects."""
        return owner_of(self.root)

    @property
    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0, *, after: int = 0) -> str:
        """Wait until the daemon's log holds ``text`` (past offset ``after``, a ``len(d.log)``
        taken before the action); fails naming the text and showing the log's tail."""
        try:
            wait_for(lambda: text in self.log[after:], timeout, f"{text!r} in the daemon log")
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\ndaemon log:\n{self.log[-3000:]}") from None
        return self.log

    def client(self, timeout: float | None = 60.0) -> Client:
        """Our own API client (``dockyard.client.Client``) on this daemon's socket."""
        from dockyard.client import Client

        return Client(self.host, timeout=timeout)

    def docker_client(self, **kwargs: Any) -> Any:
        """A docker-py ``DockerClient`` on this daemon (skips the test without docker-py);
        close it when done."""
        docker = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker)")
        return docker.DockerClient(base_url=self.host, **kwargs)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real docker CLI against this daemon (skips the test without one)."""
        cli = shutil.which("docker")
        if cli is None:
            pytest.skip("the docker CLI is not installed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.root / "docker-config")
        res = subprocess.run([cli, "-H", self.host, *args], input=input, capture_output=True,
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
        """Run our own CLI (the ``dockyard`` next to this interpreter) against this daemon."""
        res = subprocess.run([str(Path(sys.executable).parent / "dockyard"), "-H", self.host, *args],
                             capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} exited {res.returncode}:\n{res.stderr}")
        return res

    def remove_all_containers(self) -> None:
        """Force-remove every container (a stopped daemon would leave them running)."""
        client = self.client()
        for c in client.get("/containers/json", all=1) or []:
            client.delete(f"/containers/{c['Id']}", force=1, v=1)

    def teardown(self) -> None:
        """What a test leaves behind: no containers, no daemon, no kernel objects it owned."""
        if self.proc.poll() is None:
            try:
                self.remove_all_containers()
            except Exception:  # noqa: BLE001 - the daemon may be wedged; stopping still cleans
                pass
        self.stop()
        purge_owned(self.owner)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send ``sig`` and wait for the exit; a daemon still running after ``timeout`` is
        killed and the test fails with the log's tail. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"dockyardd did not stop within {timeout}s:\n{self.log[-3000:]}") from None
        return self.proc.returncode


def engine_plugins_env(*modules: str, path: Path | str | None = None,
                       environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that loads feature-plugin ``modules`` no distribution declares into an
    engine a test starts: ``DOCKYARD_PLUGINS`` naming them (after any already named in
    ``environ``, default ``os.environ``) and ``path`` first on ``PYTHONPATH``. Give it to
    :func:`start_daemon` (``env=``) or to a netns host's engine
    (``NetnsHosts.create(engine_env=...)``): a test-only plugin (faults to inject, calls to
    record) then runs in the engine without being installed. The engine records a module that
    does not import, as any plugin (``dockyard plugins list``, ``/info`` warnings)."""
    from dockyard.registry import PLUGINS_ENV

    env = os.environ if environ is None else environ
    named = [m for m in env.get(PLUGINS_ENV, "").split(",") if m.strip()] + list(modules)
    out = {PLUGINS_ENV: ",".join(dict.fromkeys(named))}
    if path is not None:
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(path), env.get("PYTHONPATH", "")) if p)
    return out


def owner_of(root: Path) -> str:
    """The owner token a daemon started on ``root`` (data root ``root/data``) puts in its
    kernel objects' names."""
    return owner_of_data_root(root / "data")


def answers_ping(path: Path) -> bool:
    """Whether a daemon answers ``GET /_ping`` with 200 on the unix socket ``path`` (2 s at most)."""
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(str(path))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        s.close()


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    """Wait until the daemon answers ``/_ping`` on ``path``; fail with its log if it exits or
    stays silent (then it is killed)."""
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"dockyardd exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        return answers_ping(path)

    try:
        wait_for(up, timeout, f"dockyardd to answer on {path}")
    except WaitTimeout as exc:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{exc}:\n{log.read_text(errors='replace')}") from None


def start_daemon(root: Path, *extra: str, config: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, owners: Owners | None = None) -> Daemon:
    """Start dockyardd on ``root`` (data ``root/data``, exec root and socket ``root/run``) with
    extra flags, an optional ``daemon.json`` and environment; return once it answers.

    ``owners`` records the daemon's owner token and roots for the leak checks (the fixtures
    pass the session's). Skips the calling test when no API front is installed.
    """
    if importlib.util.find_spec(API_FRONT) is None:
        pytest.skip("dockyardd serves nothing without an API front: pip install dockyard-api-docker")
    root.mkdir(parents=True, exist_ok=True)
    if owners is not None:
        owners.record_data_root(root / "data", root)
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
