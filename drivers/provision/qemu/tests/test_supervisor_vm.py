"""systemd for real, in the session's shared VM (Debian 12, systemd 252 as PID 1; no extra
boot): the engine's unit is the systemd supervisor backend's (Type=notify, KillMode=process)
and ``systemd-analyze verify`` passes on it in the guest; ``systemctl stop`` leaves its
containers running and a start re-attaches them; a container unit (``dockyard generate
systemd``) restarts its container after ``kill -9`` and stops it cleanly; a socket-activated
dockyardd (``dockyard generate systemd daemon``: dyact.socket + dyact.service) answers the first
call, made while only its socket is up.

The guest's engine venv carries dockyard-generate (the wheelhouse's roots when installed here),
so the units are generated in the guest by the guest's own ``dockyard``. Under TCG every process
start in the guest costs seconds, so the steps run as one script of the guest's venv python over
one SSH session (it prints what it saw as JSON; the assertions are here). It also times the
first answered ``/version`` of dyact.socket against a dockyardd started directly (the VM half
of ``bench/benchmarks/socket_activation.py``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.usefixtures("removed_hosts_leave_nothing"), pytest.mark.timeout(900)]

GUEST = r'''
import json, os, socket, subprocess, sys, time
from dockyard.client import Client
from dockyard.errors import NotFound

name, home = sys.argv[1], sys.argv[2]
unit, sock = f"dockyard-{name}.service", f"unix://{home}/run/dockyard.sock"
cli = f"{home}/venv/bin/dockyard -H {sock}"
out = {"t": {}}
T0 = time.monotonic()


def mark(step):
    out["t"][step] = round(time.monotonic() - T0, 1)


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{cmd!r} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout.strip()


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.1)


def client():
    return Client(sock, timeout=120)


def pid(n):
    try:
        st = client().get(f"/containers/{n}/json")["State"]
    except NotFound:
        return 0
    return st["Pid"] if st["Running"] else 0


def first_version(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)["Version"]


def answers(path):
    try:
        return first_version(path)[0].split(" ")[1] == "200"
    except OSError:
        return False


try:
    sh(f"systemd-analyze verify /etc/systemd/system/{unit}")
    out["show"] = dict(l.split("=", 1) for l in sh(f"systemctl show {unit} -p Type -p KillMode -p ActiveState "
                                                  "-p Restart").split())
    mark("unit checked")
    client().post("/dockyard/images/bootstrap", name="busybox")
    mark("busybox")
    # systemctl stop leaves the containers running; a start re-attaches them
    client().post("/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="keep")
    client().post("/containers/keep/start")
    kept = pid("keep")
    sh(f"systemctl stop {unit}")
    out["stopped"] = {"unit": sh(f"systemctl is-active {unit}", check=False), "container_alive":
                      os.path.exists(f"/proc/{kept}")}
    sh(f"systemctl start {unit}")  # Type=notify: returns once dockyardd serves
    out["restarted_same_container"] = pid("keep") == kept
    mark("engine stopped and started")
    # a container unit, generated here, restarts its container after kill -9
    client().post("/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="svc")
    sh(f"cd /etc/systemd/system && {cli} generate systemd --name --time 1 --files svc && "
       "systemd-analyze verify container-svc.service && systemctl daemon-reload && systemctl start container-svc")
    mark("container unit generated and started")
    first = pid("svc")
    out["unit_started_container"] = bool(first)
    os.kill(first, 9)
    wait(lambda: pid("svc") not in (0, first), 120, "container-svc to restart svc")
    out["nrestarts"] = int(sh("systemctl show -p NRestarts --value container-svc"))
    sh("systemctl stop container-svc")
    out["stopped_container"] = pid("svc") == 0 and sh("systemctl is-active container-svc", check=False)
    mark("container unit restarted and stopped")
    # socket activation: only the socket is up; the first call starts dockyardd and is answered
    sh(f"cd /etc/systemd/system && {cli} generate systemd --daemon-unit dyact --data-root /var/lib/dyact "
       "--exec-root /run/dyact --files daemon && systemd-analyze verify dyact.service dyact.socket && "
       "systemctl daemon-reload")
    mark("dyact generated")
    t0 = time.monotonic()
    sh("systemctl start dyact.socket")
    out["dyact_before"] = sh("systemctl is-active dyact.service", check=False)
    out["first_call"] = first_version("/run/dyact/dockyard.sock")
    out["activated_s"] = round(time.monotonic() - t0, 2)
    out["dyact_after"] = sh("systemctl is-active dyact.service", check=False)
    sh("systemctl stop dyact.service dyact.socket")
    mark("socket activation")
    # the same dockyardd started directly on a fresh data root too, polled until /version answers
    t0 = time.monotonic()
    direct = subprocess.Popen([f"{home}/venv/bin/dockyardd", "--data-root", "/var/lib/dyact-direct", "--exec-root",
                               "/run/dyact", "-H", "unix:///run/dyact/direct.sock"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait(lambda: answers("/run/dyact/direct.sock"), 120, "dockyardd started directly")
    out["direct_s"] = round(time.monotonic() - t0, 2)
    direct.terminate()
    direct.wait(60)
    mark("direct start")
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
finally:
    sh("systemctl stop container-svc dyact.service dyact.socket", check=False)
    sh("rm -f /etc/systemd/system/container-svc.service /etc/systemd/system/dyact.*; systemctl daemon-reload; "
       "systemctl reset-failed", check=False)
    for n in ("keep", "svc"):
        try:
            client().delete(f"/containers/{n}", force=1)
        except Exception:
            pass
    sh("rm -rf /var/lib/dyact /var/lib/dyact-direct /run/dyact", check=False)
print(json.dumps(out))
'''


def run(host, command: str, stdin: str = "", timeout: float = 600) -> str:
    x = host.extra
    res = subprocess.run(["ssh", "-i", x["ssh_key_path"], "-p", str(x["ssh_port"]), "-o", "BatchMode=yes", "-o",
                          f"UserKnownHostsFile={x['known_hosts']}", "-o", "StrictHostKeyChecking=yes", "-o",
                          "LogLevel=ERROR", f"{x['ssh_user']}@{x['ssh_hostname']}", command],
                         input=stdin.encode(), capture_output=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"guest: {command!r} exited {res.returncode}: {res.stderr.decode(errors='replace')}")
    return res.stdout.decode(errors="replace")


async def test_systemd_in_the_vm(qemu_session) -> None:
    if not qemu_session.real:
        pytest.skip("the engine's unit comes from dockyard-provision-ssh's EngineInstaller (a stand-in ran here)")
    host = await qemu_session.shared_host()
    home = f"/opt/dockyard/{host.name}"
    t0 = time.monotonic()
    seen = json.loads((await asyncio.to_thread(run, host, f"{home}/venv/bin/python - {host.name} {home}",
                                               GUEST)).strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert seen["show"] == {"Type": "notify", "KillMode": "process", "ActiveState": "active", "Restart": "always"}
    assert seen["stopped"] == {"unit": "inactive", "container_alive": True}, seen
    assert seen["restarted_same_container"], seen
    assert seen["unit_started_container"] and seen["nrestarts"] >= 1, seen
    assert seen["stopped_container"] == "inactive", seen
    assert seen["dyact_before"] == "inactive" and seen["dyact_after"] == "active", seen
    assert seen["first_call"][0].split(" ")[1] == "200" and seen["first_call"][1], seen
    print(f"\nVM (TCG): socket activation -> first /version {seen['activated_s']} s; "
          f"dockyardd started directly -> first /version {seen['direct_s']} s; the checks took "
          f"{time.monotonic() - t0:.1f} s; steps (s since start): {seen['t']}")
