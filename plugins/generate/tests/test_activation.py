"""dockyardd as a systemd unit runs it, on this host: its socket passed by systemd's own
``systemd-socket-activate`` (LISTEN_FDS; ``-H fd://``), readiness and stopping told over a
NOTIFY_SOCKET bound by the test (Type=notify). The first call, made while only the socket
exists, is answered; READY=1 comes with dockyardd's PID; SIGTERM gives STOPPING=1 and leaves the
socket file to its owner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.timeout(120)
def test_socket_activated_dockyardd_answers_the_first_call_and_notifies(tmp_path: Path, dockyard_owners) -> None:
    if shutil.which("systemd-socket-activate") is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    if os.geteuid() != 0:
        pytest.skip("dockyardd needs root")
    root = tmp_path / "dy"
    owner = dockyard_owners.record_data_root(root / "data", root)
    sock, notify = tmp_path / "api.sock", tmp_path / "notify"
    events = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    events.bind(str(notify))
    events.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(sock), "--fdname=api", "-E", "NOTIFY_SOCKET",
                             "-E", "PATH", str(BIN / "dockyardd"), "--data-root", str(root / "data"),
                             "--exec-root", str(root / "run"), "-H", "fd://api"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.01)
        with socket.socket(socket.AF_UNIX) as c:  # dockyardd is not running yet: the call starts it
            c.settimeout(60)
            # the activator binds (the file appears) a moment before it listens: refused until then
            while True:
                try:
                    c.connect(str(sock))
                    break
                except ConnectionRefusedError:
                    assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
                    time.sleep(0.01)
            c.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
        assert answer.split(b" ", 2)[1] == b"200", answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["ApiVersion"]
        ready = events.recv(4096).decode()
        assert ready.startswith("READY=1\n") and f"MAINPID={proc.pid}" in ready, ready  # the activator exec'd it
        proc.send_signal(signal.SIGTERM)
        assert events.recv(4096).decode().startswith("STOPPING=1")
        assert proc.wait(30) == 0
        assert sock.exists(), "dockyardd removed a socket that belongs to its supervisor"
        assert "NOTIFY_SOCKET" not in (tmp_path / "log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        events.close()
        from dockyard_plugin_sdk.testing.leaks import purge_owned

        purge_owned(owner)
