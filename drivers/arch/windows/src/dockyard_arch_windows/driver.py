"""``WindowsRuntime``: the ``arch`` driver for Windows containers, over the Host Compute Service.

A container is one HCS compute system (``Container`` document, :mod:`.documents`); under
Hyper-V isolation it is hosted by a utility VM, a second compute system named ``<id>@vm``
made and started first and removed with it. The container's command is its init process
(``HcsCreateProcess``); when it exits the compute system is terminated, as hcsshim's shim
does. ``kill``: SIGKILL terminates the compute system, SIGTERM/SIGINT send the init process a
console control event (``CtrlShutdown``/``CtrlC``); other signals do not exist on Windows.

The storage path hands the driver ``RuntimeCreateRequest.rootfs`` = the container's scratch
layer directory holding ``layerchain.json`` (the read-only layer directories, topmost first:
docker's windowsfilter layout, written by :mod:`.layers`).

Driver options (``DriverContext.options``): ``transport`` (``computecore``, the default on
Windows, or ``fake``), ``isolation`` (the host's default: ``process``, as Windows Server;
``hyperv`` as Windows 10/11), ``os-version`` (the host's build, ``10.0.20348.2527``; read from
the registry on Windows), ``host-cpus``, ``network-namespace`` (an HNS namespace GUID shared by
every container until HNS networking exists).

Output and exit codes are kept in memory per driver instance (no live-restore).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal as _signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errors as e
from dockyard import platforms as P
from dockyard.model import now_iso
from dockyard.specs import DriverInfo
from dockyard.specs.arch import (
    ExecRequest,
    LogRecord,
    Platform,
    RuntimeCreateRequest,
    RuntimeDriver,
    RuntimeState,
)
from dockyard_arch_windows import documents as D
from dockyard_arch_windows.hcs import HcsError, HcsTransport, to_dockyard

LAYERCHAIN = "layerchain.json"
POLL = 0.1  # seconds between output reads of a running process


def make_transport(name: str) -> HcsTransport:
    """``computecore`` (the real one; Unavailable off Windows) or ``fake``."""
    if name == "fake":
        from dockyard_arch_windows.fake import FakeHcs

        return FakeHcs()
    if name == "computecore":
        from dockyard_arch_windows.computecore import ComputeCore

        return ComputeCore()
    raise e.InvalidArgument(f"unknown HCS transport {name!r}: computecore or fake")


def read_layerchain(scratch: str) -> list[D.LayerRef]:
    """The read-only layers of a scratch layer directory, topmost first."""
    path = Path(scratch) / LAYERCHAIN
    try:
        chain = json.loads(path.read_text())
    except FileNotFoundError:
        raise e.InvalidArgument(f"{scratch} is not a Windows container layer (no {LAYERCHAIN}): "
                                "Windows containers need a Windows image") from None
    except ValueError as exc:
        raise e.InvalidArgument(f"{path}: {exc}") from exc
    if not isinstance(chain, list) or not chain or not all(isinstance(p, str) and p for p in chain):
        raise e.InvalidArgument(f"{path}: expected a non-empty list of layer directories")
    return [D.LayerRef(D.layer_guid(p), p) for p in chain]


def check_os_version(host_version: str, image_version: str, isolation: str) -> None:
    """Refuse an image the host cannot run: process isolation needs a compatible build
    (:func:`dockyard.platforms.windows_compatible`), Hyper-V isolation any build up to the
    host's. Unknown versions pass."""
    if not host_version or not image_version:
        return
    host = P.Platform("windows", "amd64", os_version=host_version)
    image = P.Platform("windows", "amd64", os_version=image_version)
    if isolation == "process":
        if not P.only(host).match(image):
            raise e.InvalidArgument(
                f"the image's Windows build {image_version} cannot run with process isolation on this host "
                f"({host_version}): use --isolation=hyperv or an image built for {host_version}")
        return
    build = lambda v: tuple(int(x) for x in v.split(".")[:3] if x.isdigit())  # noqa: E731
    if build(image_version) > build(host_version):
        raise e.InvalidArgument(f"the image's Windows build {image_version} is newer than this host's "
                                f"({host_version}): not even Hyper-V isolation runs it")


