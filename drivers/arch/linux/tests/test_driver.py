"""What only the Linux driver does: real containers checked from the inside, conmon's attach
socket and pty, stats/top/update on the real cgroup, runtime selection, live-restore across a
killed daemon process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.model import new_id
from dockyard.specs import DriverContext
from dockyard.specs.arch import ExecRequest
from dockyard_arch_linux import cgroups, monitor
from dockyard_arch_linux.driver import LinuxRuntime
from dockyard_arch_linux.logs import parse_line
from dockyard_plugin_sdk.conformance.arch import leftovers, make_request
from dockyard_plugin_sdk.testing import async_wait_for, async_wait_for_exit, wait_for

from .conftest import NEEDS_HOST, zombie_children

pytestmark = NEEDS_HOST
LOOP = ["sh", "-c", "echo ready; while true; do sleep 0.1; done"]
DOCKER_DEFAULT_CAPEFF = "00000000a80425fb"


async def output(driver, cid) -> bytes:
    return b"".join([r.data async for r in driver.logs(cid)])


async def run(driver, ids, rootfs, cmd, *, wait=True, tty=False, stdin=False, stdin_once=False, user="",
              runtime="", **host):
    req = make_request(rootfs, cmd, runtime=runtime, tty=tty, **host)
    req.container.config.open_stdin = stdin
    req.container.config.stdin_once = stdin_once
    req.container.config.user = user
    ids.append(req.container.id)
    await driver.create(req)
    await driver.start(req.container.id)
    if wait:
        st = await asyncio.wait_for(driver.wait(req.container.id), 15)
        return req.container.id, st, await output(driver, req.container.id)
    return req.container.id, None, b""


async def until(predicate, timeout=10.0, what=""):
    await async_wait_for(predicate, timeout, what)


# ---------------------------------------------------------------- the spec, seen from inside
async def test_default_security_inside(driver, ids, rootfs):
    _cid, st, out = await run(driver, ids, rootfs, ["sh", "-c", "grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; cat /proc/kcore | wc -c; ls /sys/class/net"])
    assert st.exit_code == 0
    text = out.decode()
    assert "Seccomp:\t2" in text
    assert f"CapEff:\t{DOCKER_DEFAULT_CAPEFF}" in text
    assert "NoNewPrivs:\t0" in text
    lines = text.split()
    assert "lo" in lines and "eth0" not in lines  # a private, empty network namespace


async def test_seccomp_blocks_unshare(driver, ids, rootfs):
    (rootfs / "bin" / "unshare").symlink_to("busybox")
    _cid, st, out = await run(driver, ids, rootfs, ["unshare", "-m", "true"], cap_add=["SYS_ADMIN"])
    assert st.exit_code == 0, out  # allowed with CAP_SYS_ADMIN
    _cid, st, out = await run(driver, ids, rootfs, ["unshare", "-m", "true"])
    assert st.exit_code != 0 and b"Operation not permitted" in out


async def test_the_compiled_seccomp_filter_is_reused(driver, ids, rootfs):
    """The second container with the same profile gets the filter crun compiled for the first
    (crun's ``run.oci.seccomp_bpf_data``): the same bytes, and it still blocks what it must."""
    from dockyard_arch_linux.driver import SeccompBpfCache

    (rootfs / "bin" / "unshare").symlink_to("busybox")
    if os.path.basename(driver._runtime_path(driver.default_runtime)) != "crun":
        pytest.skip("the annotation is crun's")
    results = [await run(driver, ids, rootfs, ["unshare", "-m", "true"]) for _ in range(2)]
    for _cid, st, out in results:
        assert st.exit_code != 0 and b"Operation not permitted" in out
    (first, _, _), (second, _, _) = results
    annotations = [json.loads((driver._bundle(c) / "config.json").read_text()).get("annotations", {})
                   for c in (first, second)]
    assert SeccompBpfCache.ANNOTATION not in annotations[0]
    assert SeccompBpfCache.ANNOTATION in annotations[1]
    state = driver.context.run_dir / driver.default_runtime
    assert (state / first / "seccomp.bpf").read_bytes() == (state / second / "seccomp.bpf").read_bytes()


async def test_privileged_and_unconfined(driver, ids, rootfs):
    _cid, st, out = await run(driver, ids, rootfs, ["grep", "Seccomp:", "/proc/self/status"],
                              security_opt=["seccomp=unconfined", "no-new-privileges"])
    assert b"Seccomp:\t0" in out
    _cid, st, out = await run(driver, ids, rootfs, ["grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status"],
                              privileged=True)
    held = int(Path("/proc/self/status").read_text().split("CapBnd:")[1].split()[0], 16)
    assert b"Seccomp:\t0" in out and f"CapEff:\t{held:016x}".encode() in out


async def test_cap_drop_all_and_nnp(driver, ids, rootfs):
    _cid, st, out = await run(driver, ids, rootfs, ["grep", "-E", "^(CapEff|NoNewPrivs):", "/proc/self/status"],
                              cap_drop=["ALL"], security_opt=["no-new-privileges:true"])
    assert b"CapEff:\t0000000000000000" in out and b"NoNewPrivs:\t1" in out


async def test_user_hostname_readonly_shm(driver, ids, rootfs):
    script = "id; hostname; touch /x 2>&1; grep /dev/shm /proc/mounts"
    _cid, st, out = await run(driver, ids, rootfs, ["sh", "-c", script], user="nobody",
                              read_only_rootfs=True, shm_size=8 * 1024 * 1024)
    text = out.decode()
    assert "uid=65534(nobody) gid=65534(nogroup)" in text
    assert "Read-only file system" in text
    assert "size=8192k" in text


async def test_nofile_ulimit_and_init(driver, ids, rootfs):
    if not driver.spec_options.init_path:
        pytest.skip("no catatonit/tini on this host")
    _cid, st, out = await run(driver, ids, rootfs, ["sh", "-c", "ulimit -n; cat /proc/1/cmdline | tr '\\0' ' '"],
                              init=True)
    lines = out.decode().split("\n")
    assert int(lines[0]) <= 20000
    assert lines[1].startswith("/dev/init -- sh")


async def test_mounts(driver, ids, rootfs, tmp_path):
    from dockyard.model import Mount

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from-host")
    req = make_request(rootfs, ["sh", "-c", "cat /data/f; touch /data/g 2>&1; echo x > /t/y && cat /t/y"])
    req.mounts = [Mount(type="bind", source=str(src), destination="/data", read_only=True),
                  Mount(type="tmpfs", destination="/t")]
    ids.append(req.container.id)
    await driver.create(req)
    await driver.start(req.container.id)
    await driver.wait(req.container.id)
    out = await output(driver, req.container.id)
    assert b"from-host" in out and b"Read-only file system" in out and b"x\n" in out


# ---------------------------------------------------------------- logs
async def test_log_records_streams_and_partial_lines(driver, ids, rootfs):
    cid, st, _ = await run(driver, ids, rootfs, ["sh", "-c", "echo out; echo err >&2; printf tail"])
    recs = [r async for r in driver.logs(cid)]
    assert ("stdout", b"out\n") in [(r.stream, r.data) for r in recs]
    assert ("stderr", b"err\n") in [(r.stream, r.data) for r in recs]
    assert [r.data for r in recs if r.stream == "stdout"] == [b"out\n", b"tail"]  # P: no newline
    assert all(r.timestamp.endswith("Z") or "+" in r.timestamp for r in recs)


async def test_follow_ends_at_exit(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, ["sh", "-c", "for i in 1 2 3; do echo t$i; sleep 0.2; done"],
                            wait=False)
    got = [r.data async for r in driver.logs(cid, follow=True)]
    assert got == [b"t1\n", b"t2\n", b"t3\n"]


def test_parse_line():
    assert parse_line(b"2026-01-01T00:00:00.1Z stdout F hello\n").data == b"hello\n"
    assert parse_line(b"2026-01-01T00:00:00.1Z stderr P part").data == b"part"
    assert parse_line(b"2026-01-01T00:00:00.1Z stdout F ").data == b"\n"
    assert parse_line(b"garbage") is None
    assert parse_line(b"ts stdin F x") is None


# ---------------------------------------------------------------- attach socket and pty
async def test_attach_before_start_like_docker_run_i(driver, ids, rootfs):
    # `echo hi | docker run -i`: attach, write stdin and half-close, *then* start
    req = make_request(rootfs, ["cat"])
    req.container.config.open_stdin = req.container.config.stdin_once = True
    cid = req.container.id
    ids.append(cid)
    await driver.create(req)
    sock = driver.connect_attach(cid)
    try:
        sock.sendall(b"hello\n")
        sock.shutdown(socket.SHUT_WR)
        await driver.start(cid)
        sock.settimeout(10)
        msg = sock.recv(8192)
    finally:
        sock.close()
    assert msg[0] == monitor.ATTACH_STDOUT and msg[1:] == b"hello\n"
    st = await asyncio.wait_for(driver.wait(cid), 10)  # stdin closed: cat ends
    assert st.exit_code == 0
    assert await output(driver, cid) == b"hello\n"


async def test_open_stdin_without_stdin_once_stays_open(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, ["cat"], wait=False, stdin=True, stdin_once=False)
    sock = driver.connect_attach(cid)
    sock.sendall(b"one\n")
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    await until(lambda: _has_output(driver, cid, b"one\n"))
    assert (await driver.state(cid)).status == "running"  # conmon kept cat's stdin open
    sock = driver.connect_attach(cid)
    sock.sendall(b"two\n")
    sock.close()
    await until(lambda: _has_output(driver, cid, b"one\ntwo\n"))


async def test_a_tty_keeps_its_stdin_when_an_attach_ends(driver, ids, rootfs):
    # `docker run -it` (StdinOnce), ctrl-p ctrl-q, `docker attach`: the end of an attach (a
    # half-close, or the socket closed as a detach does) must not close the terminal's input;
    # dockerd closes a StdinOnce container's stdin only without a TTY. Each attach ends before
    # the next one connects, and conmon serves ready sockets oldest first, so the end is handled
    # before the next line is read.
    cid, _st, _ = await run(driver, ids, rootfs, ["cat"], wait=False, tty=True, stdin=True, stdin_once=True)
    for n, end in enumerate(("half-close", "close", "close")):
        sock = driver.connect_attach(cid)
        sock.sendall(b"line %d\n" % n)
        back = b"line %d\r\n" % n * 2  # the terminal's echo, then cat's
        await until(lambda b=back: _output_has(driver, cid, b), what=f"line {n} back (cat's stdin open)")
        if end == "half-close":
            sock.shutdown(socket.SHUT_WR)
        sock.close()
    assert (await driver.state(cid)).status == "running"


async def _has_output(driver, cid, data) -> bool:
    return await output(driver, cid) == data


async def _output_has(driver, cid, data) -> bool:
    return data in await output(driver, cid)


async def test_tty_resize(driver, ids, rootfs):
    script = "until stty size 2>/dev/null | grep -q '^[1-9]'; do sleep 0.05; done; stty size"
    cid, _st, _ = await run(driver, ids, rootfs, ["sh", "-c", script], wait=False, tty=True)
    await driver.resize(cid, 30, 100)
    st = await asyncio.wait_for(driver.wait(cid), 10)
    assert st.exit_code == 0
    assert b"30 100" in await output(driver, cid)
    with pytest.raises(InvalidArgument):
        monitor.resize("/nonexistent", 2000, 10)


# ---------------------------------------------------------------- cgroup-backed methods
async def test_stats_top_update(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, ["sh", "-c", "sleep 60 & while true; do sleep 0.1; done"],
                            wait=False, memory=64 << 20, pids_limit=50)
    await until(lambda: _has_children(driver, cid))
    stats = await driver.stats(cid)
    assert stats["memory_stats"]["limit"] == 64 << 20
    assert stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] >= 2 and stats["pids_stats"]["limit"] == 50
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["cpu_stats"]["system_cpu_usage"] > 0 and stats["id"] == cid
    pids = await driver.top(cid)
    assert (await driver.state(cid)).pid in pids and len(pids) >= 2
    await driver.update(cid, {"memory": 128 << 20, "PidsLimit": 80})
    cg = await driver.cgroup(cid)
    assert cg.memory_limit() == 128 << 20
    assert (await driver.stats(cid))["pids_stats"]["limit"] == 80
    with pytest.raises(InvalidArgument):
        await driver.update(cid, {"privileged": True})


