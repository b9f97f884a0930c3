"""The real docker CLI 28 against dockyardd: the ``docker run`` sequences and the container
commands of issue 5's "Done when" list. One daemon serves the whole module; at the end it is
stopped and nothing it made may be left (processes, mounts, cgroups, namespaces, links)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, owner_of, purge_owned, stays, wait_for

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")


def leftovers(root: Path, owner: str) -> list[str]:
    """Processes, mounts, cgroups and network objects the daemon at ``root`` left behind."""
    found = []
    needle = str(root).encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(f"pid {pid}")
            except OSError:
                pass
    with open("/proc/self/mountinfo") as fh:
        found += ["mount " + line.split()[4] for line in fh if str(root) in line]
    for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirs if owner in d]
        dirs[:] = [d for d in dirs if owner not in d]
    netns = root / "run" / "netns"
    if netns.exists():
        found += [f"netns {p}" for p in netns.iterdir()]
    return found + sdk_net.leftovers(owner)


def bootstrap(d: Daemon) -> None:
    d.dockyard("image", "bootstrap", "busybox")


def stop_and_check(d: Daemon, find_leftovers: Callable[[Path, str], list[str]] = leftovers) -> None:
    """Remove every container, stop the daemon, delete the built-in bridge (it outlives the
    daemon, as docker0 does) and require that nothing else is left (``find_leftovers(root,
    owner)``: :func:`leftovers` unless the caller looks for more, or less)."""
    ids = d.docker("ps", "-aq").stdout.split()
    if ids:
        d.docker("rm", "-f", "-v", *ids)
    bridge = d.docker("network", "inspect", "bridge", "--format", "{{.Id}}", check=False).stdout.strip()
    owner = owner_of(d.root)
    assert d.stop() == 0, d.log[-3000:]
    if bridge:
        from dockyard_network_bridge.names import bridge_name

        name = bridge_name(owner, bridge)
        purge_owned(name)  # the built-in bridge alone: anything else left is a leak
    left = find_leftovers(d.root, owner)
    assert not left, f"left behind: {left}"


@pytest.fixture(scope="module")
def d(e2e_daemon: Callable[..., AbstractContextManager[Daemon]]) -> Iterator[Daemon]:
    with e2e_daemon("dye") as daemon:
        yield daemon


def wait_until(check, what: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    wait_for(check, timeout, what)


# ------------------------------------------------------------------------------ docker run
def test_run_sequences(d: Daemon) -> None:
    out = d.docker("run", "--rm", "busybox", "echo", "hi")
    assert out.stdout == "hi\n"
    assert d.docker("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    res = d.docker("run", "--name", "x3", "busybox", "sh", "-c", "echo err >&2; exit 3", check=False)
    assert res.returncode == 3 and res.stderr == "err\n"
    assert d.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "x3").stdout == "3 exited\n"
    piped = d.docker("run", "-i", "--rm", "busybox", "cat", input=b"hi\nthere\n")
    assert piped.stdout == "hi\nthere\n"
    assert d.docker("ps", "-aq", "--filter", "ancestor=busybox").stdout.split() == [
        d.docker("inspect", "-f", "{{.Id}}", "x3").stdout.strip()[:12]]  # --rm ones are gone
    missing = d.docker("run", "--rm", "busybox", "/no/such/cmd", check=False)
    assert missing.returncode == 127
    events = d.past_events("1m", "container=x3")
    assert "container die" in events and "exitCode=3" in events and "name=x3" in events


#: What dockerd 28 (runc 1.2) answers to the start of ``busybox /no/such`` and ``busybox /etc/passwd``.
SHIM = ("failed to create task for container: failed to create shim task: OCI runtime create failed: runc create "
        "failed: unable to start container process: error during container init: ")
NO_SUCH = SHIM + 'exec: "/no/such": stat /no/such: no such file or directory: unknown'
NOT_EXECUTABLE = SHIM + 'exec: "/etc/passwd": permission denied: unknown'
EXEC_NO_SUCH = ('OCI runtime exec failed: exec failed: unable to start container process: exec: "/no/such": '
                "stat /no/such: no such file or directory: unknown\r\n")


def test_a_command_that_cannot_start_as_with_dockerd(d: Daemon) -> None:
    """``run`` of a missing or not executable command: dockerd's start error, so the docker CLI
    exits 127 / 126 as against dockerd, and so does ours (click and fast path, -d too); the
    container stays created with that exit code, or is removed with --rm. ``start`` prints the
    daemon's error alone (the attach ends silently); ``exec`` reports 127 through ExitCode."""
    res = d.docker("run", "--rm", "busybox", "/no/such", check=False)
    assert (res.returncode, res.stdout) == (127, "")
    assert res.stderr == f"docker: Error response from daemon: {NO_SUCH}\n\nRun 'docker run --help' for more information\n"
    res = d.docker("run", "--name", "noexec", "busybox", "/etc/passwd", check=False)
    assert (res.returncode, res.stderr.split("\n")[0]) == (126, f"docker: Error response from daemon: {NOT_EXECUTABLE}")
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}", "noexec").stdout == (
        f"created 126 {NOT_EXECUTABLE}\n")
    for env in ({"DOCKYARD_NO_FAST": "1"}, {}):  # click first: it writes the records the fast path reads
        for args, code, says in ((["--rm", "busybox", "/no/such"], 127, NO_SUCH),
                                 (["-d", "--rm", "busybox", "/no/such"], 127, NO_SUCH),
                                 (["--name", f"noexec{len(env)}", "busybox", "/etc/passwd"], 126, NOT_EXECUTABLE)):
            res = d.dockyard("run", *args, check=False, env=env)
            assert (res.returncode, res.stdout, res.stderr) == (code, "", f"Error: {says}\n"), (env, args)
    left = d.docker("ps", "-a", "--format", "{{.Names}} {{.Command}}").stdout.split("\n")
    assert sorted(line for line in left if "/no/such" in line or "passwd" in line) == [
        'noexec "/etc/passwd"', 'noexec0 "/etc/passwd"', 'noexec1 "/etc/passwd"']  # --rm ones are gone
    d.docker("create", "--name", "later-missing", "busybox", "/no/such")
    for args in (["start"], ["start", "-a"]):
        res = d.docker(*args, "later-missing", check=False)
        tail = "Error: failed to start containers: later-missing\n" if args == ["start"] else ""
        assert (res.returncode, res.stdout, res.stderr) == (1, "", f"Error response from daemon: {NO_SUCH}\n{tail}")
    d.docker("run", "-d", "--name", "ex-missing", "busybox", "sleep", "60")
    res = d.docker("exec", "ex-missing", "/no/such", check=False)
    assert (res.returncode, res.stdout) == (127, EXEC_NO_SUCH)
    assert d.docker("exec", "ex-missing", "/etc/passwd", check=False).returncode == 126
    res = d.docker("exec", "-t", "ex-missing", "bash", check=False)  # conmon gives no reason with a terminal
    assert (res.returncode, res.stdout) == (127, 'OCI runtime exec failed: exec failed: unable to start container '
                                                 'process: exec: "bash": executable file not found in $PATH: unknown\r\n')
    assert d.dockyard("exec", "ex-missing", "/no/such", check=False).returncode == 127
    d.docker("rm", "-f", "noexec", "noexec0", "noexec1", "later-missing", "ex-missing")


