"""``dockyard run`` with and without click (issue 21 item 10): the click-free parser takes an
argument list exactly as the click command does or declines it, and the real ``dockyard``
process against a scripted engine on a unix socket prints, exits and sends the same through the
fast path as through click (``DOCKYARD_NO_FAST=1``), in docker's order: create, then attach and
wait answered, then start."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from dockyard_api_docker.cli import run as run_mod

ARGVS = [
    ["busybox"], ["busybox", "true"], ["--rm", "busybox", "true"], ["-d", "busybox", "sleep", "9"],
    ["-it", "--rm", "busybox", "sh"], ["-dit", "busybox"], ["-ti", "busybox"], ["-i", "-t", "busybox"],
    ["--name", "web", "-e", "A=1", "-eB=2", "--env=C=3=4", "--env", "D", "busybox", "env"],
    ["-l", "a=b", "--label=c=", "-p", "80:80", "-p", "127.0.0.1:81:81/udp", "-p", "9000", "busybox"],
    ["-v", "/a:/b:ro", "--volume=n:/c", "-w", "/tmp", "-u", "1:2", "--network", "none", "busybox"],
    ["--restart", "on-failure:3", "-m", "64m", "--cpus", "1.5", "--entrypoint", "sh", "-h", "box", "busybox"],
    ["--privileged", "--init", "--runtime", "crun", "--stop-signal", "SIGUSR1", "busybox"],
    ["--health-cmd", "true", "--health-interval", "1s", "--health-timeout=2s", "--health-retries", "3",
     "--health-start-period", "1ms", "busybox"],
    ["--health-retries", "x", "busybox"], ["--health-retries", "+4", "busybox"],
    ["busybox", "--rm", "-d", "sh", "-c", "echo hi"], ["--", "busybox", "true"], ["busybox", "--", "true"],
    ["--rm", "--", "-weird-image"], ["--help"], ["-h"], ["--rm"], [], ["--nope", "busybox"], ["-x", "busybox"],
    ["--rm=1", "busybox"], ["--name"], ["--name", "-d", "busybox"], ["-e"], ["-ie", "A=1", "busybox"],
    ["-ieA=1", "busybox"], ["-", "busybox"], ["--name=", "busybox"], ["--name", "a", "--name", "b", "busybox"],
    ["-H", "unix:///x", "busybox"], ["--rm", "--rm", "busybox"], ["--env", "--", "busybox"],
    ["--sig-proxy=false", "busybox"], ["--sig-proxy=False", "busybox"], ["--sig-proxy=0", "busybox"],
    ["--sig-proxy=T", "busybox"], ["--sig-proxy", "--rm", "busybox"], ["--sig-proxy", "--", "busybox"],
    ["--sig-proxy", "busybox"], ["--sig-proxy", "-", "busybox"], ["--sig-proxy=", "busybox"],
    ["--sig-proxy=no", "busybox"], ["--sig-proxy=tRuE", "busybox"], ["--sig-proxy"],
]


def click_parse(args: list[str]) -> tuple[dict[str, Any], str, tuple[str, ...]] | None:
    try:
        ctx = run_mod.run.make_context("run", list(args))
    except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
        return None
    params = dict(ctx.params)
    image, command = params.pop("image"), params.pop("command")
    return params, image, tuple(command)


@pytest.mark.parametrize("args", ARGVS, ids=[" ".join(a) or "(none)" for a in ARGVS])
def test_the_fast_parser_takes_arguments_as_click_does_or_declines(args: list[str]) -> None:
    fast = run_mod.parse_args(args)
    if fast is not None:
        assert fast == click_parse(args)


def test_the_fast_parser_takes_the_usual_forms() -> None:
    usual = ARGVS[:18]
    assert [a for a in usual if run_mod.parse_args(a) is None] == [["--health-retries", "x", "busybox"]]
    for args, value in ((["--sig-proxy=false", "busybox"], False), (["--sig-proxy", "-d", "busybox"], True),
                        (["busybox"], True)):
        parsed = run_mod.parse_args(args)
        assert parsed is not None and parsed[0]["sig_proxy"] is value


def test_the_click_commands_read_the_same_table() -> None:
    names = {p.name for p in run_mod.run.params} - {"image", "command", "help"}
    assert names == {run_mod.option_name(d) for d, _k, _h in run_mod.RUN_OPTIONS}
    assert {p.name for p in run_mod.create.params} - {"image", "command", "help"} == names - {"detach", "sig_proxy"}


def test_the_module_imports_no_click() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, dockyard_api_docker.cli.run as r;"
                          "print(sorted(m for m in ('click', 're', 'typing', 'http.client', 'json') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ a scripted engine
class Engine:
    """Answers create/attach/wait/start/delete like dockyardd for scripted commands:
    ``Cmd`` ``["out"]`` writes a stdout and a stderr frame and exits 3; ``["cat"]`` echoes stdin
    until its end and exits 0; ``["failstart"]`` fails its start, ``["/no/such"]`` and
    ``["/etc/passwd"]`` as dockerd does for a missing or not executable command; image
    ``missing`` is a 404."""

    def __init__(self, path: str) -> None:
        self.log: list[str] = []
        self.bodies: list[Any] = []
        self.containers: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def note(self, text: str) -> None:
        with self.lock:
            self.log.append(text)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._requests(conn)
        except OSError:  # the client hung up (a failed start leaves its attach unread)
            pass

    def _requests(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                n = int(headers.get("content-length", 0))
                while len(buf) < n:
                    buf += conn.recv(65536)
                body, buf = buf[:n], buf[n:]
                if self._answer(conn, method, target, body, headers) is False:
                    return

    @staticmethod
    def _send(conn: socket.socket, status: str, doc: Any = None) -> None:
        data = json.dumps(doc).encode() if doc is not None else b""
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data)

    def _answer(self, conn: socket.socket, method: str, target: str, body: bytes, headers: dict[str, str]) -> Any:
        path, _, query = target.partition("?")
        parts = path.split("/")  # ['', 'v1.41', 'containers', id, action]
        if path.endswith("/containers/create"):
            doc = json.loads(body)
            self.bodies.append(doc)
            self.note(f"create {query}")
            if doc["Image"] == "missing":
                return self._send(conn, "404 Not Found", {"message": "No such image: missing:latest"})
            cid = f"c{len(self.containers):063d}"
            self.containers[cid] = {"cmd": doc["Cmd"] or [], "tty": doc["Tty"], "started": threading.Event(),
                                    "exited": threading.Event(), "killed": threading.Event(), "code": 0}
            return self._send(conn, "201 Created", {"Id": cid, "Warnings": []})
        c = self.containers.get(parts[3]) if len(parts) > 3 else None
        action = parts[4] if len(parts) > 4 else ""
        if c is None:
            return self._send(conn, "404 Not Found", {"message": "No such container"})
        if action == "attach":
            self.note(f"attach {query} upgrade={headers.get('upgrade')}")
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            c["started"].wait(10)
            if c["cmd"] == ["cat"]:
                while data := conn.recv(65536):
                    conn.sendall(data if c["tty"] else b"\x01\0\0\0" + len(data).to_bytes(4, "big") + data)
            elif c["cmd"] == ["sleepy"]:  # runs until a kill, then exits as a signal ends it
                c["killed"].wait(20)
                c["code"] = 128 + {"TERM": 15, "INT": 2}.get(c.get("signal", ""), 0)
            elif c["cmd"] == ["out"]:
                conn.sendall(b"\x01\0\0\0\0\0\0\x04out\n\x02\0\0\0\0\0\0\x04err\n")
                c["code"] = 3
            c["exited"].set()
            return False
        if action == "wait":
            self.note(f"wait {query}")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            c["exited"].wait(10)
            data = json.dumps({"Error": None, "StatusCode": c["code"]}).encode() + b"\n"
            conn.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
            return None
        if action == "start":
            self.note("start")
            if c["cmd"] and c["cmd"][0] in START_ERRORS:
                c["started"].set()
                c["exited"].set()
                status, message = START_ERRORS[c["cmd"][0]]
                return self._send(conn, status, {"message": message})
            c["started"].set()
            if c["cmd"] not in (["cat"], ["out"], ["sleepy"]):
                c["exited"].set()
            return self._send(conn, "204 No Content")
        if action == "resize":
            self.note(f"resize {query}")
            return self._send(conn, "200 OK")
        if action == "kill":
            self.note(f"kill {query}")
            c["signal"] = query.partition("signal=")[2]
            c["killed"].set()
            return self._send(conn, "204 No Content")
        if method == "DELETE":
            self.note(f"delete {query}")
            return self._send(conn, "204 No Content")
        return self._send(conn, "404 Not Found", {"message": "page not found"})

    def close(self) -> None:
        self.sock.close()


#: Commands whose start the scripted engine refuses: (status line, message); the last two are
#: what dockerd 28 answers for ``docker run busybox /no/such`` and ``... /etc/passwd``.
START_ERRORS = {
    "failstart": ("500 Internal Server Error", "boom: no such file"),
    "/no/such": ("400 Bad Request", "failed to create task for container: failed to create shim task: OCI runtime "
                 "create failed: runc create failed: unable to start container process: error during container "
                 'init: exec: "/no/such": stat /no/such: no such file or directory: unknown'),
    "/etc/passwd": ("400 Bad Request", "failed to create task for container: failed to create shim task: OCI "
                    "runtime create failed: runc create failed: unable to start container process: error during "
                    'container init: exec: "/etc/passwd": permission denied: unknown'),
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    path = str(tmp_path / "e.sock")
    eng = Engine(path)
    yield eng, path
    eng.close()


def dockyard(host: str, args: list[str], tmp: Path, fast: bool, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    if not fast:
        env["DOCKYARD_NO_FAST"] = "1"
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{host}", "run", *args],
                          input=stdin, capture_output=True, env=env, timeout=60)


CASES = [
    (["--rm", "busybox", "true"], b""),
    (["busybox", "out"], b""),
    (["--rm", "--name", "x", "-e", "A=1", "busybox", "out"], b""),
    (["-i", "--rm", "busybox", "cat"], b"hi\nthere\n"),
    (["-t", "busybox", "true"], b""),
    (["-d", "--rm", "busybox", "sleep"], b""),
    (["--rm", "busybox", "failstart"], b""),
    (["--rm", "busybox", "/no/such"], b""),
    (["busybox", "/etc/passwd"], b""),
    (["-d", "--rm", "busybox", "/no/such"], b""),
    (["missing", "true"], b""),
]


@pytest.mark.parametrize(("args", "stdin"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_fast_and_click_paths_print_exit_and_send_the_same(engine: tuple[Engine, str], tmp_path: Path,
                                                           args: list[str], stdin: bytes) -> None:
    eng, path = engine
    seen = []
    for fast in (False, True):  # the click run writes the records file the fast path reads
        eng.log.clear()
        eng.bodies.clear()
        res = dockyard(path, args, tmp_path, fast, stdin)
        ids = [c.encode() for c in eng.containers]
        out = b"ID\n" if res.stdout.strip() in ids else res.stdout  # -d prints the new container's ID
        log = eng.log if "-d" in args else eng.log[:1] + sorted(eng.log[1:3]) + eng.log[3:]  # attach, wait together
        seen.append((res.returncode, out, res.stderr.replace(b"\n", b" "), log, list(eng.bodies)))
    if "missing" in args:  # the fast path hands a refused create to click, which sends it again
        assert seen[1][3][0] == "create " and seen[1][4][0] == seen[1][4][1]
        seen[1] = (*seen[1][:3], seen[1][3][1:], seen[1][4][1:])
    assert seen[0] == seen[1]
    code, out, err, log, _bodies = seen[1]
    if args[-1] == "out":
        assert (code, out, err) == (3, b"out\n", b"err ")
    refused = args[-1] in START_ERRORS
    if "-d" not in args and not refused and "missing" not in args:
        assert log[0].startswith("create") and log[-1] == "start"
        stdin_q = "&stdin=1" if "-i" in args else ""
        assert sorted(log[1:3]) == [f"attach stream=1&stdout=1&stderr=1{stdin_q} upgrade=tcp",
                                    f"wait condition={'removed' if '--rm' in args else 'next-exit'}"]
    if "-i" in args:
        assert out == stdin
    if refused:  # docker's status for the start's error (runStartContainerErr); --rm removes
        status, message = START_ERRORS[args[-1]]
        assert (code, out, err) == ({"failstart": 125, "/no/such": 127, "/etc/passwd": 126}[args[-1]], b"",
                                    f"Error: {message} ".encode())
        assert log[-1] == ("delete force=1" if "--rm" in args else "start")
    elif "-d" in args:
        assert (code, out, log[-1]) == (0, b"ID\n", "start")


def test_a_fast_run_imports_neither_click_nor_an_http_library(engine: tuple[Engine, str], tmp_path: Path) -> None:
    _eng, path = engine
    dockyard(path, ["busybox", "true"], tmp_path, fast=False)  # writes the records file
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "dockyard.cli.main", "-H", f"unix://{path}",
                          "run", "--rm", "busybox", "true"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "dockyard_api_docker.cli.run" in modules
    assert not modules & {"click", "http.client", "json", "re", "typing", "socket", "dockyard.client",
                          "dockyard.registry", "importlib.metadata"}


@pytest.mark.parametrize("fast", [False, True], ids=["click", "fast"])
@pytest.mark.parametrize(("sig", "name", "extra"), [(15, "TERM", []), (2, "INT", []), (15, "TERM", ["-t"])],
                         ids=["TERM", "INT", "TERM-tty"])
def test_signals_reach_the_container_as_with_docker(engine: tuple[Engine, str], tmp_path: Path, fast: bool,
                                                    sig: int, name: str, extra: list[str]) -> None:
    """docker's --sig-proxy (on by default, with a TTY too in docker 28): the CLI forwards what
    it gets as a kill request and exits with the container's status."""
    import time

    eng, path = engine
    dockyard(path, ["busybox", "true"], tmp_path, fast=False)  # the records file for the fast path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if not fast:
        env["DOCKYARD_NO_FAST"] = "1"
    eng.log.clear()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{path}", "run", "--rm",
                             *extra, "busybox", "sleepy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while "start" not in eng.log and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (128 + sig, b"", b"")
    assert f"kill signal={name}" in eng.log