async def _has_children(driver, cid) -> bool:
    return len(await driver.top(cid)) >= 2


async def test_pause_uses_the_freezer(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, LOOP, wait=False)
    await driver.pause(cid)
    cg = await driver.cgroup(cid)
    assert cg.frozen()
    with pytest.raises(Conflict):
        await driver.pause(cid)
    await driver.kill(cid, signal.SIGKILL)  # a paused container can still be killed
    assert (await asyncio.wait_for(driver.wait(cid), 10)).exit_code == 137


def test_a_freezer_left_freezing_is_written_again_until_it_reads_frozen(tmp_path: Path) -> None:
    # crun writes FROZEN once; a task forking meanwhile can leave a v1 freezer FREEZING
    (tmp_path / "c").mkdir()
    state = tmp_path / "c" / "freezer.state"
    state.write_text("FREEZING\n")
    cg = cgroups.Cgroup(cgroups.Layout(1, controllers={"freezer": str(tmp_path)}), "/c")
    assert not cg.frozen()
    assert cg.settle_freeze() and cg.frozen() and state.read_text() == "FROZEN"
    state.unlink()
    assert not cg.settle_freeze()  # the cgroup went away: it never settles


async def test_kill_signals_the_init_directly_and_refuses_a_stopped_one(driver, ids, rootfs, monkeypatch):
    trap = ["sh", "-c", "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done"]
    cid, _st, _ = await run(driver, ids, rootfs, trap, wait=False)
    await until(lambda: _has_output(driver, cid, b"ready\n"))  # the trap is set
    spawned: list[str] = []
    real_run = driver._run

    async def recording_run(meta, *args, **kw):
        spawned.append(args[0])
        return await real_run(meta, *args, **kw)

    monkeypatch.setattr(driver, "_run", recording_run)
    await driver.kill(cid, signal.SIGTERM)  # no runtime command on the way: a pidfd signal
    assert spawned == []
    assert (await asyncio.wait_for(driver.wait(cid), 10)).exit_code == 7
    with pytest.raises(Conflict):  # an exited container is refused as before (through the runtime)
        await driver.kill(cid, signal.SIGTERM)


