"""dockyard's agent on an SSH target (stdlib only, any Python 3.8+).

Uploaded by dockyard-provision-ssh to ``<root>/<name>/lib/agent.py`` and run over SSH as
``python3 agent.py COMMAND`` with a JSON object on stdin; it prints one JSON object (``error``
set when the command failed, with what the installer shows). One command is one SSH round trip,
however many files, processes and checks it takes on the target.

Commands: ``check`` (Python, the process supervisor, Debian packages; apt when a mirror answers),
``venv`` (a venv from the uploaded wheelhouse, offline), ``configure`` (TLS material, daemon.json,
the engine's command line, the host name, the supervisor unit), ``restart``, ``start``,
``stop``, ``state``, ``uninstall``. Layout of one engine, ``<root>/<name>`` (``home``)::

    lib/agent.py lib/supervise.py      this script and the supervisor (no systemd)
    venv -> ../.venvs/<key>            the venv of its wheelhouse, shared by the engines of the root
    tls/{ca.pem,server-cert.pem,server-key.pem}   0700 directory, key 0600
    daemon.json engine.json            the engine's settings; its command line and environment
    data/ run/ log/dockyardd.log       data root, exec root (API socket run/dockyard.sock), log
    state.json                         what to restore at uninstall (the host name)

and beside the engines, ``<root>/.wheels/<key>/*.whl`` (the uploaded wheelhouse, by content key)
and ``<root>/.venvs/<key>`` (``python3 -m venv --without-pip``, pip run from its own wheel),
removed with the last engine or when no engine uses them any more.

Where systemd is PID 1 the engine is the unit ``dockyard-<name>.service`` that the installer
sends with ``configure`` (rendered on its machine by the ``systemd`` supervisor backend:
``Type=notify``, ``KillMode=process``, restarted when it dies); elsewhere it runs under
``lib/supervise.py``, started detached with a locked pidfile.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

UNIT_DIR = "/etc/systemd/system"
HOSTS_MARK = "# dockyard engine"


class Failure(Exception):
    """A failure the installer reports as it is (``error``), with extra fields."""

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.extra = extra


# ------------------------------------------------------------------------------- helpers
def run(argv: list[str], timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    if check and proc.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited with status {proc.returncode}: "
                      f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def write_file(path: str, data: bytes, mode: int) -> None:
    """Write ``path`` in place with ``mode`` (a new file never has wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def systemd_booted() -> bool:
    """sd_booted(): systemd is PID 1 when /run/systemd/system exists."""
    return os.path.isdir("/run/systemd/system")


def unit_name(name: str) -> str:
    return f"dockyard-{name}.service"


def unit_path(name: str) -> str:
    return os.path.join(UNIT_DIR, unit_name(name))


def log_tail(home: str, size: int = 1500) -> str:
    try:
        with open(os.path.join(home, "log", "dockyardd.log"), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return ""


def ping(sock: str, timeout: float = 2.0) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        s.close()


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def read_json(path: str, default: object = None) -> object:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


# ------------------------------------------------------------------------------- check
def mirrors_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether apt can reach a package source: a TCP connection to its proxy, or to the host of
    any URI in the apt sources. Returns (reachable, what was tried)."""
    proc = run(["apt-config", "dump"], timeout=30)
    proxy = ""
    for line in proc.stdout.splitlines():
        if line.lower().startswith(("acquire::http::proxy ", "acquire::https::proxy ")):
            proxy = line.split(" ", 1)[1].strip().strip('";')
            break
    uris = []
    if proxy:
        uris.append(proxy)
    else:
        paths = ["/etc/apt/sources.list"]
        if os.path.isdir("/etc/apt/sources.list.d"):
            paths += [os.path.join("/etc/apt/sources.list.d", f) for f in sorted(os.listdir("/etc/apt/sources.list.d"))
                      if f.endswith((".list", ".sources"))]
        for path in paths:
            try:
                with open(path) as fh:
                    text = fh.read()
            except OSError:
                continue
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("deb ") or line.startswith("URIs:"):
                    uris += [w for w in line.split() if "://" in w]
    tried = []
    for uri in dict.fromkeys(uris):
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                return True, f"{parts.hostname}:{port}"
        except OSError as exc:
            tried.append(f"{parts.hostname}:{port} ({exc.strerror or exc})")
    return False, "; ".join(tried) or "no http(s) package source configured"


def missing_packages(groups: list[list[str]]) -> list[str]:
    """Each group is a package or alternatives (``crun|runc``); the groups none of whose
    packages ``dpkg -s`` reports installed."""
    missing = []
    for group in groups:
        if not any(installed(p) for p in group):
            missing.append("|".join(group))
    return missing


def installed(package: str) -> bool:
    proc = run(["dpkg", "-s", package], timeout=30)
    return proc.returncode == 0 and any(line.startswith("Status:") and line.split()[-1] == "installed"
                                        for line in proc.stdout.splitlines())


def cmd_check(args: dict) -> dict:
    out = {"python": "{}.{}".format(*sys.version_info[:2]), "machine": os.uname().machine,
           "supervisor": "systemd" if systemd_booted() else "background", "apt": "", "missing": []}
    if run(["dpkg", "--version"], timeout=30).returncode == 127:
        raise Failure("the target has no dpkg: only Debian and its derivatives are supported")
    missing = missing_packages(args["packages"])
    if missing and args.get("apt", True):
        if run(["apt-get", "--version"], timeout=30).returncode == 127:
            out["apt"] = "apt-get is not installed"
        else:
            reachable, tried = mirrors_reachable()
            if not reachable:
                out["apt"] = f"no package mirror answers ({tried})"
            else:
                names = [group.split("|")[0] for group in missing]
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                steps = [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                         *names]]
                for step in steps:
                    proc = subprocess.run(step, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                          timeout=900, env=env)
                    if proc.returncode != 0:
                        out["apt"] = f"{' '.join(step)} failed: {(proc.stderr or proc.stdout).strip()[-1500:]}"
                        break
                else:
                    out["apt"] = f"installed {' '.join(names)} with apt-get (through {tried})"
                missing = missing_packages(args["packages"])
    out["missing"] = missing
    return out


# ------------------------------------------------------------------------------- venv
def engines(root: str) -> list[str]:
    """The engine homes under an install root (names never start with a dot)."""
    try:
        return [os.path.join(root, e) for e in sorted(os.listdir(root)) if not e.startswith(".")]
    except FileNotFoundError:
        return []


def prune_shared(root: str) -> None:
    """Remove the wheelhouses and venvs no engine of ``root`` uses any more."""
    used = {os.path.basename(os.path.realpath(os.path.join(h, "venv"))) for h in engines(root)}
    for shared in (".venvs", ".wheels"):
        base = os.path.join(root, shared)
        for key in os.listdir(base) if os.path.isdir(base) else ():
            if key not in used and not key.startswith("."):
                shutil.rmtree(os.path.join(base, key), ignore_errors=True)


def cmd_venv(args: dict) -> dict:
    """The venv of wheelhouse ``key``, shared by the engines of this install root: made once
    (``--without-pip``; pip run from its wheel, offline), then reused."""
    import fcntl

    home, key = args["home"], args["key"]
    root = os.path.dirname(home)
    venvs = os.path.join(root, ".venvs")
    os.makedirs(venvs, exist_ok=True)
    venv = os.path.join(venvs, key)
    marker = os.path.join(venv, ".complete")
    with open(os.path.join(venvs, ".lock"), "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # two installs on one machine make it once
        if os.path.exists(marker):
            return {"installed": False, "venv": venv}
        wheels = os.path.join(root, ".wheels", key)
        t0 = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one
        proc = run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
        if proc.returncode != 0:
            raise Failure(f"python3 -m venv failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
        pip = [os.path.join(venv, "bin", "python"), os.path.join(wheels, args["pip_wheel"], "pip"), "install",
               "--isolated", "--disable-pip-version-check", "--no-cache-dir", "--no-index", "--find-links", wheels,
               "-q", "pip", *args["roots"]]
        proc = run(pip, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise Failure(f"pip install from the wheelhouse failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
        with open(marker, "w") as fh:
            fh.write(key + "\n")
    return {"installed": True, "venv": venv, "seconds": round(time.monotonic() - t0, 2)}


# ------------------------------------------------------------------------------- configure
def set_hostname(home: str, name: str) -> None:
    """Docker Machine's provisioner: the running host name, /etc/hostname and a 127.0.1.1 line
    in /etc/hosts. What they were is kept in state.json (first install only) for uninstall."""
    state_path = os.path.join(home, "state.json")
    state = read_json(state_path, {}) or {}
    if "hostname" not in state:
        try:
            with open("/etc/hostname") as fh:
                etc = fh.read()
        except OSError:
            etc = None
        state.update(hostname=socket.gethostname(), etc_hostname=etc)
        write_file(state_path, json.dumps(state).encode(), 0o644)
    if socket.gethostname() != name:
        socket.sethostname(name)
    if os.path.exists("/etc/hostname"):
        write_file("/etc/hostname", (name + "\n").encode(), 0o644)
    try:
        with open("/etc/hosts") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    mark = f"{HOSTS_MARK} {os.path.basename(home)}"
    kept = [line for line in lines if not line.endswith(mark)]
    if not any(name in line.split()[1:] for line in kept if line and not line.startswith("#")):
        kept.append(f"127.0.1.1\t{name}\t{mark}")
    if kept != lines:
        with open("/etc/hosts", "w") as fh:  # in place: /etc/hosts may be a bind mount
            fh.write("\n".join(kept) + "\n")


def restore_hostname(home: str, name: str) -> None:
    state = read_json(os.path.join(home, "state.json"), {}) or {}
    mark = f"{HOSTS_MARK} {os.path.basename(home)}"
    try:
        with open("/etc/hosts") as fh:
            lines = fh.read().splitlines()
        kept = [line for line in lines if not line.endswith(mark)]
        if kept != lines:
            with open("/etc/hosts", "w") as fh:
                fh.write("\n".join(kept) + "\n")
    except OSError:
        pass
    if "hostname" not in state:
        return
    if socket.gethostname() == name and state["hostname"] != name:
        socket.sethostname(state["hostname"])
    try:
        with open("/etc/hostname") as fh:
            current = fh.read()
    except OSError:
        return
    if current.strip() == name and state.get("etc_hostname") is not None:
        with open("/etc/hostname", "w") as fh:
            fh.write(state["etc_hostname"])


def write_tls(home: str, material: dict) -> str:
    tls = os.path.join(home, "tls")
    os.makedirs(tls, mode=0o700, exist_ok=True)
    os.chmod(tls, 0o700)
    for fname, part, mode in (("ca.pem", "ca_cert", 0o644), ("server-cert.pem", "cert", 0o644),
                              ("server-key.pem", "key", 0o600)):
        write_file(os.path.join(tls, fname), material[part].encode(), mode)
    return tls


def cmd_tls(args: dict) -> dict:
    if not os.path.exists(os.path.join(args["home"], "engine.json")):
        raise Failure(f"no engine {args['name']} is installed under {args['home']}")
    write_tls(args["home"], args["tls"])
    return {}


def cmd_configure(args: dict) -> dict:
    home, name = args["home"], args["name"]
    for d in ("data", "run", "log"):
        os.makedirs(os.path.join(home, d), exist_ok=True)
    tls = write_tls(home, args["tls"])
    sock = os.path.join(home, "run", "dockyard.sock")
    daemon = {"data-root": os.path.join(home, "data"), "exec-root": os.path.join(home, "run"),
              "pidfile": os.path.join(home, "run", "dockyardd.pid"),
              "hosts": [*args["listen"], f"unix://{sock}"],
              "tlsverify": True, "tlscacert": os.path.join(tls, "ca.pem"),
              "tlscert": os.path.join(tls, "server-cert.pem"), "tlskey": os.path.join(tls, "server-key.pem")}
    write_file(os.path.join(home, "daemon.json"), (json.dumps(daemon, indent=2) + "\n").encode(), 0o644)
    link = os.path.join(home, "venv")  # this engine's venv: the shared one of its wheelhouse
    venv = os.path.join(os.path.dirname(home), ".venvs", args["key"])
    if os.path.realpath(link) != venv:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(venv, link)
    prune_shared(os.path.dirname(home))
    argv = [os.path.join(venv, "bin", "dockyardd"), "--config-file", os.path.join(home, "daemon.json"),
            *args.get("flags", [])]
    env = dict(args.get("env") or {})
    write_file(os.path.join(home, "engine.json"), json.dumps({"argv": argv, "env": env}).encode(), 0o644)
    if args.get("hostname"):
        set_hostname(home, args["hostname"])
    if systemd_booted():
        files = args.get("unit_files") or []
        if [f["path"] for f in files] != [unit_name(name)]:
            raise Failure(f"the installer sent no unit {unit_name(name)} for this systemd target "
                          f"(got {[f['path'] for f in files]}): it renders the unit, the agent has none")
        path = unit_path(name)
        text = files[0]["text"]
        try:
            with open(path) as fh:
                same = fh.read() == text
        except OSError:
            same = False
        if not same:
            write_file(path, text.encode(), 0o644)
            run(["systemctl", "daemon-reload"], check=True)
        run(["systemctl", "enable", "-q", unit_name(name)], check=True)
        return {"supervisor": f"systemd unit {unit_name(name)}"}
    return {"supervisor": f"background supervisor {os.path.join(home, 'lib', 'supervise.py')} "
                          f"(pidfile {os.path.join(home, 'supervisor.pid')})"}


# ------------------------------------------------------------------------------- running
def supervisor_pid(home: str) -> int:
    """The pid of the engine's background supervisor when it runs (it holds its pidfile's lock)."""
    import fcntl

    path = os.path.join(home, "supervisor.pid")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # locked: it runs
            data = os.read(fd, 32).decode().strip()
            return int(data) if data.isdigit() else 0
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return 0
    finally:
        os.close(fd)


def systemd_show(name: str) -> dict:
    proc = run(["systemctl", "show", unit_name(name), "-p", "ActiveState", "-p", "Result", "-p", "ExecMainStatus",
                "-p", "ExecMainCode", "-p", "NRestarts", "-p", "MainPID"], timeout=30)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def engine_down(home: str, name: str, since_restarts: int, launched: subprocess.Popen | None = None) -> str:
    """Why the engine is not running, or "" while it runs (or is being started: ``launched``,
    the supervisor this agent started, has not taken its pidfile yet)."""
    if systemd_booted():
        show = systemd_show(name)
        if show.get("ActiveState") in ("failed", "inactive") or int(show.get("NRestarts") or 0) > since_restarts:
            return (f"the unit {unit_name(name)} is {show.get('ActiveState')} (result {show.get('Result')}, "
                    f"status {show.get('ExecMainStatus')})")
        return ""
    status = read_json(os.path.join(home, "supervisor.json"), {}) or {}
    if not supervisor_pid(home):
        if launched is not None and launched.poll() is None:
            return ""
        return f"the supervisor is not running ({status.get('state', 'never started')}; engine {status.get('last_exit') or 'not started'})"
    if status.get("restarts", 0) > since_restarts or status.get("state") in ("restarting", "failed", "exited"):
        return f"the engine {status.get('last_exit')}"
    return ""


def restarts_now(home: str, name: str) -> int:
    if systemd_booted():
        return int(systemd_show(name).get("NRestarts") or 0)
    return int((read_json(os.path.join(home, "supervisor.json"), {}) or {}).get("restarts", 0))


def launch(home: str, name: str) -> subprocess.Popen | None:
    if systemd_booted():
        run(["systemctl", "start", unit_name(name)], check=True)
        return None
    python = os.path.join(home, "venv", "bin", "python")
    with open(os.path.join(home, "log", "supervisor.log"), "ab") as log:
        return subprocess.Popen([python, os.path.join(home, "lib", "supervise.py"), home], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, cwd="/", start_new_session=True, close_fds=True)


def wait_ready(home: str, name: str, timeout: float, before: int, launched: subprocess.Popen | None) -> None:
    sock = os.path.join(home, "run", "dockyard.sock")
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if os.path.exists(sock) and ping(sock):
            return
        why = engine_down(home, name, before, launched)
        if why:
            raise Failure(f"{why} before it answered; its log ends:\n{log_tail(home)}")
        if time.monotonic() > deadline:
            raise Failure(f"the engine did not answer on {sock} within {timeout:g}s; its log ends:\n{log_tail(home)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def stop_engine(home: str, name: str, timeout: float = 30) -> None:
    if systemd_booted():
        if os.path.exists(unit_path(name)):
            run(["systemctl", "stop", unit_name(name)], timeout=timeout + 10)
        return
    pid = supervisor_pid(home)
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while supervisor_pid(home):
        if time.monotonic() > deadline:
            status = read_json(os.path.join(home, "supervisor.json"), {}) or {}
            for p in (status.get("engine_pid", 0), pid):
                if alive(p):
                    os.kill(p, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.02)


def cmd_restart(args: dict) -> dict:
    home, name = args["home"], args["name"]
    stop_engine(home, name)
    before = restarts_now(home, name)
    launched = launch(home, name)
    wait_ready(home, name, args.get("timeout", 60), before, launched)
    return {}


def cmd_start(args: dict) -> dict:
    home, name = args["home"], args["name"]
    if not os.path.exists(os.path.join(home, "engine.json")):
        raise Failure(f"no engine {name} is installed under {home}")
    sock = os.path.join(home, "run", "dockyard.sock")
    running = (systemd_show(name).get("ActiveState") == "active") if systemd_booted() else bool(supervisor_pid(home))
    if running and ping(sock):
        return {}
    return cmd_restart(args)


def cmd_stop(args: dict) -> dict:
    stop_engine(args["home"], args["name"])
    return {}


def cmd_state(args: dict) -> dict:
    home, name = args["home"], args["name"]
    if not os.path.exists(os.path.join(home, "engine.json")):
        return {"state": "none"}
    sock = os.path.join(home, "run", "dockyard.sock")
    if systemd_booted():
        show = systemd_show(name)
        active = show.get("ActiveState")
        if active in ("active", "activating", "reloading"):
            if ping(sock):
                return {"state": "running"}
            return {"state": "error", "reason": f"the unit {unit_name(name)} is {active} but the engine does not "
                                                f"answer on {sock}; its log ends:\n{log_tail(home)}"}
        if show.get("Result") in ("success", "") and active == "inactive":
            return {"state": "stopped"}
        return {"state": "error", "reason": f"the unit {unit_name(name)} is {active} (result {show.get('Result')}, "
                                            f"status {show.get('ExecMainStatus')}); its log ends:\n{log_tail(home)}"}
    status = read_json(os.path.join(home, "supervisor.json"), {}) or {}
    if supervisor_pid(home):
        if alive(int(status.get("engine_pid") or 0)) and ping(sock):
            return {"state": "running"}
        return {"state": "error", "reason": f"the engine is {status.get('state')} ({status.get('last_exit') or 'running'}) "
                                            f"but does not answer on {sock}; its log ends:\n{log_tail(home)}"}
    if status.get("state") in (None, "stopped"):
        return {"state": "stopped"}
    return {"state": "error", "reason": f"the engine {status.get('last_exit')} and its supervisor gave up "
                                        f"({status.get('state')}); its log ends:\n{log_tail(home)}"}


# ------------------------------------------------------------------------------- uninstall
_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def cgroup_dirs(owner: str) -> list[str]:
    """Cgroup directories (any hierarchy) whose name carries ``owner``, deepest first."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        points = {line.split(" - ")[0].split()[4] for line in fh if " - cgroup" in line}
    for point in points:
        for dirpath, dirnames, _files in os.walk(point):
            if dirpath.count("/") - point.count("/") > 3:
                dirnames[:] = []
                continue
            for d in dirnames:
                if owner in d:
                    full = os.path.join(dirpath, d)
                    for sub, _dn, _fn in os.walk(full):
                        found.append(sub)
            dirnames[:] = [d for d in dirnames if owner not in d]
    return sorted(set(found), key=lambda p: -p.count("/"))


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_naming(text: str) -> set[int]:
    """Processes whose command line contains ``text``, except this agent and its session."""
    out = set()
    me = os.path.abspath(__file__).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (os.getpid(), os.getppid()):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                if text.encode() in cmdline and me not in cmdline:
                    out.add(int(entry))
            except OSError:
                pass
    return out


def owner_token(data_root: str) -> str:
    """The engine's owner token, as ``dockyard.config.Config.owner`` derives it: ``dy`` and 6
    hex digits of the SHA-256 of the resolved data root (a test checks the two agree)."""
    import hashlib

    return "dy" + hashlib.sha256(os.path.realpath(data_root).encode()).hexdigest()[:6]


def cmd_uninstall(args: dict) -> dict:
    home, name = args["home"], args["name"]
    owner = owner_token(os.path.join(home, "data"))
    problems: list[str] = []
    try:
        stop_engine(home, name)
    except (OSError, Failure) as exc:
        problems.append(f"stopping the engine: {exc}")
    if systemd_booted() and os.path.exists(unit_path(name)):
        run(["systemctl", "disable", "-q", unit_name(name)])
        os.unlink(unit_path(name))
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "reset-failed", unit_name(name)])
    # the engine's containers and their monitors: its cgroups, and whatever names its directories
    groups = cgroup_dirs(owner)
    deadline = time.monotonic() + 10
    while True:
        pids = processes_naming(home + "/")
        for g in groups:
            try:
                with open(os.path.join(g, "cgroup.procs")) as fh:
                    pids |= {int(p) for p in fh.read().split()}
            except OSError:
                pass
        if not pids:
            break
        if time.monotonic() > deadline:
            problems.append(f"processes {sorted(pids)} outlived SIGKILL")
            break
        kill_pids(pids)
        time.sleep(0.05)
    for g in groups:
        try:
            os.rmdir(g)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"cgroup {g}: {exc.strerror}")
    # mounts below the engine's directories (overlays, bound network namespaces)
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4].replace("\\040", " ") for line in fh]
    for point in sorted({p for p in points if p == home or p.startswith(home + "/")}, key=lambda p: -p.count("/")):
        if _libc.umount2(point.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                problems.append(f"umount {point}: {os.strerror(err)}")
    # its links and nft tables (a stopped engine keeps them, as dockerd keeps docker0)
    proc = run(["ip", "-j", "link", "show"], timeout=30)
    if proc.returncode == 0:
        for link in json.loads(proc.stdout or "[]"):
            ifname = link.get("ifname", "")
            if ifname.startswith(owner):
                res = run(["ip", "link", "del", ifname], timeout=30)
                if res.returncode != 0 and "Cannot find device" not in res.stderr:
                    problems.append(f"link {ifname}: {res.stderr.strip()}")
    proc = run(["nft", "-j", "list", "tables"], timeout=30)
    if proc.returncode == 0:
        for entry in json.loads(proc.stdout or "{}").get("nftables", []):
            table = entry.get("table")
            if table and owner in table.get("name", ""):
                res = run(["nft", "delete", "table", table["family"], table["name"]], timeout=30)
                if res.returncode != 0:
                    problems.append(f"nft table {table['name']}: {res.stderr.strip()}")
    restore_hostname(home, name)
    shutil.rmtree(home, ignore_errors=True)
    if os.path.exists(home):
        problems.append(f"{home} could not be removed")
    root = os.path.dirname(home)
    if not engines(root):  # the last engine: the shared venvs and wheelhouses go, and the root
        for shared in (".venvs", ".wheels"):
            shutil.rmtree(os.path.join(root, shared), ignore_errors=True)
        try:
            os.rmdir(root)
        except OSError:
            pass
    else:
        prune_shared(root)
    return {"problems": problems}


COMMANDS = {"check": cmd_check, "tls": cmd_tls, "venv": cmd_venv, "configure": cmd_configure, "restart": cmd_restart,
            "start": cmd_start, "stop": cmd_stop, "state": cmd_state, "uninstall": cmd_uninstall}


def main() -> int:
    args = json.loads(sys.stdin.read() or "{}")
    try:
        result = COMMANDS[sys.argv[1]](args)
    except Failure as exc:
        result = {"error": str(exc), **exc.extra}
    except Exception as exc:  # noqa: BLE001 - reported to the installer, which raises it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