def _cli_process(d: Daemon, tool: str, *args: str) -> subprocess.Popen[bytes]:
    """``docker run ...`` or ``dockyard run ...`` (``dockyard-click``: without the fast path)
    against ``d``, running in the background."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    if tool == "docker":
        env["DOCKER_CONFIG"] = str(d.root / "docker-config")
        argv = [shutil.which("docker") or "docker", "-H", d.host, "run", *args]
    else:
        if tool == "dockyard-click":
            env["DOCKYARD_NO_FAST"] = "1"
        argv = [str(Path(sys.executable).parent / "dockyard"), "-H", d.host, "run", *args]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("tool", ["docker", "dockyard-click", "dockyard"])
@pytest.mark.parametrize("proxy", [True, False], ids=["sig-proxy", "sig-proxy=false"])
def test_sig_proxy_as_with_docker(d: Daemon, tool: str, proxy: bool) -> None:
    """Without ``--sig-proxy=false`` a SIGTERM to the CLI reaches the container (its trap's exit
    status comes back); with it nothing is forwarded, two SIGINT/SIGTERMs leave the CLI running
    and the third ends it (docker 28's line, status 1) while the container runs on."""
    import signal

    name = f"sp-{tool}-{proxy}".lower()
    trap = "trap 'echo got; exit 5' TERM INT; echo ready; sleep 30 & wait"
    proc = _cli_process(d, tool, *([] if proxy else ["--sig-proxy=false"]), "--name", name, "busybox", "sh", "-c",
                        trap)
    running = lambda: d.docker("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"  # noqa: E731
    try:
        wait_until(lambda: "ready" in d.docker("logs", name, check=False).stdout, f"{name}: trap installed")
        proc.send_signal(signal.SIGTERM)
        if proxy:
            out, err = proc.communicate(timeout=30)
            assert (proc.returncode, out, err) == (5, b"ready\ngot\n", b"")
        else:
            stays(lambda: proc.poll() is None and running(), 0.5, "the CLI and its container run on")
            proc.send_signal(signal.SIGINT)
            stays(lambda: proc.poll() is None, 0.3, "the CLI runs on after a second signal")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert (proc.returncode, out, err) == (1, b"ready\n", b"\ngot 3 SIGTERM/SIGINTs, forcefully exiting\n")
            assert running()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        d.docker("rm", "-f", name)



@pytest.mark.parametrize("tool", ["docker", "dockyard-click", "dockyard"])
def test_a_closed_output_pipe_ends_the_cli_quietly(d: Daemon, tool: str) -> None:
    """``docker run ... | head -1``: when the reader goes, docker 28's next write fails and it
    ends with the write's error and status 1, the container running on; ours too (the fast path
    printed a traceback, the click path said nothing), and the --rm container goes at its exit."""
    name = f"pipe-{tool}"
    loop = "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); sleep 0.02; done"
    proc = _cli_process(d, tool, "--rm", "--name", name, "busybox", "sh", "-c", loop)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"line0\n"
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (1, b"write /dev/stdout: broken pipe\n")  # as docker 28
    wait_until(lambda: d.docker("inspect", name, check=False).returncode == 1, f"{name} removed")

def test_detached_rm_removes_the_container_when_it_exits(d: Daemon) -> None:
    for run in (d.docker, d.dockyard):
        name = f"drm-{run.__name__}"
        cid = run("run", "-d", "--rm", "--name", name, "busybox", "sh", "-c", "sleep 0.2").stdout.strip()
        assert len(cid) == 64
        wait_until(lambda: d.docker("inspect", name, check=False).returncode == 1, f"{name} removed")  # noqa: B023


def test_detached_logs_follow_and_tail(d: Daemon) -> None:
    cid = d.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                   "for i in 1 2 3 4 5; do echo tick$i; sleep 0.2; done").stdout.strip()
    assert len(cid) == 64
    follow = d.docker("logs", "-f", "ticker")  # ends when the container exits
    assert follow.stdout == "".join(f"tick{i}\n" for i in range(1, 6))
    assert d.docker("logs", "--tail", "2", "ticker").stdout == "tick4\ntick5\n"
    stamped = d.docker("logs", "-t", "--tail", "1", "ticker").stdout
    assert stamped.endswith("Z tick5\n") and len(stamped.split(" ")[0]) == 30
    assert d.docker("wait", "ticker").stdout == "0\n"


def test_exec_exit_codes(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "ex", "busybox", "sleep", "60")
    res = d.docker("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (5, "out\n", "err\n")
    assert d.docker("exec", "-i", "ex", "cat", input=b"via-stdin\n").stdout == "via-stdin\n"
    assert d.docker("exec", "ex", "nosuchcommand", check=False).returncode == 127  # dockerd 28 (20.10: 126)
    d.docker("exec", "-d", "ex", "touch", "/tmp/detached")
    wait_until(lambda: d.docker("exec", "ex", "test", "-f", "/tmp/detached", check=False).returncode == 0,
               "detached exec ran")
    d.docker("rm", "-f", "ex")


def test_stop_and_kill_reach_a_trap(d: Daemon) -> None:
    trap = "trap 'echo got-{sig}; exit 42' {sig}; echo ready; while true; do sleep 0.1; done"
    d.docker("run", "-d", "--name", "trap-term", "busybox", "sh", "-c", trap.format(sig="TERM"))
    d.docker("run", "-d", "--name", "trap-usr1", "busybox", "sh", "-c", trap.format(sig="USR1"))
    wait_until(lambda: "ready" in d.docker("logs", "trap-term").stdout, "trap installed")
    wait_until(lambda: "ready" in d.docker("logs", "trap-usr1").stdout, "trap installed")
    assert d.docker("stop", "trap-term").stdout == "trap-term\n"
    assert "got-TERM" in d.docker("logs", "trap-term").stdout
    assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "trap-term").stdout == "42\n"
    d.docker("kill", "-s", "USR1", "trap-usr1")
    assert d.docker("wait", "trap-usr1").stdout == "42\n"
    assert "got-USR1" in d.docker("logs", "trap-usr1").stdout
    again = d.docker("kill", "trap-usr1", check=False)
    assert again.returncode == 1 and "is not running" in again.stderr
    assert d.docker("stop", "trap-usr1").returncode == 0  # 304: the CLI still succeeds
    d.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "60")
    d.docker("kill", "sleeper")
    assert d.docker("wait", "sleeper").stdout == "137\n"