async def test_oom_kill_is_reported(driver, ids, rootfs):
    # a shell growing a string until the 8 MiB limit kills it
    script = "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    cid, st, _ = await run(driver, ids, rootfs, ["sh", "-c", script], memory=8 << 20, memory_swap=8 << 20)
    assert st.exit_code == 137
    assert st.oom_killed


# ---------------------------------------------------------------- exec
async def test_exec_variants(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, LOOP, wait=False)
    eid = new_id()
    await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=["sh", "-c", "id -u; pwd; echo $FOO"],
                                  user="nobody", working_dir="/tmp", env=["FOO=bar"]))
    assert (await driver.exec_wait(eid)).exit_code == 0
    assert b"".join([r.data async for r in driver.exec_logs(eid)]) == b"65534\n/tmp\nbar\n"
    missing = new_id()
    st = await driver.exec(ExecRequest(container_id=cid, exec_id=missing, cmd=["/no/such/binary"]))
    assert st.status == "stopped" and st.exit_code in (126, 127)
    assert (await driver.exec_state(missing)).exit_code == st.exit_code
    assert driver.exec_error(missing)
    # the exec's stdin through its attach socket
    cat = new_id()
    await driver.exec(ExecRequest(container_id=cid, exec_id=cat, cmd=["cat"], stdin=True))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(driver.exec_attach_socket_path(cat))
    sock.sendall(b"via-exec\n")
    sock.shutdown(socket.SHUT_WR)
    assert (await asyncio.wait_for(driver.exec_wait(cat), 10)).exit_code == 0
    sock.close()
    assert b"".join([r.data async for r in driver.exec_logs(cat)]) == b"via-exec\n"
    await driver.exec_delete(cat)
    with pytest.raises(NotFound):
        await driver.exec_state(cat)


