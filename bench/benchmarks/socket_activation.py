"""Socket activation: time to the first answered ``docker version``, activated vs started directly.

**Subject** (issue 20): ``socket_activated`` -- ``systemd-socket-activate -l SOCK dockyardd -H
fd:// ...`` is started (the role of ``systemctl start dockyard.socket``: the socket is bound at
once, dockyardd is executed on the first connection with the socket passed as LISTEN_FDS), then
``docker -H unix://SOCK version`` runs at once: its connection waits in the socket's backlog
while dockyardd starts, and the clock stops when it has answered.

**Peer**: ``started_directly`` -- ``dockyardd -H unix://SOCK ...`` started, the socket polled
(``GET /_ping``, back-off 5 -> 50 ms) until it answers, then the same ``docker version``.

Both on this host (systemd is not PID 1 here, so ``systemd-socket-activate``, systemd's own
tool for exactly this, stands in for the ``.socket`` unit); the qemu VM test
(``drivers/provision/qemu/tests/test_supervisor_vm.py``) checks the real ``dockyard.socket``
under systemd and prints its first-call time under TCG. Rounds alternate the two, order
rotating, ``BENCH_ACTIVATION_ROUNDS`` (default ``min(runs, 5)``) after one unrecorded round.
Without the docker CLI, ``/version`` is asked with a raw HTTP request instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import Context, Result, add_ratios, fill, sample_stats, stop_dockyardd

SUBJECT, PEER = "socket_activated", "started_directly"
ROUNDS = int(os.environ.get("BENCH_ACTIVATION_ROUNDS", "0"))


def _version(sock: Path) -> None:
    docker = shutil.which("docker")
    if docker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        res = subprocess.run([docker, "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"],
                             capture_output=True, text=True, timeout=60, env=env)
        if res.returncode != 0 or not res.stdout.strip():
            raise RuntimeError(f"docker version: {res.stderr.strip()}")
        return
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
    if b" 200 " not in s.recv(64):
        raise RuntimeError("/version did not answer 200")
    s.close()


def _one(ctx: Context, root: Path, activated: bool) -> float:
    from dockyard_plugin_sdk.testing.daemon import answers_ping

    root.mkdir(parents=True)
    sock = root / "dockyard.sock"
    base = [str(ctx.venv_bin / "dockyardd"), "--data-root", str(root / "data"), "--exec-root", str(root / "run")]
    if activated:
        argv = ["systemd-socket-activate", "-l", str(sock), "-E", "PATH", *base, "-H", "fd://"]
    else:
        argv = [*base, "-H", f"unix://{sock}"]
    with open(root / "daemon.log", "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if activated:
                while not sock.exists():  # the tool binds before it waits: microseconds
                    time.sleep(0.001)
            else:
                delay = 0.005
                while not answers_ping(sock):  # the SDK's probe: the socket exists and /_ping is 200
                    if proc.poll() is not None:
                        raise RuntimeError(f"dockyardd exited: {(root / 'daemon.log').read_text()[-300:]}")
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.05)
            _version(sock)
            took = time.monotonic() - t0
        finally:
            stop_dockyardd(proc, root)  # stopped, what it owned purged, its round's directory removed
    return took


def run(ctx: Context) -> list[Result]:
    subject = Result("socket_activation", SUBJECT, "systemd-socket-activate -l SOCK dockyardd -H fd:// + docker version")
    peer = Result("socket_activation", PEER, "dockyardd -H unix://SOCK, poll /_ping, docker version", role="peer")
    if shutil.which("systemd-socket-activate") is None:
        subject.error = "systemd-socket-activate is not installed (Debian package systemd)"
        return [subject, peer]
    rounds = ROUNDS or min(ctx.runs, 5)
    times: dict[str, list[float]] = {SUBJECT: [], PEER: []}
    work = Path(tempfile.mkdtemp(prefix="dy-act-", dir=ctx.work_dir))
    try:
        for i in range(rounds + 1):
            order = [True, False] if i % 2 == 0 else [False, True]
            for activated in order:
                took = _one(ctx, work / f"{i}-{int(activated)}", activated)
                if i:
                    times[SUBJECT if activated else PEER].append(took)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fill(subject, sample_stats(times[SUBJECT]))
    fill(peer, sample_stats(times[PEER]))
    results = [subject, peer]
    add_ratios(results)
    return results
