"""The command line's fast path (issue 21 item 10): ``dockyard.jsonlite`` against ``json``,
``dockyard.cli.wire`` (HTTP/1.1 on a socket) against a small server on a real unix socket,
``dockyard.entrycache`` against the registry that writes it, and ``dockyard.cli.fast``'s
dispatch with throwaway installed distributions (installed, cached, conflicting, uninstalled)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard import entrycache, jsonlite
from dockyard.cli import fast, wire
from dockyard.client import request_target, resolve_address
from dockyard.registry import Registry

DOCS = [
    {}, [], "", "é\u2603\U0001f600 \"q\" \\ \n\t\x00", 0, -1, 2**70, 1.5, -0.0, 1e300, True, False, None,
    {"Id": "abc", "Warnings": [], "nested": {"a": [1, {"b": None}]}},
    {"Error": None, "StatusCode": 137}, {"Error": {"Message": "no such container"}, "StatusCode": -1},
]


@pytest.mark.parametrize("doc", DOCS)
def test_jsonlite_reads_and_writes_what_json_does(doc: Any) -> None:
    assert json.loads(jsonlite.dumps(doc)) == doc
    assert jsonlite.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    text = json.dumps(doc, indent=2)
    assert jsonlite.loads(text) == json.loads(text)
    assert jsonlite.loads(f"  {text}\n".encode()) == doc


@pytest.mark.parametrize("bad", ["", "   ", "{", "[1,]", "{'a': 1}", "1 2", "nul", "\"abc"])
def test_jsonlite_refuses_what_json_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        jsonlite.loads(bad)


def test_jsonlite_refuses_what_is_not_plain_data() -> None:
    for obj in ({1: "a"}, {"a": object()}, float("nan"), {"a"}):
        with pytest.raises((TypeError, ValueError)):
            jsonlite.dumps(obj)


def test_jsonlite_imports_no_regex_engine() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, dockyard.jsonlite, dockyard.cli.wire, dockyard.cli.fast;"
                          "print(sorted(m for m in ('re', 'json', 'socket', 'http.client', 'enum', 'click') "
                          "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("path", "params"), [
    ("/containers/create", None), ("/containers/create", {"name": "web 1/ä&x=y"}),
    ("/containers/abc/attach", {"stream": 1, "stdout": 1, "stderr": 1, "stdin": None}),
    ("/containers/abc/wait", {"condition": "removed"}), ("/images/a b:c@d/json", {"all": True}),
    ("/containers/json", {"filters": '{"label":["a=b"]}', "names": ["x", "y"]}),
])
def test_targets_are_the_clients(path: str, params: dict[str, Any] | None) -> None:
    assert wire.target(path, params) == request_target(path, params)


# ------------------------------------------------------------------ wire against a real socket
class Server:
    """A unix-socket server answering each connection with ``script(conn, request_bytes)``."""

    def __init__(self, path: str, script: Callable[[socket.socket, bytes], None]) -> None:
        self.path, self.script = path, script
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except OSError:  # the client hung up first
            pass

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                if self.script(conn, head + b"\r\n\r\n" + rest[:length]) is False:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[Server, str]]]:
    servers: list[Server] = []

    def make(script: Callable[[socket.socket, bytes], Any]) -> tuple[Server, str]:
        path = str(tmp_path / f"s{len(servers)}.sock")
        servers.append(Server(path, script))
        return servers[-1], path

    yield make
    for s in servers:
        s.close()


def test_length_chunked_and_keep_alive_on_one_connection(serve: Callable[..., tuple[Server, str]]) -> None:
    def script(conn: socket.socket, req: bytes) -> None:
        if req.startswith(b"POST /v1.41/containers/create"):
            body = b'{"Id":"c1","Warnings":[]}'
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                         b"4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n")

    server, path = serve(script)
    conn = wire.Connection(wire.connect_unix(path, 5))
    resp, raw = conn.request("POST", wire.target("/containers/create", {"name": "x"}), jsonlite.dumps({"Image": "a"}).encode())
    assert (resp.status, resp.headers["content-type"], jsonlite.loads(raw)) == (201, "application/json",
                                                                               {"Id": "c1", "Warnings": []})
    resp, raw = conn.request("GET", wire.target("/x"))
    assert (resp.status, raw, conn.reusable) == (200, b"abcdefg", True)
    conn.close()
    first = server.requests[0]
    assert first.startswith(b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: localhost\r\n")
    assert b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"Image\":\"a\"}" in first
    assert len(server.requests) == 2  # both on the one connection


def test_until_close_bodies_and_early_closes(serve: Callable[..., tuple[Server, str]]) -> None:
    def script(conn: socket.socket, req: bytes) -> bool:
        if b"/short" in req:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        elif b"/nohead" in req:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-")
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        return False

    _server, path = serve(script)
    conn = wire.Connection(wire.connect_unix(path))
    assert conn.request("GET", "/v1.41/x")[1] == b"all of it" and not conn.reusable
    with pytest.raises(wire.WireError):
        wire.Connection(wire.connect_unix(path)).request("GET", "/v1.41/short")
    with pytest.raises(wire.WireError):
        wire.Connection(wire.connect_unix(path)).request("GET", "/v1.41/nohead")
    with pytest.raises(OSError):
        wire.connect_unix(path + ".missing")


def test_upgrade_keeps_the_bytes_that_came_with_the_header(serve: Callable[..., tuple[Server, str]]) -> None:
    got_eof = threading.Event()

    def script(conn: socket.socket, req: bytes) -> bool:
        assert b"Connection: Upgrade\r\nUpgrade: tcp\r\n" in req
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
        if conn.recv(10) == b"":  # the client's half-close
            got_eof.set()
        conn.sendall(b"\x02\x00\x00\x00\x00\x00\x00\x01!")
        return False

    _server, path = serve(script)
    conn = wire.Connection(wire.connect_unix(path, 5))
    conn.send("POST", wire.target("/containers/c/attach", {"stream": 1}), upgrade=True)
    assert conn.head().status == 101
    assert conn.recv(4) == b"\x01\x00\x00\x00"  # buffered bytes first, in pieces
    conn.close_write()
    rest = b""
    while data := conn.recv():
        rest += data
    assert rest == b"\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x01!"
    assert got_eof.is_set()
    conn.close()


def test_json_body_does_not_wait_for_the_end_of_a_chunked_body(serve: Callable[..., tuple[Server, str]]) -> None:
    release = threading.Event()

    def script(conn: socket.socket, req: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"10\r\n{\"StatusCode\": 3\r\n")  # an object split across chunks
        conn.sendall(b"2\r\n}\n\r\n")
        release.wait(10)
        conn.sendall(b"0\r\n\r\n")
        return False

    _server, path = serve(script)
    conn = wire.Connection(wire.connect_unix(path, 5))
    conn.send("POST", "/v1.41/containers/c/wait")
    assert conn.json_body(conn.head()) == {"StatusCode": 3}  # before the final chunk was sent
    release.set()
    conn.close()


# ------------------------------------------------------------------ the records file
def test_the_registrys_records_file_reads_back_without_json(tmp_path: Path) -> None:
    reg = Registry(environ={})
    reg.scan_cached(tmp_path)
    records = entrycache.read(str(tmp_path))
    assert records is not None
    assert {(r["group"], r["name"], r["target"]) for r in records} == {(r.group, r.name, r.target) for r in reg.records}
    assert entrycache.read(str(tmp_path), key="another installation") is None
    (tmp_path / entrycache.FILE).write_text("{not json")
    assert entrycache.read(str(tmp_path)) is None
    assert entrycache.read(str(tmp_path / "missing")) is None


# ------------------------------------------------------------------ dispatch
@pytest.mark.parametrize(("args", "split"), [
    (["run", "--rm", "busybox"], (None, "run", ["--rm", "busybox"])),
    (["-H", "unix:///a", "run", "x"], ("unix:///a", "run", ["x"])),
    (["--host", "/a", "-Hunix:///b", "run"], ("unix:///b", "run", [])),
    (["--host=unix:///c", "ps", "-a"], ("unix:///c", "ps", ["-a"])),
    (["--help"], None), (["-v"], None), (["-H"], None), (["-H", "-x", "run"], None), ([], None),
    (["--debug", "run"], None), (["-H", "unix:///a"], None),
])
def test_split_root(args: list[str], split: Any) -> None:
    assert fast.split_root(args) == split


@pytest.mark.parametrize(("flag", "env"), [
    (None, {}), ("unix:///tmp/a.sock", {}), ("  unix:///tmp/a.sock ", {}), ("/tmp/b.sock", {}),
    ("./rel.sock", {}), (None, {"DOCKYARD_HOST": "unix:///d.sock", "DOCKER_HOST": "tcp://h:1"}),
    (None, {"DOCKYARD_HOST": " ", "DOCKER_HOST": "unix:///e.sock"}), ("", {"DOCKER_HOST": "/f.sock"}),
    ("tcp://127.0.0.1:2375", {}), ("localhost:2375", {}), (None, {"DOCKER_HOST": "tcp://h"}),
    ("npipe:////./pipe/docker_engine", {}), ("unix://", {}), ("http://h:1", {}),
    (None, {"DOCKER_HOST": "unix:///g.sock", "DOCKER_TLS_VERIFY": "1"}),
])
def test_unix_socket_resolves_as_the_client_does(flag: str | None, env: dict[str, str]) -> None:
    try:
        addr = resolve_address(flag, env)
    except Exception:  # noqa: BLE001 - a malformed address: the normal path reports it
        addr = None
    expected = addr.path if addr is not None and addr.scheme == "unix" else None
    assert fast.unix_socket(flag, env) == expected
    if addr is not None:
        assert fast.daemon_text(flag, env) == str(addr)


FAST_MODULE = '''
import sys
CALLS = []

def dockyard_fast_main(command, args, host):
    if args == ["decline"]:
        return None
    sys.stdout.write(f"fast {command} {args} {host}\\n")
    return 7

def __getattr__(name):
    if name == "hello":
        import click

        @click.command(context_settings={"ignore_unknown_options": True})
        @click.argument("rest", nargs=-1)
        def hello(rest):
            click.echo(f"slow {list(rest)}")
        return hello
    raise AttributeError(name)
'''


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("DOCKYARD_NO_FAST", raising=False)
    monkeypatch.delenv("DOCKYARD_DISABLE_PLUGINS", raising=False)
    return home


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from dockyard.cli.main import main

    code = main(args)
    return code, capsys.readouterr().out


def test_dispatch_follows_installs_and_uninstalls(make_dist: Callable[..., Any], cache_home: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dist = make_dist("dockyard-cli-hellofast", {"dockyard.cli": {"hello": "hellofast_cli:hello"}},
                     {"hellofast_cli": FAST_MODULE})
    assert fast.dispatch(["hello", "a"]) is None  # no records file yet: the normal path
    assert _main(["hello", "a"], capsys) == (0, "slow ['a']\n")  # which writes it
    assert _main(["-H", "unix:///x", "hello", "a"], capsys) == (7, "fast hello ['a'] unix:///x\n")
    assert _main(["hello", "decline"], capsys) == (0, "slow ['decline']\n")
    monkeypatch.setenv("DOCKYARD_NO_FAST", "1")
    assert _main(["hello", "a"], capsys) == (0, "slow ['a']\n")
    monkeypatch.delenv("DOCKYARD_NO_FAST")
    monkeypatch.setenv("DOCKYARD_DISABLE_PLUGINS", "dockyard-cli-hellofast")
    assert fast.dispatch(["hello", "a"]) is None
    monkeypatch.delenv("DOCKYARD_DISABLE_PLUGINS")
    # a second distribution with the same command: the key changes, and then it is a conflict
    make_dist("dockyard-cli-hello2", {"dockyard.cli": {"hello": "hellofast_cli:hello"}}, {})
    assert fast.dispatch(["hello", "a"]) is None
    from dockyard.cli.root import _registry

    _registry()  # rescans and rewrites the records file
    assert fast.dispatch(["hello", "a"]) is None  # two providers: the normal path reports the conflict
    shutil.rmtree(next(dist.root.glob("dockyard_cli_hello2-*.dist-info")))
    assert fast.dispatch(["hello", "a"]) is None  # stale again
    _registry()
    assert fast.dispatch(["hello", "a"]) == 7
    shutil.rmtree(next(dist.root.glob("dockyard_cli_hellofast-*.dist-info")))
    assert fast.dispatch(["hello", "a"]) is None  # uninstalled


def test_dispatch_ignores_builtins_and_modules_without_a_fast_main(make_dist: Callable[..., Any], cache_home: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    make_dist("dockyard-cli-plain", {"dockyard.cli": {"plain": "plain_cli:plain", "broken": "no_such_mod:x"}},
              {"plain_cli": "import click\n@click.command()\ndef plain():\n    click.echo('plain')\n"})
    from dockyard.cli.root import _registry

    _registry()
    assert os.path.exists(os.path.join(entrycache.cache_dir(), entrycache.FILE))
    assert fast.dispatch(["plain"]) is None
    assert fast.dispatch(["broken"]) is None
    assert fast.dispatch(["version"]) is None
    assert fast.dispatch(["nosuchcommand"]) is None


def test_path_entries_without_distributions_do_not_change_the_key(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = entrycache.installation_key()
    monkeypatch.syspath_prepend(str(tmp_path))  # a script's directory, or a current one
    assert entrycache.installation_key() == before
    (tmp_path / "some_dist-1.0.dist-info").mkdir()
    assert entrycache.installation_key() != before


@pytest.mark.parametrize(("thread", "want"), [(False, (3, "out", "err")), (True, (4, "outlate", "err"))])
def test_end_now_flushes_then_ends_unless_a_thread_still_runs(thread: bool, want: tuple[int, str, str]) -> None:
    """A fast-path command ends at once with its status, its unflushed output written; with a
    ``threading`` thread still running it leaves the end to the interpreter, which waits."""
    import subprocess
    import sys

    code = ("import sys, threading, time\n"
            "from dockyard.cli.main import end_now\n"
            f"if {thread}:\n"
            "    threading.Thread(target=lambda: (time.sleep(0.1), sys.stdout.write('late'))).start()\n"
            "sys.stdout.write('out'); sys.stderr.write('err')\n"
            "end_now(3)\n"
            "sys.exit(4)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == want