async def test_exec_with_a_tty_and_resize(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, LOOP, wait=False)
    eid = new_id()
    script = "until stty size 2>/dev/null | grep -q '^[1-9]'; do sleep 0.05; done; stty size; tty"
    await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=["sh", "-c", script], tty=True))
    await driver.exec_resize(eid, 40, 120)
    assert (await asyncio.wait_for(driver.exec_wait(eid), 10)).exit_code == 0
    out = b"".join([r.data async for r in driver.exec_logs(eid)])
    assert b"40 120\r\n" in out and b"/dev/pts/" in out


async def test_logs_survive_truncation(tmp_path):
    from dockyard_arch_linux.logs import follow_lines

    path = tmp_path / "log"
    path.write_bytes(b"a\nb\n")
    done = False
    got: list[bytes] = []

    async def reader():
        async for line in follow_lines(str(path), True, lambda: done, poll=0.01):
            got.append(line)

    task = asyncio.create_task(reader())
    await until(lambda: _n(got, 2))
    path.write_bytes(b"c\n")  # truncated and rewritten, as conmon does at --log-size-max
    await until(lambda: _n(got, 3))
    done = True
    await asyncio.wait_for(task, 5)
    assert got == [b"a\n", b"b\n", b"c\n"]


async def _n(items, n) -> bool:
    return len(items) >= n


async def test_a_log_removed_after_the_reader_was_made_is_still_read(tmp_path):
    """The reader holds the file from its making: docker-py's run(remove=True) has the container
    removed (its log with it) before it reads the stream it asked for."""
    from dockyard_arch_linux.logs import follow_lines

    path = tmp_path / "log"
    path.write_bytes(b"a\n")
    once = follow_lines(str(path), False, lambda: True)
    followed = follow_lines(str(path), True, lambda: not path.exists(), poll=0.01)
    with path.open("ab") as fh:
        fh.write(b"b\n")
    path.unlink()
    assert [x async for x in once] == [b"a\n", b"b\n"]
    assert [x async for x in followed] == [b"a\n", b"b\n"]
    assert once._fd is None and followed._fd is None  # closed at the end