@dataclass
class _Proc:
    handle: object
    pid: int
    records: list[LogRecord] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    error: str = ""
    finished_at: str = ""
    pump: asyncio.Task[None] | None = None


@dataclass
class _Box:
    id: str
    system: object
    isolation: str
    uvm: object | None = None
    status: str = "created"
    init: _Proc | None = None
    execs: dict[str, _Proc] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class WindowsRuntime(RuntimeDriver):
    info = DriverInfo(name="windows", kind="arch",
                      description="Windows containers through the Host Compute Service (process and Hyper-V isolation)",
                      capabilities=frozenset({"pause", "exec", "console-signals"}))

    def __init__(self, context, transport: HcsTransport | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context)
        opts = context.options
        #: ``computecore`` unless told: off Windows that fails at setup, loudly (never a silent fake)
        self.transport_name = opts.get("transport", "computecore")
        self._transport = transport
        self.default_isolation = opts.get("isolation", "process")
        if self.default_isolation not in ("process", "hyperv"):
            raise e.InvalidArgument(f"isolation option: process or hyperv, not {self.default_isolation!r}")
        self.os_version = opts.get("os-version", "")
        self.host_cpus = int(opts.get("host-cpus", "0") or 0) or (os.cpu_count() or 1)
        self.network_namespace = opts.get("network-namespace", "")
        self.boxes: dict[str, _Box] = {}
        self.owner = f"dockyard-{context.owner}"

    @property
    def hcs(self) -> HcsTransport:
        if self._transport is None:
            self._transport = make_transport(self.transport_name)
        return self._transport

    async def setup(self) -> None:
        self.hcs  # noqa: B018 - load the transport now: a host without HCS fails at start, loudly

    def status(self) -> list[tuple[str, str]]:
        return [("Transport", self.transport_name if self._transport is None else type(self._transport).__name__),
                ("Default Isolation", self.default_isolation), ("OS Version", self.os_version or "unknown")]

    def platforms(self) -> list[Platform]:
        return [Platform("windows", "amd64")]

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return await asyncio.to_thread(fn, *args)
        except HcsError as exc:
            raise to_dockyard(exc) from exc

    def _box(self, cid: str) -> _Box:
        box = self.boxes.get(cid)
        if box is None:
            raise e.NotFound(f"no such container: {cid}")
        return box

    # ----------------------------------------------------------------- life cycle
    async def create(self, request: RuntimeCreateRequest) -> RuntimeState:
        c = request.container
        if c.id in self.boxes:
            raise e.Conflict(f"container {c.id} exists in the windows runtime")
        iso = D.isolation(c, self.default_isolation)
        check_os_version(self.os_version, request.image.os_version, iso)
        layers = read_layerchain(request.rootfs)
        args = list(c.config.entrypoint) + list(c.config.cmd)
        params = D.process_parameters(args, list(request.extra_env) + list(c.config.env), c.config.working_dir,
                                      c.config.user, tty=c.config.tty, stdin=c.config.open_stdin)
        uvm = None
        if iso == "hyperv":
            uvm_image = str(Path(layers[-1].path) / "UtilityVM" / "Files")
            vm_doc = D.utility_vm_document(c, layers, uvm_image, str(Path(request.rootfs) / "uvm-sandbox.vhdx"),
                                           mounts=request.mounts, owner=self.owner)
            uvm = await self._call(self.hcs.create_compute_system, c.id + D.UVM_SUFFIX, json.dumps(vm_doc))
            try:
                await self._call(self.hcs.start_compute_system, uvm)
            except BaseException:
                await self._close_system(uvm, terminate=True)
                raise
        doc = D.container_document(c, layers, request.rootfs, mounts=request.mounts,
                                   network_namespace=self.network_namespace, owner=self.owner,
                                   host_cpus=self.host_cpus,
                                   hosting_system_id=c.id + D.UVM_SUFFIX if uvm is not None else "")
        try:
            system = await self._call(self.hcs.create_compute_system, c.id, json.dumps(doc))
        except BaseException:
            if uvm is not None:
                await self._close_system(uvm, terminate=True)
            raise
        self.boxes[c.id] = _Box(c.id, system, iso, uvm, params=params)
        return RuntimeState(status="created")

    async def _close_system(self, handle: object, terminate: bool) -> None:
        if terminate:
            try:
                await asyncio.to_thread(self.hcs.terminate_compute_system, handle)
            except HcsError:
                pass  # already stopped or gone
        try:
            await asyncio.to_thread(self.hcs.close_compute_system, handle)
        except HcsError:
            pass

    async def start(self, container_id: str) -> RuntimeState:
        box = self._box(container_id)
        if box.status != "created":
            raise e.Conflict(f"container {container_id} is {box.status}: a Windows container starts once")
        await self._call(self.hcs.start_compute_system, box.system)
        box.status = "running"
        try:
            handle, pid = await self._call(self.hcs.create_process, box.system, json.dumps(box.params))
        except e.DockyardError as exc:
            await self._call(self.hcs.terminate_compute_system, box.system)
            box.status = "stopped"
            box.init = _Proc(None, 0, exit_code=127 if isinstance(exc, e.NotFound) else 126, error=str(exc),
                             finished_at=now_iso())
            box.exited.set()
            raise
        proc = box.init = _Proc(handle, pid)
        proc.pump = asyncio.create_task(self._pump(proc, box))
        return RuntimeState(status="running", pid=pid)

    async def _pump(self, proc: _Proc, box: _Box | None) -> None:
        """Move the process's output into its records until it exits; an init process's exit
        stops its compute system."""
        while True:
            code = await asyncio.to_thread(self.hcs.wait_process, proc.handle, POLL)
            for stream, data in await asyncio.to_thread(self.hcs.read_output, proc.handle):
                proc.records.append(LogRecord(stream, now_iso(), data))
                proc.changed.set()
            if code is not None:
                break
        proc.exit_code, proc.finished_at = code, now_iso()
        proc.changed.set()
        await asyncio.to_thread(self.hcs.close_process, proc.handle)
        if box is not None:
            try:
                await asyncio.to_thread(self.hcs.terminate_compute_system, box.system)
            except HcsError:
                pass  # killed: already stopped
            for ex in box.execs.values():
                if ex.pump is not None:
                    await asyncio.shield(ex.pump)
            box.status = "stopped"
            box.exited.set()

    def _state_of(self, box: _Box) -> RuntimeState:
        init = box.init
        if init is None:
            return RuntimeState(status=box.status)
        return RuntimeState(status=box.status, pid=init.pid if box.status != "stopped" else 0,
                            exit_code=init.exit_code if box.status == "stopped" else None,
                            finished_at=init.finished_at, error=init.error)

    async def state(self, container_id: str) -> RuntimeState:
        return self._state_of(self._box(container_id))

    async def wait(self, container_id: str) -> RuntimeState:
        box = self._box(container_id)
        await box.exited.wait()
        return self._state_of(box)

    async def kill(self, container_id: str, signal: int) -> None:
        box = self._box(container_id)
        if box.status not in ("running", "paused") or box.init is None:
            raise e.Conflict(f"container {container_id} is not running")
        if signal == _signal.SIGKILL:
            await self._call(self.hcs.terminate_compute_system, box.system)
        elif signal in (_signal.SIGTERM, _signal.SIGINT):
            await self._call(self.hcs.signal_process, box.init.handle, int(signal))
        else:
            raise e.InvalidArgument(f"signal {signal} does not exist on Windows: use SIGTERM, SIGINT or SIGKILL")
        if box.init.pump is not None:
            await asyncio.shield(box.init.pump)

    async def pause(self, container_id: str) -> None:
        box = self._box(container_id)
        await self._call(self.hcs.pause_compute_system, box.system)
        box.status = "paused"

    async def resume(self, container_id: str) -> None:
        box = self._box(container_id)
        await self._call(self.hcs.resume_compute_system, box.system)
        box.status = "running"

    async def delete(self, container_id: str, force: bool = False) -> None:
        box = self._box(container_id)
        if box.status in ("running", "paused"):
            if not force:
                raise e.Conflict(f"container {container_id} is {box.status}: stop it or force the removal")
            try:
                await asyncio.to_thread(self.hcs.terminate_compute_system, box.system)
            except HcsError:
                pass
        if box.init is not None and box.init.pump is not None:
            await box.init.pump
        for ex in box.execs.values():
            if ex.pump is not None:
                await ex.pump
        await self._close_system(box.system, terminate=False)
        if box.uvm is not None:
            await self._close_system(box.uvm, terminate=True)
        del self.boxes[container_id]

    async def list(self) -> list[str]:
        systems = json.loads(await self._call(self.hcs.enumerate_compute_systems, "") or "[]")
        return sorted(s["Id"] for s in systems
                      if s.get("Owner") == self.owner and not s["Id"].endswith(D.UVM_SUFFIX))

    # ----------------------------------------------------------------- exec
    async def exec(self, request: ExecRequest) -> RuntimeState:
        box = self._box(request.container_id)
        if box.status != "running":
            raise e.Conflict(f"container {request.container_id} is not running")
        if request.exec_id in box.execs:
            raise e.Conflict(f"exec session {request.exec_id} exists")
        params = D.process_parameters(request.cmd, request.env, request.working_dir, request.user,
                                      tty=request.tty, stdin=request.stdin)
        try:
            handle, pid = await self._call(self.hcs.create_process, box.system, json.dumps(params))
        except e.NotFound as exc:
            box.execs[request.exec_id] = _Proc(None, 0, exit_code=127, error=str(exc), finished_at=now_iso())
            return RuntimeState(status="stopped", exit_code=127, error=str(exc))
        proc = box.execs[request.exec_id] = _Proc(handle, pid)
        proc.pump = asyncio.create_task(self._pump(proc, None))
        return RuntimeState(status="running", pid=pid)

    def _exec(self, exec_id: str) -> _Proc:
        for box in self.boxes.values():
            if exec_id in box.execs:
                return box.execs[exec_id]
        raise e.NotFound(f"no such exec session: {exec_id}")

    @staticmethod
    def _exec_state(proc: _Proc) -> RuntimeState:
        if proc.exit_code is None:
            return RuntimeState(status="running", pid=proc.pid)
        return RuntimeState(status="stopped", exit_code=proc.exit_code, error=proc.error,
                            finished_at=proc.finished_at)

    async def exec_state(self, exec_id: str) -> RuntimeState:
        return self._exec_state(self._exec(exec_id))

    async def exec_wait(self, exec_id: str) -> RuntimeState:
        proc = self._exec(exec_id)
        if proc.pump is not None:
            await asyncio.shield(proc.pump)
        return self._exec_state(proc)

    async def exec_delete(self, exec_id: str) -> None:
        proc = self._exec(exec_id)
        if proc.exit_code is None:
            try:
                await asyncio.to_thread(self.hcs.terminate_process, proc.handle)
            except HcsError:
                pass
        if proc.pump is not None:
            await proc.pump
        for box in self.boxes.values():
            box.execs.pop(exec_id, None)

    def exec_logs(self, exec_id: str, follow: bool = False) -> AsyncIterator[LogRecord]:
        return self._records(self._exec(exec_id), follow, None)

    def logs(self, container_id: str, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogRecord]:
        box = self._box(container_id)
        if box.init is None:
            return self._records(_Proc(None, 0, exit_code=0), False, tail)
        return self._records(box.init, follow, tail)

    @staticmethod
    async def _records(proc: _Proc, follow: bool, tail: int | None) -> AsyncIterator[LogRecord]:
        start = max(len(proc.records) - tail, 0) if tail is not None else 0
        i = start
        while True:
            proc.changed.clear()
            while i < len(proc.records):
                yield proc.records[i]
                i += 1
            if not follow or proc.exit_code is not None:
                while i < len(proc.records):
                    yield proc.records[i]
                    i += 1
                return
            await proc.changed.wait()
