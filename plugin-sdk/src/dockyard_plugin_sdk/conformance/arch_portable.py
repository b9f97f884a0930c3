"""The part of the ``arch`` kit a runtime that is not Linux can pass (Windows over HCS, ...).

:class:`~dockyard_plugin_sdk.conformance.arch.RuntimeContract` runs a busybox rootfs and POSIX
shell scripts, reads cgroups and ``/proc``: Linux only. :class:`PortableRuntimeContract` checks
the life cycle through the :class:`~dockyard.specs.arch.RuntimeDriver` ABC alone, with the
programs the driver's platform has, which the subclass names in :attr:`programs`:

* ``echo_hi`` -- writes ``hi`` to stdout and exits 0;
* ``exit_3`` -- exits with code 3;
* ``out_err_5`` -- writes ``out`` to stdout, ``err`` to stderr, exits 5;
* ``forever`` -- writes ``ready`` and runs until killed;
* ``short`` -- runs a little while (at least :attr:`short_seconds`), then exits 0;
* ``missing`` -- a program that does not exist.

and supplies ``driver`` and ``rootfs`` (what its storage path would hand the runtime)::

    class TestWindowsOnFakeHcs(PortableRuntimeContract):
        programs = {"echo_hi": ["cmd", "/c", "echo hi"], ...}

        @pytest.fixture
        async def driver(self, runtime_context): ...

        @pytest.fixture
        def rootfs(self, tmp_path): ...

Capabilities (``info.capabilities``): ``pause``, ``exec`` as in the Linux kit, and
``console-signals`` (SIGTERM/SIGINT arrive as the platform's console events and end a process
that does not handle them) or ``posix-signals``. SIGKILL must always end the container with a
non-zero exit code (137 on Linux, 1 on Windows). After every case the driver's ``list()`` must
not name a container the case made; :meth:`leftovers` adds the driver's own checks.
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

from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.model import Container, ContainerConfig, HostConfig, Image, new_id
from dockyard.specs.arch import ExecRequest, RuntimeCreateRequest, RuntimeDriver
from dockyard_plugin_sdk.testing import async_wait_for

from . import requires
from ._common import DriverContract

PROGRAMS = ("echo_hi", "exit_3", "out_err_5", "forever", "short", "missing")


def portable_request(rootfs: Path, cmd: list[str], **host: Any) -> RuntimeCreateRequest:
    cid = new_id()
    container = Container(id=cid, name=f"conf-{cid[:8]}", image_id="sha256:" + "0" * 64,
                          config=ContainerConfig(image="conformance", cmd=list(cmd)), host_config=HostConfig(**host))
    return RuntimeCreateRequest(container=container, image=Image(id="sha256:" + "0" * 64), rootfs=str(rootfs))


async def output_of(driver: RuntimeDriver, cid: str) -> bytes:
    return b"".join([rec.data async for rec in driver.logs(cid)])


class PortableRuntimeContract(DriverContract):
    """Life-cycle cases for any ``arch`` driver, whatever its platform (see the module doc)."""

    kind: ClassVar[str] = "arch"
    #: program name (see the module doc) -> argv on the driver's platform
    programs: ClassVar[dict[str, list[str]]] = {}
    #: how long ``short`` runs at least
    short_seconds: ClassVar[float] = 0.2

    @pytest.fixture
    def runtime_context(self) -> Any:
        from dockyard_plugin_sdk.conformance.arch import make_runtime_context

        base = Path(tempfile.mkdtemp(prefix="dy", dir="/tmp"))
        yield make_runtime_context(base, "dyc" + os.urandom(4).hex())
        shutil.rmtree(base, ignore_errors=True)

    @pytest.fixture
    def rootfs(self, tmp_path: Path) -> Path:
        raise NotImplementedError("a portable conformance subclass supplies `rootfs` (what its storage path makes)")

    def program(self, name: str) -> list[str]:
        assert name in PROGRAMS, name
        if name not in self.programs:
            raise NotImplementedError(f"{type(self).__name__}.programs has no {name!r}")
        return list(self.programs[name])

    async def leftovers(self, driver: RuntimeDriver, ids: list[str]) -> list[str]:
        """What is left of ``ids`` after they were removed; subclasses add platform checks."""
        return [cid for cid in await driver.list() if cid in ids]

    @pytest_asyncio.fixture
    async def containers(self, driver: RuntimeDriver) -> AsyncIterator[list[str]]:
        ids: list[str] = []
        yield ids
        for cid in ids:
            try:
                await driver.delete(cid, force=True)
            except NotFound:
                pass
        left = await self.leftovers(driver, ids)
        assert not left, f"left behind: {left}"

    async def run(self, driver: RuntimeDriver, containers: list[str], rootfs: Path, program: str,
                  **host: Any) -> str:
        req = portable_request(rootfs, self.program(program), **host)
        containers.append(req.container.id)
        assert (await driver.create(req)).status == "created"
        st = await driver.start(req.container.id)
        assert st.status in ("running", "stopped")
        return req.container.id

    async def wait_output(self, driver: RuntimeDriver, cid: str, needle: bytes) -> None:
        async def seen() -> bool:
            return needle in await output_of(driver, cid)

        await async_wait_for(seen, 10, f"{needle!r} in the logs of {cid}")

    # ------------------------------------------------------------------ cases
    def test_reports_a_native_platform(self, driver: RuntimeDriver) -> None:
        plats = driver.platforms()
        assert plats and plats[0].os and plats[0].architecture and not plats[0].emulated

    async def test_output_reaches_the_logs(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, "echo_hi")
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status == "stopped" and st.exit_code == 0
        assert b"hi" in await output_of(driver, cid)

    async def test_exit_code_propagates(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, "exit_3")
        assert (await asyncio.wait_for(driver.wait(cid), 15)).exit_code == 3
        assert (await driver.state(cid)).exit_code == 3

    async def test_wait_blocks_until_exit(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, "short")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert (await asyncio.wait_for(driver.wait(cid), 15)).exit_code == 0
        assert loop.time() - t0 >= self.short_seconds * 0.8
        t1 = loop.time()
        assert (await driver.wait(cid)).exit_code == 0  # already exited: at once
        assert loop.time() - t1 < 1.0

    async def test_state_transitions(self, driver, containers, rootfs) -> None:
        req = portable_request(rootfs, self.program("forever"))
        cid = req.container.id
        containers.append(cid)
        assert (await driver.create(req)).status == "created"
        assert (await driver.state(cid)).status == "created"
        assert cid in await driver.list()
        st = await driver.start(cid)
        assert st.status == "running" and st.pid > 0
        with pytest.raises(Conflict):
            await driver.start(cid)
        await driver.kill(cid, signal.SIGKILL)
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status == "stopped" and st.exit_code not in (None, 0)
        assert (await driver.state(cid)).status == "stopped"
        with pytest.raises(Conflict):
            await driver.start(cid)
        with pytest.raises(Conflict):
            await driver.kill(cid, signal.SIGKILL)

    async def test_create_twice_conflicts(self, driver, containers, rootfs) -> None:
        req = portable_request(rootfs, self.program("echo_hi"))
        containers.append(req.container.id)
        await driver.create(req)
        with pytest.raises(Conflict):
            await driver.create(req)

    async def test_unknown_container_is_not_found(self, driver) -> None:
        cid = new_id()
        for call in (driver.state(cid), driver.start(cid), driver.wait(cid), driver.kill(cid, signal.SIGKILL),
                     driver.delete(cid)):
            with pytest.raises(NotFound):
                await call

    async def test_a_missing_program_never_runs(self, driver, containers, rootfs) -> None:
        """Refused with a typed error at create (crun checks the executable) or at start (HCS's
        CreateProcess), or it ends at once with a non-zero exit code; never a running container."""
        req = portable_request(rootfs, self.program("missing"))
        cid = req.container.id
        containers.append(cid)
        try:
            await driver.create(req)
        except DockyardError:
            with pytest.raises(NotFound):
                await driver.state(cid)  # nothing was kept
            return
        try:
            st = await driver.start(cid)
        except DockyardError:
            st = await driver.state(cid)
        else:
            st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status in ("created", "stopped") and st.exit_code != 0

    async def test_delete_running_needs_force(self, driver, containers, rootfs) -> None:
        cid = await self.run(driver, containers, rootfs, "forever")
        with pytest.raises(Conflict):
            await driver.delete(cid)
        assert (await driver.state(cid)).status == "running"
        await driver.delete(cid, force=True)
        with pytest.raises(NotFound):
            await driver.state(cid)
        assert cid not in await driver.list()

    async def test_pause_and_resume(self, driver, containers, rootfs) -> None:
        requires(driver, "pause")
        cid = await self.run(driver, containers, rootfs, "forever")
        await driver.pause(cid)
        assert (await driver.state(cid)).status == "paused"
        with pytest.raises(Conflict):
            await driver.pause(cid)
        await driver.resume(cid)
        assert (await driver.state(cid)).status == "running"

    async def test_terminate_signal_ends_it(self, driver, containers, rootfs) -> None:
        if not {"console-signals", "posix-signals"} & driver.info.capabilities:
            pytest.skip("driver declares neither console-signals nor posix-signals")
        cid = await self.run(driver, containers, rootfs, "forever")
        await self.wait_output(driver, cid, b"ready")
        await driver.kill(cid, signal.SIGTERM)
        st = await asyncio.wait_for(driver.wait(cid), 15)
        assert st.status == "stopped" and st.exit_code not in (None, 0)

    async def test_exec_exit_code_and_output(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        cid = await self.run(driver, containers, rootfs, "forever")
        eid = new_id()
        st = await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=self.program("out_err_5")))
        assert st.status in ("running", "stopped")
        assert (await asyncio.wait_for(driver.exec_wait(eid), 15)).exit_code == 5
        got = [(r.stream, r.data.strip()) async for r in driver.exec_logs(eid)]
        assert got == [("stdout", b"out"), ("stderr", b"err")]
        assert (await driver.exec_state(eid)).exit_code == 5
        await driver.exec_delete(eid)
        with pytest.raises(NotFound):
            await driver.exec_state(eid)

    async def test_exec_of_a_missing_program(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        cid = await self.run(driver, containers, rootfs, "forever")
        eid = new_id()
        await driver.exec(ExecRequest(container_id=cid, exec_id=eid, cmd=self.program("missing")))
        st = await asyncio.wait_for(driver.exec_wait(eid), 15)
        assert st.exit_code in (126, 127) and st.error

    async def test_exec_needs_a_running_container(self, driver, containers, rootfs) -> None:
        requires(driver, "exec")
        cid = await self.run(driver, containers, rootfs, "echo_hi")
        await asyncio.wait_for(driver.wait(cid), 15)
        with pytest.raises(Conflict):
            await driver.exec(ExecRequest(container_id=cid, exec_id=new_id(), cmd=self.program("echo_hi")))