async def test_logs_follow_a_file_renamed_over_the_old_one(tmp_path):
    """conmon's --log-size-max closes the log, opens LOG.tmp and renames it over LOG: what was
    written to the old file after the reader last read it still comes, then the new file."""
    from dockyard_arch_linux.logs import follow_lines

    path = tmp_path / "log"
    path.write_bytes(b"a\n")
    done = False
    got: list[bytes] = []

    async def reader():
        async for line in follow_lines(str(path), True, lambda: done, poll=0.01):
            got.append(line)

    task = asyncio.create_task(reader())
    await until(lambda: _n(got, 1))
    with path.open("ab") as fh:  # after the reader's last read of the old file
        fh.write(b"b\n")
    (tmp_path / "log.tmp").write_bytes(b"c\n")
    os.rename(tmp_path / "log.tmp", path)
    await until(lambda: _n(got, 3))
    with path.open("ab") as fh:
        fh.write(b"d\n")
    await until(lambda: _n(got, 4))
    done = True
    await asyncio.wait_for(task, 5)
    assert got == [b"a\n", b"b\n", b"c\n", b"d\n"]


async def test_logs_follow_every_rotated_file_and_the_last_rotation(tmp_path):
    """--log-opt max-file: the log rotated twice between two looks of a slow reader (``log``
    -> ``log.1`` -> ``log.2``) is read through ``log.1`` before the new ``log``, and a rotation
    with its lines just before the exit is read too (a follower once lost the last 100 lines
    of 2,000 so, in CI under load)."""
    from dockyard_arch_linux.logs import follow_lines, rotate

    path = tmp_path / "log"
    path.write_bytes(b"a\n")
    got: list[bytes] = []
    state = {"done": False, "exiting": False}

    def done() -> bool:
        if state["exiting"]:  # the writer's last rotation and lines land as the exit is seen
            state["exiting"] = False
            assert rotate(str(path), 0, 3)
            path.write_bytes(b"e\n")
            state["done"] = True
        return state["done"]

    async def reader():
        async for line in follow_lines(str(path), True, done, poll=0.2):
            got.append(line)

    task = asyncio.create_task(reader())
    await until(lambda: _n(got, 1))
    # no await from here on: the reader looks again only after both rotations
    with path.open("ab") as fh:
        fh.write(b"b\n")
    assert rotate(str(path), 0, 3)
    path.write_bytes(b"c\n")
    assert rotate(str(path), 0, 3)
    path.write_bytes(b"d\n")
    await until(lambda: _n(got, 4))
    state["exiting"] = True
    await asyncio.wait_for(task, 5)
    assert got == [b"a\n", b"b\n", b"c\n", b"d\n", b"e\n"]


async def test_logs_asked_for_before_delete_are_read_after_it(driver, ids, rootfs):
    """docker-py's containers.run(remove=True): logs (follow) asked for while the container runs,
    wait, delete, and only then the records read."""
    cid, _st, _ = await run(driver, ids, rootfs, ["sh", "-c", "sleep 0.2; echo late; yes l | head -n 30000"],
                            wait=False)
    followed = driver.logs(cid, follow=True)
    await asyncio.wait_for(driver.wait(cid), 15)
    once = driver.logs(cid)
    await driver.delete(cid)
    with pytest.raises(NotFound):
        driver.logs(cid)
    expected = b"late\n" + b"l\n" * 30000  # in records cut where conmon's reads of the pipe were
    assert b"".join([r.data async for r in followed]) == expected
    assert b"".join([r.data async for r in once]) == expected


# ---------------------------------------------------------------- runtimes
async def test_default_runtime_from_daemon_config(base_dir, owner, rootfs):
    ctx = DriverContext(data_dir=base_dir / "data", run_dir=base_dir / "run", owner=owner,
                        daemon_config={"default-runtime": "runc"})
    drv = LinuxRuntime(ctx)
    await drv.setup()
    req = make_request(rootfs, ["true"])
    try:
        await drv.create(req)
        meta = json.loads((ctx.data_dir / "containers" / req.container.id / "meta.json").read_text())
        assert meta["runtime"] == "runc"
        listed = subprocess.run(["runc", "--root", meta["runtime_root"], "list", "-q"], capture_output=True,
                                text=True, check=True).stdout.split()
        assert req.container.id in listed
    finally:
        await drv.delete(req.container.id, force=True)
    assert not leftovers(owner, ctx.run_dir)


async def test_unknown_runtime_is_invalid(driver, rootfs):
    with pytest.raises(InvalidArgument, match="unknown"):
        await driver.create(make_request(rootfs, ["true"], runtime="kata"))
    assert await driver.list() == []


async def test_failed_create_leaves_nothing(driver, rootfs, zombies_before):
    req = make_request(rootfs, ["/does/not/exist"])
    req.container.config.working_dir = "/also/missing/../x"
    with pytest.raises(DockyardError, match="exist|No such file"):
        await driver.create(req)
        await driver.start(req.container.id)
    if (driver.context.data_dir / "containers" / req.container.id).exists():
        await driver.delete(req.container.id, force=True)
    assert not leftovers(driver.context.owner, driver.context.run_dir) + zombie_children(zombies_before)


