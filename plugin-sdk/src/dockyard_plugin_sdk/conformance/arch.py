"""Conformance kit for ``arch`` (runtime) drivers.

Subclass :class:`RuntimeContract` in a ``Test*`` class and supply the ``driver`` fixture: an
instance whose ``setup()`` has run, built on :func:`runtime_context` (short private directories
and a unique owner token, so the leak checks here can find everything the driver created)::

    class TestMyRuntime(RuntimeContract):
        @pytest.fixture
        async def driver(self, runtime_context):
            drv = MyRuntime(runtime_context)
            await drv.setup()
            return drv

Cases run real containers from a tiny busybox rootfs (:func:`busybox_rootfs`; needs root and
busybox-static). A fresh driver instance for live-restore cases is ``type(driver)(driver.context)``.

Capabilities (``info.capabilities``) the cases look for:

* ``pause`` -- ``pause()``/``resume()`` freeze and thaw the container;
* ``exec`` -- ``exec()``, ``exec_state``/``exec_wait`` (exit code; 126/127 and ``error`` for a
  command that cannot start), ``exec_logs(exec_id, follow)`` yielding :class:`LogRecord` and
  ``exec_delete``;
* ``attach`` -- ``attach(container_id[, exec_id])`` returning an :class:`AttachStream`: output
  of a container attached before ``start``, stdin with half-close (``stdin_once``);
* ``tty`` -- ``resize()`` of a TTY container; a non-TTY one is a Conflict;
* ``live-restore`` -- a new driver instance over the same directories finds running containers
  and the exit codes of those that exited while no instance existed;
* ``stats``, ``top``, ``update`` -- the optional RuntimeDriver methods;
* ``sandbox`` -- ``create_sandbox``/``remove_sandbox``: a network namespace of its own (named
  with the owner token, loopback up) that a container created with it as ``netns_path`` runs
  in, gone without a trace once removed (removing it again is no error);
* ``checkpoint`` -- the driver subclasses :class:`~dockyard.specs.arch.CheckpointDriver`:
  for a runtime ``checkpoint_support`` accepts, a counting container is checkpointed (its
  process ends, ``wait`` returns) and restored from the images under the same ID, and counts
  on from where it stopped; ``leave_running`` keeps it running. For a runtime it refuses (the
  reason names the fix), ``checkpoint`` raises InvalidArgument and the container runs on.
* ``emulation`` -- foreign platforms run through an emulator the host offers (binfmt_misc +
  qemu-user-static for the Linux driver): ``platforms()`` lists each after the native ones with
  ``emulated=True``, and a rootfs of that platform's busybox (:func:`foreign_busybox_rootfs`,
  Debian's busybox-static in ``$DOCKYARD_BUSYBOX_DIR``) runs, ``uname -m`` naming the emulated
  machine. Skips when the host offers none; override the ``emulation_ready`` fixture to make
  the host offer it first (the Linux driver's tests use the SDK's ``binfmt_emulation``).

Platforms: the first of ``platforms()`` is native (the host's), every native one comes before
every emulated one, and none is both.

Every case removes what it created and then checks that no cgroup named after the owner token
and no process mentioning the driver's run directory is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import Container, ContainerConfig, HostConfig, Image, new_id
from dockyard.specs import DriverContext
from dockyard.specs.arch import (
    CheckpointDriver,
    CheckpointRequest,
    ExecRequest,
    LogRecord,
    RuntimeCreateRequest,
    RuntimeDriver,
)
from dockyard_plugin_sdk.testing import async_wait_for, async_wait_for_exit

from . import requires
from ._common import DriverContract

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: static busybox, its applets as symlinks, /etc/passwd+group."""
    busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None)
    if busybox is None:
        pytest.skip("busybox-static is not installed")
    bindir = dest / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(busybox, bindir / "busybox")
    for applet in ("sh", "echo", "cat", "sleep", "true", "false", "ls", "ps", "id", "kill", "env",
                   "hostname", "mkdir", "printf", "test", "grep", "head", "wc"):
        (bindir / applet).symlink_to("busybox")
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