def test_restart_policy_counts(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    wait_until(lambda: d.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").stdout
               == "2 exited\n", "two restarts then exited")
    assert d.docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "flaky").stdout == "on-failure\n"
    d.docker("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
    wait_until(lambda: int(d.docker("inspect", "-f", "{{.RestartCount}}", "always").stdout) >= 2, "always restarts")
    d.docker("stop", "always")
    count = d.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "always").stdout.split()
    assert count[1] == "exited"
    # a stop is final: no restart comes (no event marks "never", so the window is explicit)
    stays(lambda: d.docker("inspect", "-f", "{{.State.Status}}", "always").stdout == "exited\n", 0.5,
          "the stopped 'always' container stays exited")


def test_pause_top_stats_rename_and_conflicts(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "p1", "--label", "tier=web", "busybox", "sleep", "60")
    d.docker("pause", "p1")
    assert d.docker("ps", "--filter", "status=paused", "--format", "{{.Names}}").stdout == "p1\n"
    again = d.docker("pause", "p1", check=False)
    assert again.returncode == 1 and "already paused" in again.stderr
    d.docker("unpause", "p1")
    assert d.docker("unpause", "p1", check=False).returncode == 1
    top = d.docker("top", "p1").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "sleep 60" in top[1]
    assert "sleep" in d.docker("top", "p1", "-o", "pid,comm").stdout
    stats = d.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "p1").stdout
    assert stats == "p1 1\n"
    dup = d.docker("run", "-d", "--name", "p1", "busybox", "true", check=False)
    assert dup.returncode == 125 and 'The container name "/p1" is already in use' in dup.stderr
    rm = d.docker("rm", "p1", check=False)
    assert rm.returncode == 1 and "You cannot remove a running container" in rm.stderr
    d.docker("rename", "p1", "p2")
    assert d.docker("ps", "--filter", "label=tier=web", "--format", "{{.Names}}").stdout == "p2\n"
    assert d.docker("ps", "--filter", "name=p1", "-q").stdout == ""
    d.docker("rm", "-f", "p2")
    assert d.docker("inspect", "p2", check=False).returncode == 1