# ---------------------------------------------------------------- live-restore across kill -9
DAEMON = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from dockyard.specs import DriverContext
    from dockyard_arch_linux.driver import LinuxRuntime
    from dockyard_plugin_sdk.conformance.arch import make_request

    async def main():
        base, owner, rootfs = sys.argv[1], sys.argv[2], sys.argv[3]
        ctx = DriverContext(data_dir=Path(base) / "data", run_dir=Path(base) / "run", owner=owner)
        drv = LinuxRuntime(ctx)
        await drv.setup()
        ids, pids = [], []
        for cmd in (["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done"],
                    ["sh", "-c", "sleep 0.5; exit 9"]):
            req = make_request(rootfs, cmd)
            await drv.create(req)
            pids.append((await drv.start(req.container.id)).pid)
            ids.append(req.container.id)
        print(json.dumps([ids, pids]), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_live_restore_after_kill_9(driver, ids, rootfs, base_dir, owner):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAEMON, str(base_dir), owner, str(rootfs), stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        (running, exiting), (_pid, exiting_pid) = json.loads(line)
        ids.extend([running, exiting])
    finally:
        proc.kill()  # SIGKILL: the "daemon" dies without any cleanup
        await proc.wait()
    # the second container exits while no daemon runs
    await async_wait_for_exit(exiting_pid, 15, "the exiting container's process to exit")
    fresh = LinuxRuntime(driver.context)
    await fresh.setup()
    assert sorted(await fresh.list()) == sorted([running, exiting])
    st = await fresh.state(running)
    assert st.status == "running" and st.pid > 0
    done = await fresh.state(exiting)
    assert done.status == "stopped" and done.exit_code == 9 and done.finished_at
    # logs continue after the restart
    before = await output(fresh, running)
    await until(lambda: _grew(fresh, running, len(before)))
    await fresh.kill(running, signal.SIGKILL)  # sh as PID 1 ignores an untrapped SIGTERM
    assert (await asyncio.wait_for(fresh.wait(running), 10)).exit_code == 137
    for cid in (running, exiting):
        await fresh.delete(cid)
    assert await fresh.list() == []


async def _grew(drv, cid, size) -> bool:
    return len(await output(drv, cid)) > size


# ---------------------------------------------------------------- cgroup layouts
def test_layout_detection_of_this_host():
    layout = cgroups.detect()
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        assert layout.version == 2
    else:
        assert layout.version == 1 and "memory" in layout.controllers


def test_parse_mountinfo():
    text = ("30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
            "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
            "32 25 0:28 / /sys/fs/cgroup/unified rw shared:11 - cgroup2 cgroup2 rw\n")
    unified, ctrls = cgroups.parse_mountinfo(text)
    assert unified == "/sys/fs/cgroup/unified"
    assert ctrls == {"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                     "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}


def test_own_procs_file_is_our_cgroup_in_a_v1_hierarchy():
    v1 = cgroups.Layout(version=1, unified="/sys/fs/cgroup/unified",
                        controllers={"memory": "/m", "cpu": "/c", "name=systemd": "/s"})
    proc = "4:memory:/a/b\n1:cpu,cpuacct:/\n9:name=systemd:/x\n0::/\n"
    assert cgroups.own_procs_file(v1, proc) == "/c/cgroup.procs"  # cpu comes before memory
    assert cgroups.own_procs_file(cgroups.Layout(version=1, controllers={"memory": "/m"}), proc) == \
        "/m/a/b/cgroup.procs"
    assert cgroups.own_procs_file(cgroups.Layout(version=1, controllers={"name=systemd": "/s"}), proc) == ""
    assert cgroups.own_procs_file(cgroups.Layout(version=2, unified="/sys/fs/cgroup"), proc) == ""


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.detect().version != 1, reason="needs root on cgroup v1")
def test_prime_attach_leaves_us_where_we_were():
    """The write that warms the kernel's cgroup attach lock moves nothing: we stay in our
    cgroups, and a second write right after finds the lock warm."""
    before = Path("/proc/self/cgroup").read_text()
    procs = cgroups.own_procs_file(cgroups.detect())
    assert procs and str(os.getpid()) in Path(procs).read_text().split()
    assert cgroups.prime_attach(procs) >= 0
    assert cgroups.prime_attach(procs) >= 0
    assert Path("/proc/self/cgroup").read_text() == before
    assert cgroups.prime_attach("/nonexistent/cgroup.procs") == -1.0


def test_status_and_platforms(driver):
    keys = dict(driver.status())
    assert keys["Default Runtime"] == "crun" and keys["Cgroup Layout"] in ("v1", "v2", "hybrid")
    import platform

    if platform.machine() == "x86_64":
        assert str(driver.platforms()[0]) == "linux/amd64"


