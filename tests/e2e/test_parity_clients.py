"""Docker parity that real clients show (issue 21, items 6-9): exec framing and detach keys,
client hang-ups mid-stream, the swarm-mode and plugin endpoints clients probe, RepoTags order,
``docker diff`` around the engine's /etc files, and the build's ``--add-host`` and
``--cache-from``. One daemon for the module; the docker CLI 28 and docker-py 7 drive it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for

docker = pytest.importorskip("docker")
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]


@pytest.fixture(scope="module")
def d(e2e_daemon: Callable[..., AbstractContextManager[Daemon]]) -> Iterator[Daemon]:
    with e2e_daemon("dyq", clean_log=True) as daemon:
        yield daemon


# ----------------------------------------------------------------------------- 6. exec, hang-ups
def test_exec_output_framed_by_the_start_requests_tty(client: docker.DockerClient) -> None:
    """dockerd frames by the start request's ``Tty``; the create's only gives the process a pty."""
    c = client.containers.run("busybox", "sleep 60", detach=True)
    try:
        api = client.api
        pty_framed = api.exec_create(c.id, "tty", tty=True)
        assert api.exec_start(pty_framed["Id"], tty=False).startswith(b"/dev/pts/")  # demuxed frames
        pipe_raw = api.exec_create(c.id, ["sh", "-c", "tty; echo err >&2"], tty=False)
        assert api.exec_start(pipe_raw["Id"], tty=True) == b"not a tty\nerr\n"  # raw bytes, no headers
        assert c.exec_run("sh -c 'echo out; echo err >&2'", demux=True).output == (b"out\n", b"err\n")
    finally:
        c.remove(force=True)


def _exec_hijack(path: str, exec_id: str, tty: bool) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    body = json.dumps({"Detach": False, "Tty": tty}).encode()
    s.sendall(b"POST /v1.41/exec/%s/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (exec_id.encode(), len(body), body))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_exec_detach_keys(d: Daemon, client: docker.DockerClient) -> None:
    """The exec's ``DetachKeys`` (and ctrl-p ctrl-q by default) end the session and leave the
    process running; bytes before them reach it. (The docker CLI also spots the keys itself.)"""
    c = client.containers.run("busybox", "sleep 60", detach=True)
    try:
        for keys, seq, tty in (("ctrl-x,y", b"\x18y", True), ("", b"\x10\x11", False)):
            r = client.api._post_json(client.api._url("/containers/{0}/exec", c.id), data={  # noqa: SLF001
                "Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True, "Tty": tty, "DetachKeys": keys})
            eid = r.json()["Id"]
            s = _exec_hijack(str(d.socket), eid, tty)
            s.settimeout(10)
            s.sendall(b"hi\n")
            got = b""
            while b"hi" not in got:
                got += s.recv(4096)
            s.sendall(seq)
            while s.recv(4096):  # the server closes the session
                pass
            s.close()
            if tty:
                # With a TTY the process keeps its terminal and runs on, as in dockerd. Without
                # one, dockerd closes the process's stdin when the attached copy ends
                # (CopyStreams' CloseStdin for non-TTY execs), so `cat` ends there too.
                assert client.api.exec_inspect(eid)["Running"] is True
    finally:
        c.remove(force=True)


def test_client_hang_up_mid_stream_is_quiet(d: Daemon) -> None:
    """A client gone mid-stream (archive, logs, build output) is a normal end: no traceback."""
    line = "x" * 98
    d.docker("run", "-d", "--name", "chatty", "busybox", "sh", "-c", f"yes {line} | head -n 50000; sleep 60")
    wait_for(lambda: d.docker("logs", "--tail", "1", "chatty").stdout == line + "\n", 20, "the log to fill")
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.root / "docker-config")}
    for cmd in ("docker cp chatty:/bin - | head -c 1000", "docker logs -f chatty | head -c 1000",
                "docker logs chatty | head -c 1000"):
        subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, timeout=60)
    ctx = d.root / "ctx-chatty"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN for i in $(seq 200); do echo line $i; sleep 0.05; done\n")
    build = subprocess.Popen(["docker", "build", "--no-cache", str(ctx)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    assert build.stdout is not None
    while b"line 2" not in build.stdout.readline():
        pass
    build.kill()
    build.wait()
    # the build stops at its next write; its container is removed
    wait_for(lambda: d.docker("ps", "-aq", "--filter", "ancestor=busybox").stdout.split()
             == d.docker("ps", "-aq", "--filter", "name=chatty").stdout.split(), 30, "the build's container to go")
    d.docker("rm", "-f", "chatty")
    time.sleep(0.2)
    assert "Traceback" not in d.log, d.log[-3000:]


# ----------------------------------------------------------------------------- 7. endpoints clients probe
def test_swarm_mode_endpoints_answer_not_a_manager(d: Daemon, client: docker.DockerClient) -> None:
    for call in (client.nodes.list, client.services.list, client.api.tasks, client.secrets.list,
                 client.configs.list, client.api.inspect_swarm):
        with pytest.raises(docker.errors.APIError) as info:
            call()
        assert info.value.status_code == 503 and "This node is not a swarm manager" in str(info.value)
    res = d.docker("service", "ls", check=False)
    assert res.returncode == 1 and "This node is not a swarm manager" in res.stderr
    assert "not part of a swarm" in d.docker("swarm", "leave", check=False).stderr
    assert client.plugins.list() == []
    assert d.docker("plugin", "ls", "-q").stdout == ""
    with pytest.raises(docker.errors.NotFound):
        client.plugins.get("vieux/sshfs:latest")


# ----------------------------------------------------------------------------- 8. images, diff
def test_repo_tags_in_dockerds_order(d: Daemon, client: docker.DockerClient) -> None:
    """Lexical by the full normalized reference: docker.io/library/aaa:1 < ...busybox:latest <
    docker.io/zzz/a:1 < localhost:5000/b:1 (clients take the first)."""
    for tag in ("zzz/a:1", "localhost:5000/b:1", "aaa:1"):
        d.docker("tag", "busybox", tag)
    try:
        want = ["aaa:1", "busybox:latest", "zzz/a:1", "localhost:5000/b:1"]
        assert client.images.get("busybox").tags == want
        assert json.loads(d.docker("inspect", "-f", "{{json .RepoTags}}", "busybox").stdout) == want
        listed = client.api.images(name="busybox")[0]["RepoTags"]
        assert listed == ["busybox:latest"]  # the filter keeps the matching tag
    finally:
        d.docker("rmi", "zzz/a:1", "localhost:5000/b:1", "aaa:1")


def test_diff_does_not_list_the_engines_etc_files(d: Daemon) -> None:
    d.docker("run", "--name", "nodiff", "busybox", "true")
    d.docker("run", "--name", "etcdiff", "busybox", "touch", "/etc/x")
    try:
        assert d.docker("diff", "nodiff").stdout == ""
        assert d.docker("diff", "etcdiff").stdout == "C /etc\nA /etc/x\n"
    finally:
        d.docker("rm", "nodiff", "etcdiff")


# ----------------------------------------------------------------------------- 9. build
def test_build_add_host_reaches_run_steps(d: Daemon) -> None:
    ctx = d.root / "ctx-hosts"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN grep -E 'foo|bar' /etc/hosts\n")
    out = d.docker("build", "--no-cache", "--add-host", "foo:10.1.2.3", "--add-host", "bar=10.9.9.9",
                   str(ctx)).stdout
    assert "10.1.2.3\tfoo" in out and "10.9.9.9\tbar" in out


def test_build_cache_from_an_image_without_local_cache(d: Daemon, client: docker.DockerClient) -> None:
    """The source image arrives by ``docker load`` (no build cache of its own here): with
    ``--cache-from`` every step is served from its history and the result is that image."""
    ctx = d.root / "ctx-cache"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nENV A=1\nWORKDIR /w\n"
                                    "COPY Dockerfile /w/\nRUN echo two > /two\n")
    source = d.docker("build", "-q", "-t", "cachesrc:1", str(ctx)).stdout.strip()
    tar = d.root / "cachesrc.tar"
    d.docker("save", "-o", str(tar), "busybox", "cachesrc:1")
    d.docker("image", "prune", "-a", "-f")  # the source, its intermediate images and busybox go
    d.docker("load", "-i", str(tar))
    out = d.docker("build", "--cache-from", "cachesrc:1", "-t", "cached", str(ctx)).stdout
    assert out.count("Using cache") == 5, out
    assert client.images.get("cached").id == source
    _ids, logs = client.images.build(path=str(ctx), cache_from=["cachesrc:1"], tag="cached-py")
    assert sum("Using cache" in (x.get("stream") or "") for x in logs) == 5
    d.docker("rmi", "cached", "cached-py", "cachesrc:1")


# ----------------------------------------------------------------------------- 13. bounded memory, logs
def test_logs_tail_reads_from_the_end(d: Daemon) -> None:
    """``--tail 2`` of a 200,000-line log reads its end, not all of it (dockerd: 0.02 s)."""
    d.docker("run", "--name", "long", "busybox", "sh", "-c", f"yes {'y' * 99} | head -n 200000; echo last")
    try:
        started = time.monotonic()
        assert d.docker("logs", "--tail", "2", "long").stdout == "y" * 99 + "\nlast\n"
        took = time.monotonic() - started  # ~0.1 s with the CLI's start; reading all of it took 48 s
        assert took < 3.0, f"logs --tail 2 took {took:.2f} s"
        assert d.docker("logs", "--tail", "0", "long").stdout == ""
    finally:
        d.docker("rm", "long")


def test_logs_rotate_with_max_file(d: Daemon) -> None:
    """``--log-opt max-size=10k --log-opt max-file=3``: the log rolls over into three files,
    the oldest dropped, as json-file does; a follower sees every line in order."""
    script = ("for i in $(seq 2000); do echo line $i 01234567890123456789012345678901234567890123456789; "
              "[ $((i % 50)) = 0 ] && sleep 0.02; done; true")
    cid = d.docker("run", "-d", "--log-opt", "max-size=10k", "--log-opt", "max-file=3", "busybox", "sh", "-c",
                   script).stdout.strip()
    try:
        followed = d.docker("logs", "-f", cid).stdout.splitlines()
        assert [int(line.split()[1]) for line in followed] == list(range(1, 2001))
        kept = d.docker("logs", cid).stdout.splitlines()
        numbers = [int(line.split()[1]) for line in kept]
        assert numbers == list(range(numbers[0], 2001)) and 1 < numbers[0] < 2000 - 100
        assert len(kept) * 62 < 3 * 10240 * 2  # three files of about max-size, not one file of everything
        assert d.docker("logs", "--tail", "300", cid).stdout.splitlines() == kept[-300:]  # across files
    finally:
        d.docker("rm", "-f", cid)


def test_event_history_keeps_no_huge_values(d: Daemon, client: docker.DockerClient) -> None:
    """A label of megabytes reaches the live event stream whole but is kept shortened for
    replays (the history is bounded in bytes, not only in count)."""
    since = time.time()
    c = client.containers.create("busybox", "true", labels={"huge": "h" * (2 << 20)}, name="huge-label")
    try:
        events = list(client.events(since=since, until=time.time() + 1, decode=True,
                                    filters={"container": "huge-label", "event": "create"}))
        assert len(events) == 1
        kept = events[0]["Actor"]["Attributes"]["huge"]
        assert kept.startswith("hhhh") and len(kept) <= 4096 + 3
        assert len(client.containers.list(all=True, filters={"name": "huge-label"})[0].labels["huge"]) == 2 << 20
    finally:
        c.remove()