#: ``uname -m`` under emulation of each platform a foreign busybox exists for.
UNAME = {"linux/arm64": "aarch64", "linux/arm/v7": "armv7l", "linux/riscv64": "riscv64"}


def foreign_busybox_rootfs(dest: Path, platform: str) -> Path:
    """:func:`busybox_rootfs` with the busybox of ``platform`` (``linux/arm64`` ->
    ``$DOCKYARD_BUSYBOX_DIR/arm64/busybox``, ``linux/arm/v7`` -> ``.../arm-v7/busybox``;
    default dir ``/var/cache/dockyard/busybox``: dockyard's ``make install`` fetches them)."""
    base = Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox")
    name = "-".join(platform.split("/")[1:])
    busybox = base / name / "busybox"
    if not busybox.is_file():
        pytest.skip(f"no busybox for {platform} in {busybox.parent}")
    busybox_rootfs(dest)
    (dest / "bin" / "busybox").unlink()
    shutil.copy2(busybox, dest / "bin" / "busybox")
    (dest / "bin" / "uname").symlink_to("busybox")
    return dest


def make_runtime_context(base: Path, owner: str, **options: str) -> DriverContext:
    data, run = base / "data", base / "run"
    data.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    return DriverContext(data_dir=data, run_dir=run, owner=owner, options=dict(options))


def make_request(rootfs: Path, cmd: list[str], runtime: str = "", tty: bool = False,
                 stdin: bool = False, **host: Any) -> RuntimeCreateRequest:
    cid = new_id()
    container = Container(id=cid, name=f"conf-{cid[:8]}", image_id="sha256:" + "0" * 64,
                          config=ContainerConfig(image="busybox", cmd=list(cmd), tty=tty, open_stdin=stdin,
                                                 stdin_once=stdin, attach_stdin=stdin),
                          host_config=HostConfig(**host))
    image = Image(id="sha256:" + "0" * 64)
    return RuntimeCreateRequest(container=container, image=image, rootfs=str(rootfs), runtime=runtime)