async def test_monitor_is_its_own_session_and_is_reaped(driver, ids, rootfs):
    cid, _st, _ = await run(driver, ids, rootfs, ["sleep", "0.3"], wait=False)
    meta = json.loads((driver.context.data_dir / "containers" / cid / "meta.json").read_text())
    conmon = meta["conmon_pid"]
    assert monitor.alive(conmon, cid)
    assert os.getsid(conmon) == conmon != os.getsid(0)  # setsid: detached from the daemon
    assert (await asyncio.wait_for(driver.wait(cid), 10)).exit_code == 0
    await until(lambda: _gone(conmon))


async def _gone(pid) -> bool:
    return not os.path.exists(f"/proc/{pid}")  # exited *and* reaped (no zombie)


async def test_orphaned_runtime_processes_are_reaped(driver, tmp_path):
    # a process named like a runtime, orphaned by its parent, lands on us (the subreaper)
    fake = tmp_path / "crun"
    fake.write_bytes(Path("/bin/true").read_bytes())
    fake.chmod(0o755)
    subprocess.run(["sh", "-c", f"{fake} & exit 0"], check=True)
    await until(lambda: _zombie_named(b"crun"))
    assert monitor.reap_orphans()
    assert not await _zombie_named(b"crun")



async def test_our_own_runtime_commands_are_left_to_asyncio(tmp_path):
    """A runtime command this process runs itself (``own_command``) is not reaped by a full
    sweep (another container's removal makes one) even as a zombie: its exit status is the
    waiter's. Unguarded, the sweep takes it (and asyncio would report 255)."""
    fake = tmp_path / "crun"
    fake.write_bytes(Path("/bin/true").read_bytes())
    fake.chmod(0o755)
    for guarded in (True, False):
        proc = subprocess.Popen([str(fake)])  # not reaped until waited for: a zombie to sweep
        try:
            with monitor.own_command(proc.pid) if guarded else contextlib.nullcontext():
                await until(lambda: _state(proc.pid) == "Z")  # noqa: B023
                swept = monitor.reap_orphans()
            if guarded:
                assert proc.pid not in swept
                assert proc.wait(5) == 0  # the owner still gets its status
            else:
                assert proc.pid in swept
        finally:
            if guarded is False or proc.returncode is None:
                with contextlib.suppress(ChildProcessError):
                    proc.wait(5)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return ""
    return stat[stat.rindex(b")") + 2:].split()[0].decode()

def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


async def test_a_runtime_process_adopted_from_a_container_namespace_is_reaped_when_it_exits(driver, tmp_path):
    """The runtime's process that joined a container for an exec that could not start may
    outlive its monitor and land on us still running: it is watched and reaped once it exits.
    Left a zombie, it kept the container's init (killed, waiting in the kernel for every process
    of its PID namespace) from exiting, and ``docker stop`` waited for good (seen under load)."""
    fake = tmp_path / "crun"
    fake.write_bytes(Path("/bin/cat").read_bytes())
    fake.chmod(0o755)
    # a process named like the runtime, in a PID namespace of its own, whose parent exits at once;
    # it runs until we close its stdin (no timing involved)
    script = ("import ctypes, os, sys\n"
              "if ctypes.CDLL(None, use_errno=True).unshare(0x20000000) != 0: sys.exit(3)\n"  # CLONE_NEWPID
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    null = os.open('/dev/null', os.O_WRONLY); os.dup2(null, 1); os.dup2(null, 2)\n"
              "    os.execv(sys.argv[1], [sys.argv[1]])\n"
              "print(pid, flush=True)\n")
    r, w = os.pipe()
    try:
        out = subprocess.run([sys.executable, "-c", script, str(fake)], stdin=r, capture_output=True, text=True,
                             check=True, timeout=30)
        pid = int(out.stdout)
        # its parent printed the PID right after the fork: it is a runtime process once it exec'd
        await until(lambda: _comm(pid) == "crun", what=f"process {pid} running the fake crun")
        assert monitor.is_child(pid) and monitor.pid_namespace(pid) != monitor.pid_namespace("self")
        assert monitor.reap_orphans() == []  # still running: watched, not reaped yet
    finally:
        os.close(r)
        os.close(w)  # it exits now
    await until(lambda: _gone(pid), what=f"the adopted process {pid} reaped")


