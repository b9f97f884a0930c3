"""A real etcd for tests: one member or a cluster, on loopback ports, in a private directory.

:func:`start_etcd` starts Debian's ``etcd`` (package ``etcd-server``, 3.4) as ``members``
processes forming one cluster, each with its own data directory under ``root``, listening for
clients and peers on free ports of ``host`` (127.0.0.1 unless a test needs another address it
owns, such as a netns bridge's gateway). It returns when every member answers ``/health``.
:class:`EtcdCluster` stops, kills and restarts members (same data directory: the member
rejoins with its state) and :meth:`EtcdCluster.close` kills every process by its PID, waits
for it, and removes the directories. Every member's name and data directory carry a token
(``dyetcd`` + 6 hex digits, :attr:`EtcdCluster.token`): the pytest fixtures record it, so the
leak check names a member left running.

The pytest plugin wraps it: ``etcd`` (one member), ``etcd_cluster`` (three) and
``etcd_factory(members=1, host="127.0.0.1")``, each closed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .waiting import wait_for, wait_for_exit

__all__ = ["EtcdCluster", "EtcdMember", "etcd_unavailable", "start_etcd"]

ETCD = "etcd"


def etcd_unavailable() -> str:
    """Why no etcd can run here ("" when one can): the reason a test skips with."""
    if shutil.which(ETCD) is None:
        return "etcd is not installed (apt-get install etcd-server; `make install` does)"
    return ""


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class EtcdMember:
    """One etcd process: its name, ports, data directory, log file and (while running) PID."""

    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    tls_dir: Path | None = None  # ca.pem, cert.pem, key.pem of a client, when clients need TLS

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls_dir else "http"
        return f"{scheme}://{_hostport(self.host, self.client_port)}"

    @property
    def peer_url(self) -> str:
        return f"http://{_hostport(self.host, self.peer_port)}"

    @property
    def endpoint(self) -> str:
        """``HOST:PORT`` of its client listener, as a ``cluster-store`` URL names it."""
        return _hostport(self.host, self.client_port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def healthy(self) -> bool:
        context = None
        if self.tls_dir is not None:
            context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
            context.load_cert_chain(self.tls_dir / "cert.pem", self.tls_dir / "key.pem")
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1, context=context) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclass
class EtcdCluster:
    """The members of one etcd cluster started by :func:`start_etcd`."""

    root: Path
    token: str
    members: list[EtcdMember]
    host: str = "127.0.0.1"
    timeout: float = 20.0
    _initial: str = field(default="", repr=False)

    # ------------------------------------------------------------------ addressing
    @property
    def tls_dir(self) -> Path | None:
        """The client's ``ca.pem``, ``cert.pem``, ``key.pem`` when started with ``tls=True``."""
        return self.members[0].tls_dir if self.members else None

    @property
    def store_options(self) -> dict[str, str]:
        """The ``cluster-opts`` a store needs to reach this cluster (TLS files; else none)."""
        d = self.tls_dir
        if d is None:
            return {}
        return {"kv.cacertfile": str(d / "ca.pem"), "kv.certfile": str(d / "cert.pem"),
                "kv.keyfile": str(d / "key.pem")}

    @property
    def endpoints(self) -> list[str]:
        """``HOST:PORT`` of every member's client listener."""
        return [m.endpoint for m in self.members]

    def url(self, prefix: str = "", members: list[EtcdMember] | None = None) -> str:
        """A ``cluster-store`` URL naming every member (or ``members``): ``etcd://H:P,H:P/prefix``."""
        prefix = prefix or f"dytest/{uuid.uuid4().hex[:8]}"
        return f"etcd://{','.join(m.endpoint for m in (members or self.members))}/{prefix.strip('/')}"

    # ------------------------------------------------------------------ processes
    def _command(self, m: EtcdMember, state: str) -> list[str]:
        tls = [] if m.tls_dir is None else [
            "--cert-file", str(m.tls_dir / "server.pem"), "--key-file", str(m.tls_dir / "server-key.pem"),
            "--trusted-ca-file", str(m.tls_dir / "ca.pem"), "--client-cert-auth"]
        return [ETCD, "--name", m.name, "--data-dir", str(m.data_dir), *tls,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self._initial, "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                # Test timings: a lost leader is replaced in about a second.
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-outputs", str(m.log)]

    def start(self, member: EtcdMember, state: str = "existing") -> None:
        """Start (or restart, on its data directory) ``member``; does not wait for health."""
        if member.pid is not None:
            return
        member.data_dir.mkdir(parents=True, exist_ok=True)
        member.proc = subprocess.Popen(self._command(member, state), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)

    def wait_healthy(self, members: list[EtcdMember] | None = None) -> None:
        """Wait until every member (or those given) answers ``/health`` with ``true``."""
        for m in members or self.members:
            def ok(m: EtcdMember = m) -> bool:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited with {m.proc.returncode}: "
                                       f"{_tail(m.log)}")
                return m.healthy()
            wait_for(ok, self.timeout, f"etcd member {m.name} at {m.client_url} to be healthy")

    def stop(self, member: EtcdMember) -> None:
        """Stop ``member`` cleanly (SIGTERM, then SIGKILL after 10 s); its data stays."""
        self._signal(member, signal.SIGTERM, 10.0)

    def kill(self, member: EtcdMember) -> None:
        """Kill ``member`` (SIGKILL, by PID) and wait for it; its data stays."""
        self._signal(member, signal.SIGKILL, 10.0)

    def restart(self, member: EtcdMember) -> None:
        """Stop ``member`` and start it again on its data directory, waiting for health."""
        self.stop(member)
        self.start(member)
        self.wait_healthy([member])

    def _signal(self, member: EtcdMember, sig: signal.Signals, timeout: float) -> None:
        proc = member.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        wait_for_exit(proc.pid, timeout)
        member.proc = None

    def close(self) -> None:
        """Kill every member by PID, wait for each, and remove the cluster's directory."""
        for m in self.members:
            self.kill(m)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_tls(directory: Path, host: str) -> Path:
    """A CA, etcd's server certificate for ``host`` and a client certificate, in ``directory``."""
    from .tls import TestCA

    ca = TestCA("dockyard test etcd CA")
    ca.write_client(directory, "etcd-client")
    cert, key = ca.issue("etcd", server=True, addresses=[host])
    (directory / "server.pem").write_bytes(cert)
    fd = os.open(directory / "server-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return directory


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_etcd(root: Path, members: int = 1, host: str = "127.0.0.1", timeout: float = 20.0,
               tls: bool = False) -> EtcdCluster:
    """Start an etcd cluster of ``members`` under ``root`` (a fresh directory is made inside it)
    on free ports of ``host`` and wait until every member is healthy. Close it when done
    (``with start_etcd(...) as cluster:`` or ``cluster.close()``).

    ``tls``: clients must speak TLS with a certificate of a throwaway CA
    (:class:`~dockyard_plugin_sdk.testing.TestCA`); ``cluster.store_options`` are the
    ``cluster-opts`` naming the client's files (``kv.cacertfile``, ``kv.certfile``,
    ``kv.keyfile``). Members talk to each other in plain HTTP on ``host``."""
    reason = etcd_unavailable()
    if reason:
        raise RuntimeError(reason)
    token = f"dyetcd{uuid.uuid4().hex[:6]}"
    base = Path(root) / token
    base.mkdir(parents=True)
    tls_dir = _make_tls(base / "tls", host) if tls else None
    last: Exception | None = None
    for _attempt in range(3):  # a free port may be taken between the probe and etcd's bind
        ms = [EtcdMember(f"{token}-{i}", host, _free_port(host), _free_port(host),
                         base / f"m{i}", base / f"m{i}.log", tls_dir=tls_dir) for i in range(members)]
        cluster = EtcdCluster(base, token, ms, host, timeout)
        cluster._initial = ",".join(f"{m.name}={m.peer_url}" for m in ms)
        try:
            for m in ms:
                cluster.start(m, "new")
            cluster.wait_healthy()
            return cluster
        except (RuntimeError, AssertionError) as exc:
            last = exc
            for m in ms:
                cluster.kill(m)
                shutil.rmtree(m.data_dir, ignore_errors=True)
            time.sleep(0.1)
    shutil.rmtree(base, ignore_errors=True)
    raise RuntimeError(f"etcd did not start: {last}")