def test_cp_both_ways_and_inspect(d: Daemon, tmp_path: Path) -> None:
    d.docker("run", "-d", "--name", "files", "-e", "FOO=bar", "busybox", "sleep", "60")
    src = tmp_path / "hostfile.txt"
    src.write_text("from the host\n")
    d.docker("cp", str(src), "files:/tmp/")
    d.docker("cp", str(src), "files:/tmp/renamed.txt")
    assert d.docker("exec", "files", "cat", "/tmp/hostfile.txt", "/tmp/renamed.txt").stdout == "from the host\n" * 2
    d.docker("exec", "files", "sh", "-c", "mkdir -p /data/sub && echo inside > /data/sub/f")
    d.docker("cp", "files:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "f").read_text() == "inside\n"
    d.docker("cp", "files:/etc/hostname", str(tmp_path / "hn"))
    assert (tmp_path / "hn").read_text().strip() == d.docker("exec", "files", "hostname").stdout.strip()
    missing = d.docker("cp", "files:/nonexistent", str(tmp_path), check=False)
    assert missing.returncode == 1 and "Could not find the file /nonexistent" in missing.stderr
    (info,) = json.loads(d.docker("inspect", "files").stdout)
    assert info["Name"] == "/files" and info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["Config"]["Image"] == "busybox" and "FOO=bar" in info["Config"]["Env"]
    assert info["Config"]["Cmd"] == ["sleep", "60"] and info["Config"]["Hostname"] == info["Id"][:12]
    assert info["Image"].startswith("sha256:") and info["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert "Health" not in info["State"]
    d.docker("rm", "-f", "files")


def test_memory_limit_in_the_cgroup_and_update(d: Daemon) -> None:
    script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
    assert d.docker("run", "--rm", "--memory", "64m", "busybox", "sh", "-c", script).stdout == "67108864\n"
    d.docker("run", "-d", "--name", "upd", "--memory", "64m", "busybox", "sleep", "60")
    d.docker("update", "--memory", "32m", "--memory-swap", "64m", "upd")
    assert d.docker("exec", "upd", "sh", "-c", script).stdout == "33554432\n"
    assert d.docker("inspect", "-f", "{{.HostConfig.Memory}}", "upd").stdout == "33554432\n"
    first = d.docker("ps", "-q", "--filter", "name=upd").stdout.strip()
    d.docker("run", "-d", "--name", "upd2", "busybox", "sleep", "60")
    assert d.docker("ps", "-q", "--filter", "since=upd").stdout.split() == [
        d.docker("ps", "-q", "--filter", "name=upd2").stdout.strip()]
    assert d.docker("ps", "-q", "--filter", "before=upd2").stdout.split() == [first]
    d.docker("rm", "-f", "upd", "upd2")


def test_health_transitions(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
             "--health-retries", "1", "busybox", "sleep", "60")
    status = lambda: d.docker("inspect", "-f", "{{.State.Health.Status}}", "hc").stdout.strip()  # noqa: E731
    wait_until(lambda: status() == "unhealthy", "unhealthy")
    d.docker("exec", "hc", "touch", "/tmp/ok")
    wait_until(lambda: status() == "healthy", "healthy")
    assert "(healthy)" in d.docker("ps", "--filter", "name=hc", "--format", "{{.Status}}").stdout
    events = d.past_events("1m", "container=hc")
    assert "health_status: unhealthy" in events and "health_status: healthy" in events
    d.docker("rm", "-f", "hc")


def test_dockyard_cli_run(d: Daemon) -> None:
    assert d.dockyard("run", "--rm", "busybox", "true").returncode == 0
    assert d.dockyard("run", "--rm", "busybox", "sh", "-c", "echo hi; exit 4", check=False).returncode == 4
    res = d.dockyard("run", "--rm", "busybox", "echo", "hello")
    assert res.stdout == "hello\n"
    d.dockyard("run", "-d", "--name", "dy1", "busybox", "sleep", "60")
    assert d.dockyard("exec", "dy1", "sh", "-c", "exit 6", check=False).returncode == 6
    assert "dy1" in d.dockyard("ps").stdout
    assert d.dockyard("inspect", "-f", "State.Status", "dy1").stdout == "running\n"
    d.dockyard("rm", "-f", "dy1")


def test_tty_start_attach_export_commit(d: Daemon, tmp_path: Path) -> None:
    tty = d.docker("run", "-t", "--rm", "busybox", "echo", "tty")
    assert tty.stdout == "tty\r\n"  # raw pty bytes, no frames
    d.docker("create", "--name", "later", "busybox", "sh", "-c", "echo started; exit 9")
    res = d.docker("start", "-a", "later", check=False)
    assert (res.returncode, res.stdout) == (9, "started\n")
    since = time.time()
    d.docker("start", "later")
    assert d.docker("wait", "later").stdout == "9\n"
    assert d.docker("logs", "later").stdout == "started\nstarted\n"
    assert d.docker("logs", "--since", f"{since:.3f}", "later").stdout == "started\n"
    d.docker("run", "--name", "fs", "busybox", "sh", "-c", "echo made > /made.txt")
    d.docker("export", "-o", str(tmp_path / "fs.tar"), "fs")
    import tarfile

    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = tf.getnames()
    assert "made.txt" in names and "bin/busybox" in names
    image_id = d.docker("commit", "-c", "ENV CAPV=1", "fs", "committed:1").stdout.strip()
    assert image_id.startswith("sha256:")
    assert d.docker("run", "--rm", "committed:1", "sh", "-c", "cat /made.txt; echo $CAPV").stdout == "made\n1\n"
    d.docker("rm", "later", "fs")
    d.docker("rmi", "committed:1")


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_interactive_tty_with_resize(d: Daemon) -> None:
    """``docker run -it`` inside a 30x100 terminal: ConsoleSize, then a resize to the same size;
    the process sees it, its exit code comes back through the wait body."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(d.root / "docker-config")
    cmd = (f"stty rows 30 cols 100; {shutil.which('docker')} -H {d.host} run -it --rm busybox "
           "sh -c 'stty size; exit 3'")
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert "30 100" in res.stdout and res.returncode == 3, (res.stdout, res.stderr)
    d.docker("run", "-d", "-t", "--name", "tty", "busybox", "sleep", "60")
    import docker as docker_py

    client = docker_py.APIClient(base_url=d.host)
    client.resize("tty", height=40, width=120)
    assert d.docker("exec", "tty", "stty", "-F", "/dev/console", "size").stdout == "40 120\n"
    assert "container resize" in d.past_events("1m", "container=tty")
    d.docker("rm", "-f", "tty")


def test_diff_lists_the_changes(d: Daemon) -> None:
    d.docker("run", "--name", "df", "busybox", "sh", "-c", "echo a > /newfile; echo b >> /etc/passwd; rm /bin/true")
    changes = d.docker("diff", "df").stdout.splitlines()
    assert {"A /newfile", "C /etc/passwd", "D /bin/true", "C /etc"} <= set(changes), changes
    assert not [c for c in changes if c.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"))]
    d.docker("rm", "df")


def test_network_modes(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "ns-owner", "busybox", "sleep", "60")
    ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "ns-owner").stdout.strip()
    owner_host = d.docker("inspect", "-f", "{{.Config.Hostname}}", "ns-owner").stdout.strip()
    shared = d.docker("run", "--rm", "--network", "container:ns-owner", "busybox", "sh", "-c",
                      "ip -4 addr show eth0; hostname").stdout
    assert ip in shared and shared.strip().endswith(owner_host)
    alone = d.docker("run", "--rm", "--network", "none", "busybox", "ip", "-4", "addr").stdout
    assert "127.0.0.1" in alone and "eth0" not in alone
    host = d.docker("run", "--rm", "--network", "host", "busybox", "hostname").stdout.strip()
    assert host == os.uname().nodename
    d.docker("rm", "-f", "ns-owner")