async def test_a_zombie_adopted_from_a_container_namespace_is_swept(driver, tmp_path):
    """The wait loops' safety net (``sweep_foreign``) reaps such a process already a zombie."""
    fake = tmp_path / "crun"
    fake.write_bytes(Path("/bin/true").read_bytes())
    fake.chmod(0o755)
    script = ("import ctypes, os, sys\n"
              "if ctypes.CDLL(None, use_errno=True).unshare(0x20000000) != 0: sys.exit(3)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    os.execv(sys.argv[1], [sys.argv[1]])\n"
              "print(pid, flush=True)\n")
    pid = int(subprocess.run([sys.executable, "-c", script, str(fake)], capture_output=True, text=True, check=True,
                             timeout=30).stdout)
    await until(lambda: _zombie_named(b"crun"))
    monitor.sweep_foreign(0.0)
    assert await _gone(pid)


async def _zombie_named(comm: bytes) -> bool:
    return any(b"(" + comm + b")" in z.encode() for z in zombie_children())


async def test_request_spec_amender_runs_before_the_spec_is_written(driver, ids, rootfs):
    seen = []

    def amend(container, spec):
        seen.append(container.id)
        spec["process"]["env"].append("AMENDED=1")

    req = make_request(rootfs, ["sh", "-c", "echo $AMENDED"])
    req.spec_amender = amend
    ids.append(req.container.id)
    await driver.create(req)
    await driver.start(req.container.id)
    assert (await asyncio.wait_for(driver.wait(req.container.id), 15)).exit_code == 0
    assert seen == [req.container.id] and await output(driver, req.container.id) == b"1\n"

    def refuse(container, spec):
        raise InvalidArgument("refused by policy")

    bad = make_request(rootfs, ["true"])
    bad.spec_amender = refuse
    with pytest.raises(InvalidArgument, match="refused"):
        await driver.create(bad)
    assert bad.container.id not in await driver.list()  # nothing left of a refused container


async def test_log_max_size_keeps_the_log_small(driver, ids, rootfs):
    from dockyard.model import LogConfig

    req = make_request(rootfs, ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); done"])
    req.container.host_config.log_config = LogConfig(type="json-file", config={"max-size": "2k"})
    ids.append(req.container.id)
    await driver.create(req)
    await driver.start(req.container.id)
    assert (await asyncio.wait_for(driver.wait(req.container.id), 15)).exit_code == 0
    out = await output(driver, req.container.id)
    assert b"line399\n" in out and b"line0\n" not in out  # the oldest records were dropped
    log = driver._meta(req.container.id)["log_path"]
    assert os.path.getsize(log) < 4096


def test_children_lists_zombies_of_every_thread() -> None:
    """reap_orphans looks only at our children: an orphan may be adopted by any of our threads."""
    box: dict[str, subprocess.Popen[bytes]] = {}
    thread = threading.Thread(target=lambda: box.setdefault("p", subprocess.Popen(["true"])))
    thread.start()
    thread.join()
    proc = box["p"]
    try:
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1].startswith("Z"), 5,
                 f"{proc.pid} to be a zombie")
        assert str(proc.pid) in monitor._children()
    finally:
        proc.wait()
    assert str(proc.pid) not in monitor._children()


@NEEDS_HOST
async def test_an_auto_remove_containers_log_is_not_synced_at_its_exit(driver, ids, rootfs):
    """conmon fsyncs the log when the process exits; an AutoRemove container's log goes with it
    right after, so its conmon is told not to (when it takes ``--no-sync-log``), and its output
    is all there as before."""
    assert monitor.has_option(driver.conmon, "--no-sync-log") == (b"--no-sync-log" in subprocess.run(
        [driver.conmon, "--help"], capture_output=True).stdout)
    kept, st, out = await run(driver, ids, rootfs, ["echo", "kept"])
    assert (st.exit_code, out) == (0, b"kept\n")
    gone, st, out = await run(driver, ids, rootfs, ["echo", "gone"], auto_remove=True)
    assert (st.exit_code, out) == (0, b"gone\n")
    metas = {c: json.loads((driver.context.data_dir / "containers" / c / "meta.json").read_text()) for c in (kept, gone)}
    assert metas[kept]["sync_log"] is True
    assert metas[gone]["sync_log"] is (not monitor.has_option(driver.conmon, "--no-sync-log"))
    argv = driver._conmon_command(metas[gone], False).argv()
    assert ("--no-sync-log" in argv) is (not metas[gone]["sync_log"])
    assert "--no-sync-log" not in driver._conmon_command(metas[kept], False).argv()


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.detect().version != 1, reason="needs root on cgroup v1")
async def test_expect_start_warms_the_cgroup_lock_at_once(driver):
    """A create's hint returns at once; the cgroup write runs in a thread and moves nothing."""
    before = Path("/proc/self/cgroup").read_text()
    await driver.expect_start()
    assert driver._priming is not None
    assert await asyncio.wait_for(driver._priming, 10) >= 0
    await driver.expect_start()  # done: another one may start
    await asyncio.wait_for(driver._priming, 10)
    assert Path("/proc/self/cgroup").read_text() == before