@pytest.mark.parametrize("fast", [False, True], ids=["click", "fast"])
def test_no_signal_reaches_the_container_with_sig_proxy_false(engine: tuple[Engine, str], tmp_path: Path,
                                                              fast: bool) -> None:
    """``--sig-proxy=false``: nothing is forwarded and, as with docker 28, two SIGINT/SIGTERMs
    leave the CLI running; the third ends it with docker's line and 1 (the container runs on)."""
    import time

    eng, path = engine
    dockyard(path, ["busybox", "true"], tmp_path, fast=False)  # the records file for the fast path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if not fast:
        env["DOCKYARD_NO_FAST"] = "1"
    eng.log.clear()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{path}", "run",
                             "--sig-proxy=false", "busybox", "sleepy"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while "start" not in eng.log and time.monotonic() < deadline:
        time.sleep(0.01)
    for sig in (15, 2):
        proc.send_signal(sig)
        with pytest.raises(subprocess.TimeoutExpired):  # an explicit window: it must not end
            proc.wait(timeout=0.3)
    proc.send_signal(15)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (1, b"", b"\ngot 3 SIGTERM/SIGINTs, forcefully exiting\n")
    assert not [line for line in eng.log if line.startswith("kill")]


@pytest.mark.parametrize("fast", [False, True], ids=["click", "fast"])
def test_a_tty_on_a_terminal_gets_its_size_as_with_docker(engine: tuple[Engine, str], tmp_path: Path,
                                                          fast: bool) -> None:
    """``run -t`` with stdout on a 30x100 terminal: ``ConsoleSize`` [30, 100] in the create body,
    then a resize to it after the start (docker's MonitorTtySize); not on a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    eng, path = engine
    dockyard(path, ["busybox", "true"], tmp_path, fast=False)  # the records file
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if not fast:
        env["DOCKYARD_NO_FAST"] = "1"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    eng.log.clear()
    eng.bodies.clear()
    try:
        code = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{path}", "run", "-t", "--rm",
                               "busybox", "true"], stdout=slave, stderr=subprocess.PIPE, env=env, timeout=60).returncode
    finally:
        os.close(slave)
        os.close(master)
    assert code == 0
    assert eng.bodies[0]["HostConfig"]["ConsoleSize"] == [30, 100]
    assert eng.log[-1] == "resize h=30&w=100" and eng.log[-2] == "start"
    eng.bodies.clear()
    assert dockyard(path, ["-t", "busybox", "true"], tmp_path, fast).returncode == 0  # stdout a pipe
    assert "ConsoleSize" not in eng.bodies[0]["HostConfig"]
