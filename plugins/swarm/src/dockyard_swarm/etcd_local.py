"""A one-member etcd (Debian's ``etcd-server``) in the background: ``dockyard swarm etcd``.

For demos and trials on one machine; a production cluster runs its own etcd members. Everything
it makes lives in ``DATA_DIR``: ``data/`` (etcd's), ``etcd.pid`` and ``etcd.log``. Stop checks
that the recorded PID is still that etcd (its command line names the data directory) before
signalling it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

START_TIMEOUT = 15.0


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"--listen {listen!r}: expected ADDR:PORT")
    return host.strip("[]"), int(port)


def start(data_dir: Path, listen: str = "127.0.0.1:2379", peer_port: int | None = None,
          tls: tuple[str, str, str] | None = None) -> str:
    """Start etcd on ``listen`` and wait until it answers; returns ``etcd://ADDR:PORT``.

    ``tls`` = ``(ca, cert, key)``: clients over TLS, each with a certificate ``ca`` signed
    (etcd's ``--client-cert-auth``; the stores reach it with ``--cluster-store-opt
    kv.cacertfile=... kv.certfile=... kv.keyfile=...``). Its readiness is then a TCP connect."""
    binary = shutil.which("etcd")
    if binary is None:
        raise RuntimeError("etcd is not installed (apt-get install etcd-server)")
    host, port = _split(listen)
    peer = peer_port or port + 1
    data_dir.mkdir(parents=True, exist_ok=True)
    if _running(data_dir):
        raise RuntimeError(f"an etcd already runs with {data_dir}")
    client, peer_url = f"{'https' if tls else 'http'}://{host}:{port}", f"http://{host}:{peer}"
    argv = [binary, "--name", "dockyard", "--data-dir", str(data_dir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"dockyard={peer_url}", "--initial-cluster-state", "new",
            "--log-level", "warn"]
    if tls:
        ca, cert, key = tls
        argv += ["--trusted-ca-file", ca, "--cert-file", cert, "--key-file", key, "--client-cert-auth"]
    with open(data_dir / "etcd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (data_dir / "etcd.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (data_dir / "etcd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"etcd exited with {proc.returncode}:\n{tail}")
        try:
            if tls:
                with socket.create_connection((host, port), timeout=1):
                    return f"etcd://{host}:{port}"
            with urllib.request.urlopen(f"{client}/health", timeout=1) as resp:
                if b'"true"' in resp.read():
                    return f"etcd://{host}:{port}"
        except OSError:
            pass
        time.sleep(0.1)
    stop(data_dir, remove=False)
    raise RuntimeError(f"etcd did not answer on {client} within {START_TIMEOUT:g} s")


def _running(data_dir: Path) -> int | None:
    """The PID of the etcd started with ``data_dir``, if it still runs."""
    try:
        pid = int((data_dir / "etcd.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not cmdline or not cmdline[0].endswith(b"etcd") or str(data_dir / "data").encode() not in cmdline:
        return None
    return pid


def stop(data_dir: Path, remove: bool = True, timeout: float = 10.0) -> None:
    """Stop that etcd (SIGTERM, then SIGKILL) and, with ``remove``, delete ``data_dir``."""
    pid = _running(data_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _running(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(data_dir):
            os.kill(pid, signal.SIGKILL)
        # it is our child only inside the ``start`` process; reap if it is ours
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