def leftovers(owner: str, run_dir: Path) -> list[str]:
    """Cgroups named after ``owner``, processes whose command line mentions ``run_dir`` and
    mounts whose path mentions either."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            if owner in line or str(run_dir) in line:
                found.append("mount " + line.split()[4])
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if owner in d:
                found.append(os.path.join(root, d))
        dirs[:] = [d for d in dirs if owner not in d]
    needle = str(run_dir).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(f"pid {pid}")
        except OSError:
            continue
    return found


async def collect_output(driver: RuntimeDriver, cid: str) -> bytes:
    return b"".join([rec.data async for rec in driver.logs(cid)])


async def wait_for_output(driver: RuntimeDriver, cid: str, needle: bytes, timeout: float = 10.0) -> None:
    async def seen() -> bool:
        return needle in await collect_output(driver, cid)

    await async_wait_for(seen, timeout, f"{needle!r} in the logs of {cid}")


LOOP = ["sh", "-c", "echo ready; while true; do sleep 0.1; done"]


class RuntimeContract(DriverContract):
    """Cases every ``arch`` driver meets. Subclasses supply ``driver``; they may set
    ``runtime`` to pass a per-container OCI runtime name."""

    kind: ClassVar[str] = "arch"
    runtime: ClassVar[str] = ""

    @pytest.fixture
    def runtime_context(self) -> Any:
        """Short private directories (unix socket paths stay short) and a unique owner."""
        base = Path(tempfile.mkdtemp(prefix="dy", dir="/tmp"))
        owner = "dyc" + os.urandom(4).hex()
        yield make_runtime_context(base, owner)
        shutil.rmtree(base, ignore_errors=True)

    @pytest.fixture
    def rootfs(self, tmp_path: Path) -> Path:
        return busybox_rootfs(tmp_path / "rootfs")

    @pytest_asyncio.fixture
    async def containers(self, driver: RuntimeDriver) -> AsyncIterator[list[str]]:
        """IDs created by a case; force-removed afterwards, then nothing may be left."""
        ids: list[str] = []
        yield ids
        for cid in ids:
            try:
                await driver.delete(cid, force=True)
            except NotFound:
                pass
        left = leftovers(driver.context.owner, driver.context.run_dir)
        assert not left, f"left behind: {left}"

    async def run(self, driver: RuntimeDriver, containers: list[str], rootfs: Path, cmd: list[str],
                  tty: bool = False, **host: Any) -> str:
        req = make_request(rootfs, cmd, runtime=self.runtime, tty=tty, **host)
        containers.append(req.container.id)
        st = await driver.create(req)
        assert st.status == "created"
        st = await driver.start(req.container.id)
        assert st.status in ("running", "stopped")
        return req.container.id

    # ------------------------------------------------------------------ cases
    def test_reports_a_platform(self, driver: RuntimeDriver) -> None:
        plats = driver.platforms()
        assert plats and plats[0].os and plats[0].architecture and not plats[0].emulated
        flags = [p.emulated for p in plats]
        assert flags == sorted(flags), f"an emulated platform before a native one: {plats}"
        native = {str(p) for p in plats if not p.emulated}
        assert not native & {str(p) for p in plats if p.emulated}, f"native and emulated at once: {plats}"

    @pytest.fixture
    def emulation_ready(self) -> None:
        """Override to make the host offer emulation before the emulation case (default: as is)."""
        return None

    async def test_an_emulated_platform_runs(self, driver, containers, tmp_path, emulation_ready) -> None:
        requires(driver, "emulation")
        emulated = [str(p) for p in driver.platforms() if p.emulated and str(p) in UNAME]
        if not emulated:
            pytest.skip("the host offers no emulated platform (Linux: `dockyard system binfmt install`)")
        for plat in emulated[:2]:
            rootfs = foreign_busybox_rootfs(tmp_path / plat.replace("/", "-"), plat)
            cid = await self.run(driver, containers, rootfs, ["uname", "-m"])
            st = await asyncio.wait_for(driver.wait(cid), 30)
            assert st.status == "stopped" and st.exit_code == 0, (plat, st)
            assert (await collect_output(driver, cid)).strip() == UNAME[plat].encode()

    async def test_echo_reaches_the_logs(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, ["echo", "hi"])
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status == "stopped" and st.exit_code == 0
        assert b"hi" in await collect_output(driver, cid)

    async def test_logs_asked_for_before_delete_are_read_after_it(self, driver, containers, rootfs) -> None:
        """``logs()`` opens the log when called: docker-py's ``containers.run(remove=True)`` has
        the container removed before it reads the log stream it asked for."""
        cid = await self.run(driver, containers, rootfs, ["sh", "-c", "sleep 0.2; echo late"])
        followed = driver.logs(cid, follow=True)
        await asyncio.wait_for(driver.wait(cid), 15)
        once = driver.logs(cid)
        await driver.delete(cid)
        assert b"".join([rec.data async for rec in once]) == b"late\n"
        assert b"".join([rec.data async for rec in followed]) == b"late\n"

    async def test_exit_code_propagates(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, ["sh", "-c", "exit 3"])
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.exit_code == 3
        assert (await driver.state(cid)).exit_code == 3

    async def test_sigterm_reaches_a_trap(self, driver, containers, rootfs) -> None:
        script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"
        cid = await self.run(driver, containers, rootfs, ["sh", "-c", script])
        await wait_for_output(driver, cid, b"ready")
        await driver.kill(cid, signal.SIGTERM)
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.exit_code == 42
        assert b"got-term" in await collect_output(driver, cid)

    async def test_wait_blocks_until_exit(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, ["sleep", "0.5"])
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.exit_code == 0 and loop.time() - t0 >= 0.3
        t1 = loop.time()
        assert (await driver.wait(cid)).exit_code == 0  # already exited: at once
        assert loop.time() - t1 < 1.0

    async def test_state_transitions(self, driver, containers, rootfs) -> None:
        req = make_request(rootfs, LOOP, runtime=self.runtime)
        containers.append(req.container.id)
        cid = req.container.id
        assert (await driver.create(req)).status == "created"
        assert (await driver.state(cid)).status == "created"
        assert cid in await driver.list()
        st = await driver.start(cid)
        assert st.status == "running" and st.pid > 0
        with pytest.raises(Conflict):
            await driver.start(cid)
        await driver.kill(cid, signal.SIGKILL)
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status == "stopped" and st.exit_code == 137
        assert (await driver.state(cid)).status == "stopped"
        with pytest.raises(Conflict):
            await driver.start(cid)
        with pytest.raises(Conflict):
            await driver.kill(cid, signal.SIGTERM)

    async def test_create_twice_conflicts(self, driver, containers, rootfs) -> None:
        req = make_request(rootfs, ["true"], runtime=self.runtime)
        containers.append(req.container.id)
        await driver.create(req)
        with pytest.raises(Conflict):
            await driver.create(req)

    async def test_delete_running_needs_force(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, LOOP)
        with pytest.raises(Conflict):
            await driver.delete(cid)
        assert (await driver.state(cid)).status == "running"

    async def test_delete_cleans_up(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, LOOP)
        pid = (await driver.state(cid)).pid
        assert pid > 0
        await driver.delete(cid, force=True)
        with pytest.raises(NotFound):
            await driver.state(cid)
        assert cid not in await driver.list()
        assert not os.path.exists(f"/proc/{pid}/cmdline") or b"sleep" not in Path(
            f"/proc/{pid}/cmdline").read_bytes()
        cgroups = [d for d, _s, _f in os.walk("/sys/fs/cgroup") if cid in os.path.basename(d)]
        assert not cgroups

    async def test_pause_and_resume(self, driver, containers, rootfs) -> None:
        requires(driver, "pause")
        cid = await self.run(driver, containers, rootfs, LOOP)
        await driver.pause(cid)
        assert (await driver.state(cid)).status == "paused"
        await driver.resume(cid)
        assert (await driver.state(cid)).status == "running"

    async def test_exec_exit_code_and_output(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        cid = await self.run(driver, containers, rootfs, LOOP)
        eid = new_id()
        st = await driver.exec(ExecRequest(container_id=cid, exec_id=eid,
                                           cmd=["sh", "-c", "echo out; echo err >&2; exit 5"]))
        assert st.status in ("running", "stopped")
        done = await asyncio.wait_for(driver.exec_wait(eid), 15)  # type: ignore[attr-defined]
        assert done.exit_code == 5
        records = [r async for r in driver.exec_logs(eid)]
        assert all(isinstance(r, LogRecord) for r in records)
        assert [(r.stream, r.data) for r in records] == [("stdout", b"out\n"), ("stderr", b"err\n")]
        assert (await driver.exec_state(eid)).exit_code == 5
        await driver.exec_delete(eid)
        with pytest.raises(NotFound):
            await driver.exec_state(eid)

    async def test_exec_of_a_missing_command(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        cid = await self.run(driver, containers, rootfs, LOOP)
        eid = new_id()
        await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=["/no/such/command"]))
        st = await asyncio.wait_for(driver.exec_wait(eid), 15)
        assert st.exit_code in (126, 127) and st.error

    async def test_attach_before_start_with_stdin(self, driver, containers, rootfs) -> None:
        requires(driver, "attach")
        req = make_request(rootfs, ["sh", "-c", "cat; echo done >&2"], runtime=self.runtime, stdin=True)
        cid = req.container.id
        containers.append(cid)
        await driver.create(req)
        stream = await driver.attach(cid)
        try:
            await stream.write(b"hello\n")
            await stream.close_stdin()
            await driver.start(cid)
            got: list[tuple[str, bytes]] = []
            while (item := await asyncio.wait_for(stream.read(), 15)) is not None:
                got.append(item)
        finally:
            stream.close()
        out = b"".join(d for s, d in got if s == "stdout")
        err = b"".join(d for s, d in got if s == "stderr")
        assert out == b"hello\n" and err == b"done\n"
        assert (await asyncio.wait_for(driver.wait(cid), 15)).exit_code == 0

    async def test_attach_to_an_exec_session(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        requires(driver, "attach")
        cid = await self.run(driver, containers, rootfs, LOOP)
        eid = new_id()
        await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=["sh", "-c", "echo a; cat"], stdin=True))
        stream = await driver.attach(cid, exec_id=eid)
        try:
            await stream.write(b"b\n")
            await stream.close_stdin()
            got = []
            while (item := await asyncio.wait_for(stream.read(), 15)) is not None:
                got.append(item)
        finally:
            stream.close()
        assert b"".join(d for _s, d in got) == b"a\nb\n"
        assert (await driver.exec_wait(eid)).exit_code == 0

    async def test_resize_needs_a_terminal(self, driver, containers, rootfs) -> None:
        requires(driver, "tty")
        cid = await self.run(driver, containers, rootfs, LOOP)
        with pytest.raises(Conflict):
            await driver.resize(cid, 30, 100)
        tty = await self.run(driver, containers, rootfs, LOOP, tty=True)
        await driver.resize(tty, 30, 100)

    async def test_memory_limit_is_in_the_cgroup(self, driver, containers, rootfs) -> None:
        script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                  " || cat /sys/fs/cgroup/memory.max")
        cid = await self.run(driver, containers, rootfs, ["sh", "-c", script], memory=64 * 1024 * 1024)
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.exit_code == 0
        assert b"67108864" in await collect_output(driver, cid)

    async def test_a_fresh_instance_finds_running_containers(self, driver, containers, rootfs) -> None:
        requires(driver, "live-restore")
        cid = await self.run(driver, containers, rootfs, LOOP)
        fresh = type(driver)(driver.context)
        await fresh.setup()
        assert cid in await fresh.list()
        st = await fresh.state(cid)
        assert st.status == "running" and st.pid == (await driver.state(cid)).pid
        await fresh.kill(cid, signal.SIGKILL)
        assert (await asyncio.wait_for(fresh.wait(cid), 15)).exit_code == 137

    async def test_exit_while_no_instance_watches(self, driver, containers, rootfs) -> None:
        requires(driver, "live-restore")
        cid = await self.run(driver, containers, rootfs, ["sh", "-c", "sleep 0.3; exit 7"])
        cls, context = type(driver), driver.context
        pid = (await driver.state(cid)).pid
        # the process exits while no instance looks (waited on through its pid, not watched)
        if pid > 0:
            await async_wait_for_exit(pid, 15, f"the container's process {pid} to exit")
        fresh = cls(context)
        await fresh.setup()
        st = await fresh.state(cid)
        assert st.status == "stopped" and st.exit_code == 7
        assert (await fresh.wait(cid)).exit_code == 7

    async def test_stats_in_docker_shape(self, driver, containers, rootfs) -> None:
        requires(driver, "stats")
        cid = await self.run(driver, containers, rootfs, LOOP, memory=64 * 1024 * 1024)
        await wait_for_output(driver, cid, b"ready")
        stats = await driver.stats(cid)
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert stats["memory_stats"]["usage"] > 0
        assert stats["memory_stats"]["limit"] == 64 * 1024 * 1024
        assert stats["pids_stats"]["current"] >= 1

    async def test_top_lists_the_init_process(self, driver, containers, rootfs) -> None:
        requires(driver, "top")
        cid = await self.run(driver, containers, rootfs, LOOP)
        assert (await driver.state(cid)).pid in await driver.top(cid)
        await driver.kill(cid, signal.SIGKILL)
        await asyncio.wait_for(driver.wait(cid), 15)
        with pytest.raises(Conflict):
            await driver.top(cid)

    async def test_a_sandbox_is_a_namespace_and_leaves_nothing(self, driver, containers, rootfs) -> None:
        requires(driver, "sandbox")
        sid = new_id()
        key = await driver.create_sandbox(sid)
        try:
            assert driver.context.owner in key  # kernel objects are named and owned
            ns, own = os.stat(key), os.stat("/proc/self/ns/net")
            assert (ns.st_dev, ns.st_ino) != (own.st_dev, own.st_ino)
            script = "cat /sys/class/net/lo/flags; echo $(ls /sys/class/net); ls -l /proc/self/ns/net"
            req = make_request(rootfs, ["sh", "-c", script], runtime=self.runtime)
            req.netns_path = key
            containers.append(req.container.id)
            await driver.create(req)
            await driver.start(req.container.id)
            assert (await asyncio.wait_for(driver.wait(req.container.id), 15)).exit_code == 0
            flags, links, link = (await collect_output(driver, req.container.id)).decode().splitlines()
            assert int(flags, 16) & 1 and links == "lo"  # only loopback, and it is up
            assert link.endswith(f"net:[{ns.st_ino}]")  # the container ran in the sandbox
            await driver.delete(req.container.id, force=True)
        finally:
            await driver.remove_sandbox(sid, key)
        assert not os.path.exists(key)
        with open("/proc/self/mountinfo") as fh:
            assert not [line for line in fh if key in line]
        await driver.remove_sandbox(sid, key)  # already gone: not an error

    # ------------------------------------------------------------------ checkpoint
    COUNTER: ClassVar[list[str]] = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo n$i; sleep 0.1; done"]

    @staticmethod
    async def _counts(driver: RuntimeDriver, cid: str) -> list[int]:
        out = (await collect_output(driver, cid)).decode()
        return [int(w[1:]) for w in out.split() if w.startswith("n") and w[1:].isdigit()]

    async def test_checkpoint_and_restore_continue_the_process(self, driver, containers, rootfs, tmp_path) -> None:
        requires(driver, "checkpoint")
        assert isinstance(driver, CheckpointDriver)
        why = driver.checkpoint_support(self.runtime)
        if why:
            pytest.skip(f"runtime {self.runtime or 'default'} cannot checkpoint here: {why}")
        req = make_request(rootfs, self.COUNTER, runtime=self.runtime)
        containers.append(req.container.id)
        cid = req.container.id
        await driver.create(req)
        await driver.start(cid)
        await wait_for_output(driver, cid, b"n3")
        images = tmp_path / "images"
        result = await driver.checkpoint(cid, CheckpointRequest(image_dir=str(images)))
        assert result.image_dir == str(images) and result.size > 0 and (images / "inventory.img").exists()
        await asyncio.wait_for(driver.wait(cid), 15)  # the dump ended the process
        last = max(await self._counts(driver, cid))
        await driver.delete(cid)
        st = await driver.restore(req, CheckpointRequest(image_dir=str(images)))
        assert st.status == "running" and st.pid > 0
        assert (await driver.state(cid)).status == "running"

        async def counted_on() -> bool:
            return len(await self._counts(driver, cid)) >= 2

        await async_wait_for(counted_on, 10, "the restored process counting")
        after = await self._counts(driver, cid)
        assert after[0] == last + 1, (last, after)  # memory came back: the count goes on

    async def test_checkpoint_leaving_it_running(self, driver, containers, rootfs, tmp_path) -> None:
        requires(driver, "checkpoint")
        if driver.checkpoint_support(self.runtime):
            pytest.skip(f"runtime {self.runtime or 'default'} cannot checkpoint here")
        cid = await self.run(driver, containers, rootfs, self.COUNTER)
        await wait_for_output(driver, cid, b"n2")
        await driver.checkpoint(cid, CheckpointRequest(image_dir=str(tmp_path / "i"), leave_running=True))
        assert (await driver.state(cid)).status == "running"
        n = len(await self._counts(driver, cid))

        async def more() -> bool:
            return len(await self._counts(driver, cid)) > n + 1

        await async_wait_for(more, 10, "the container counting on")

    async def test_a_runtime_that_cannot_checkpoint_says_why(self, driver, containers, rootfs, tmp_path) -> None:
        requires(driver, "checkpoint")
        why = driver.checkpoint_support(self.runtime)
        if not why:
            pytest.skip(f"runtime {self.runtime or 'default'} can checkpoint here")
        cid = await self.run(driver, containers, rootfs, LOOP)
        with pytest.raises(InvalidArgument, match="runc|CRIU|criu"):
            await driver.checkpoint(cid, CheckpointRequest(image_dir=str(tmp_path / "i")))
        assert (await driver.state(cid)).status == "running"
