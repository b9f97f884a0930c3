"""An in-memory Host Compute Service for Linux: the state machine, handles and HRESULTs.

:class:`FakeHcs` keeps what ``vmcomputesvc`` keeps -- compute systems by id with their state
(``Created`` → ``Running`` ⇄ ``Paused`` → ``Stopped``), open handles, processes -- and fails
as HCS does: a start of a running system is ``HCS_E_INVALID_STATE``, an unknown id
``HCS_E_SYSTEM_NOT_FOUND``, a second system of the same id ``HCS_E_SYSTEM_ALREADY_EXISTS``, a
terminate of a stopped one ``HCS_E_SYSTEM_ALREADY_STOPPED``, a document that is not JSON or
lacks ``SchemaVersion`` ``HCS_E_INVALID_JSON``, a program that is not there
``ERROR_FILE_NOT_FOUND``. A stopped system goes away when its last handle is closed (a running
one too when its document asked ``ShouldTerminateOnLastHandleClosed``). A Hyper-V container
names a ``HostingSystemId`` that must be a running VM.

Processes run a tiny ``cmd.exe``: ``cmd /c`` with ``&``-separated ``echo TEXT``,
``echo TEXT 1>&2``, ``exit [/b] N``, ``ping -n N HOST`` (waits N-1 ticks) and ``ping -t HOST``
(until killed); a Ctrl event ends a process with ``STATUS_CONTROL_C_EXIT``, a terminate with
exit code 1. ``tick`` is the length of ping's second (short in tests).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from dockyard_arch_windows import hcs
from dockyard_arch_windows.hcs import CREATED, PAUSED, RUNNING, STOPPED, HcsError, HcsTransport

STATUS_CONTROL_C_EXIT = 0xC000013A
PROGRAMS = {"cmd", "cmd.exe", "ping", "ping.exe", "c:\\windows\\system32\\cmd.exe", "c:\\windows\\system32\\ping.exe"}


@dataclass
class _Process:
    pid: int
    system: _System
    script: list[list[str]]
    output: list[tuple[str, bytes]] = field(default_factory=list)
    exit_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    stop_code: int = 1
    closed: bool = False


@dataclass
class _System:
    id: str
    document: dict[str, Any]
    state: str = CREATED
    handles: int = 0
    exit_code: int | None = None
    processes: list[_Process] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "VirtualMachine" if "VirtualMachine" in self.document else "Container"


@dataclass
class _Handle:
    system: _System
    closed: bool = False


class FakeHcs(HcsTransport):
    """See the module docstring. ``tick`` scales ``ping -n``'s seconds."""

    def __init__(self, tick: float = 0.1) -> None:
        self.tick = tick
        self.systems: dict[str, _System] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._pids = itertools.count(1000, 4)

    # ----------------------------------------------------------------- systems
    def _sys(self, handle: object, op: str) -> _System:
        if not isinstance(handle, _Handle) or handle.closed:
            raise HcsError(hcs.E_INVALIDARG, op, "", "invalid or closed handle")
        if self.systems.get(handle.system.id) is not handle.system:
            raise HcsError(hcs.HCS_E_SYSTEM_NOT_FOUND, op, handle.system.id)
        return handle.system

    def create_compute_system(self, system_id: str, document: str) -> object:
        self.calls.append("HcsCreateComputeSystem")
        try:
            doc = json.loads(document)
        except ValueError as exc:
            raise HcsError(hcs.HCS_E_INVALID_JSON, "HcsCreateComputeSystem", system_id, str(exc)) from None
        if not isinstance(doc, dict) or doc.get("SchemaVersion", {}).get("Major") != 2:
            raise HcsError(hcs.HCS_E_INVALID_JSON, "HcsCreateComputeSystem", system_id, "SchemaVersion 2.x required")
        with self._lock:
            if system_id in self.systems:
                raise HcsError(hcs.HCS_E_SYSTEM_ALREADY_EXISTS, "HcsCreateComputeSystem", system_id)
            host = doc.get("HostingSystemId")
            if host:
                vm = self.systems.get(host)
                if vm is None:
                    raise HcsError(hcs.HCS_E_SYSTEM_NOT_FOUND, "HcsCreateComputeSystem", host)
                if vm.state != RUNNING:
                    raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsCreateComputeSystem", host, "utility VM not running")
            for layer in doc.get("Container", {}).get("Storage", {}).get("Layers", []):
                if not layer.get("Id") or not layer.get("Path"):
                    raise HcsError(hcs.HCS_E_INVALID_LAYER, "HcsCreateComputeSystem", system_id)
            system = _System(system_id, doc, handles=1)
            self.systems[system_id] = system
        return _Handle(system)

    def open_compute_system(self, system_id: str) -> object:
        self.calls.append("HcsOpenComputeSystem")
        with self._lock:
            system = self.systems.get(system_id)
            if system is None:
                raise HcsError(hcs.HCS_E_SYSTEM_NOT_FOUND, "HcsOpenComputeSystem", system_id)
            system.handles += 1
        return _Handle(system)

    def start_compute_system(self, system: object) -> None:
        self.calls.append("HcsStartComputeSystem")
        with self._lock:
            s = self._sys(system, "HcsStartComputeSystem")
            if s.state != CREATED:
                raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsStartComputeSystem", s.id, f"state {s.state}")
            s.state = RUNNING

    def _stop(self, s: _System, code: int) -> None:
        s.state = STOPPED
        s.exit_code = code
        for p in s.processes:
            if p.exit_code is None:
                p.stop_code = 1
                p.stop.set()
        # a VM takes its hosted containers with it
        for other in self.systems.values():
            if other.document.get("HostingSystemId") == s.id and other.state != STOPPED:
                self._stop(other, code)

    def terminate_compute_system(self, system: object) -> None:
        self.calls.append("HcsTerminateComputeSystem")
        with self._lock:
            s = self._sys(system, "HcsTerminateComputeSystem")
            if s.state == STOPPED:
                raise HcsError(hcs.HCS_E_SYSTEM_ALREADY_STOPPED, "HcsTerminateComputeSystem", s.id)
            self._stop(s, 1)
        self._join(s)

    def _join(self, s: _System) -> None:
        for p in list(s.processes):
            p.done.wait(5)

    def pause_compute_system(self, system: object) -> None:
        self.calls.append("HcsPauseComputeSystem")
        with self._lock:
            s = self._sys(system, "HcsPauseComputeSystem")
            if s.state != RUNNING:
                raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsPauseComputeSystem", s.id, f"state {s.state}")
            s.state = PAUSED

    def resume_compute_system(self, system: object) -> None:
        self.calls.append("HcsResumeComputeSystem")
        with self._lock:
            s = self._sys(system, "HcsResumeComputeSystem")
            if s.state != PAUSED:
                raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsResumeComputeSystem", s.id, f"state {s.state}")
            s.state = RUNNING

    def get_compute_system_properties(self, system: object, query: str = "") -> str:
        with self._lock:
            s = self._sys(system, "HcsGetComputeSystemProperties")
            props: dict[str, Any] = {"Id": s.id, "State": s.state, "SystemType": s.kind,
                                     "Owner": s.document.get("Owner", "")}
            if s.exit_code is not None:
                props["ExitCode"] = s.exit_code
            return json.dumps(props)

    def close_compute_system(self, system: object) -> None:
        self.calls.append("HcsCloseComputeSystem")
        with self._lock:
            if not isinstance(system, _Handle) or system.closed:
                raise HcsError(hcs.E_INVALIDARG, "HcsCloseComputeSystem", "", "invalid or closed handle")
            system.closed = True
            s = system.system
            s.handles -= 1
            if s.handles > 0 or self.systems.get(s.id) is not s:
                return
            if s.state != STOPPED and s.document.get("ShouldTerminateOnLastHandleClosed"):
                self._stop(s, 1)
            if s.state == STOPPED:
                del self.systems[s.id]

    def enumerate_compute_systems(self, query: str = "") -> str:
        with self._lock:
            return json.dumps([{"Id": s.id, "State": s.state, "Owner": s.document.get("Owner", ""),
                                "SystemType": s.kind} for s in self.systems.values()])

    # ----------------------------------------------------------------- processes
    def create_process(self, system: object, parameters: str) -> tuple[object, int]:
        self.calls.append("HcsCreateProcess")
        params = json.loads(parameters)
        with self._lock:
            s = self._sys(system, "HcsCreateProcess")
            if s.state != RUNNING:
                raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsCreateProcess", s.id, f"state {s.state}")
            script = _parse(params.get("CommandLine", ""))
            proc = _Process(next(self._pids), s, script)
            s.processes.append(proc)
        threading.Thread(target=self._run, args=(proc,), daemon=True, name=f"fakehcs-{proc.pid}").start()
        return proc, proc.pid

    def _run(self, p: _Process) -> None:
        code = 0
        for stmt in p.script:
            if p.stop.is_set():
                break
            verb = stmt[0].lower()
            if verb == "echo":
                words = stmt[1:]
                stream = "stdout"
                if words and words[-1] == "1>&2":
                    stream, words = "stderr", words[:-1]
                with self._lock:
                    p.output.append((stream, (" ".join(words) + "\r\n").encode()))
            elif verb == "exit":
                args = [a for a in stmt[1:] if a.lower() != "/b"]
                code = int(args[0]) if args else 0
                break
            elif verb in ("ping", "ping.exe"):
                if "-t" in stmt:
                    with self._lock:
                        p.output.append(("stdout", b"Pinging localhost with 32 bytes of data:\r\n"))
                    p.stop.wait()
                else:
                    n = int(stmt[stmt.index("-n") + 1]) if "-n" in stmt else 4
                    if p.stop.wait(self.tick * max(n - 1, 0)):
                        break
                code = 0
        if p.stop.is_set():
            code = p.stop_code
        with self._lock:
            p.exit_code = code & 0xFFFFFFFF
        p.done.set()

    def _proc(self, process: object, op: str) -> _Process:
        if not isinstance(process, _Process) or process.closed:
            raise HcsError(hcs.E_INVALIDARG, op, "", "invalid or closed process handle")
        return process

    def wait_process(self, process: object, timeout: float | None = None) -> int | None:
        p = self._proc(process, "HcsWaitForProcessExit")
        if not p.done.wait(timeout):
            return None
        return p.exit_code

    def read_output(self, process: object) -> list[tuple[str, bytes]]:
        p = self._proc(process, "ReadFile")
        with self._lock:
            out, p.output = p.output, []
        return out

    def terminate_process(self, process: object) -> None:
        self.calls.append("HcsTerminateProcess")
        p = self._proc(process, "HcsTerminateProcess")
        with self._lock:
            if p.exit_code is not None:
                raise HcsError(hcs.HCS_E_PROCESS_ALREADY_STOPPED, "HcsTerminateProcess", str(p.pid))
            p.stop_code = 1
            p.stop.set()
        p.done.wait(5)

    def signal_process(self, process: object, signal: int) -> None:
        self.calls.append("HcsSignalProcess")
        p = self._proc(process, "HcsSignalProcess")
        with self._lock:
            if p.exit_code is not None:
                raise HcsError(hcs.HCS_E_PROCESS_ALREADY_STOPPED, "HcsSignalProcess", str(p.pid))
            if p.system.state == PAUSED:
                raise HcsError(hcs.HCS_E_INVALID_STATE, "HcsSignalProcess", p.system.id, "paused")
            p.stop_code = STATUS_CONTROL_C_EXIT
            p.stop.set()
        p.done.wait(5)

    def close_process(self, process: object) -> None:
        self.calls.append("HcsCloseProcess")
        p = self._proc(process, "HcsCloseProcess")
        p.closed = True


def _parse(command_line: str) -> list[list[str]]:
    """``cmd /c a & b`` → ``[[a...], [b...]]``; a bare program is one statement. The program
    must be one the fake knows (``cmd``, ``ping``): anything else is ERROR_FILE_NOT_FOUND."""
    words = command_line.split()
    if not words or words[0].strip('"').lower() not in PROGRAMS:
        raise HcsError(hcs.E_FILE_NOT_FOUND, "HcsCreateProcess", words[0] if words else "",
                       "The system cannot find the file specified.")
    prog = words[0].strip('"').lower().rsplit("\\", 1)[-1]
    if prog.startswith("cmd"):
        rest = words[2:] if len(words) > 1 and words[1].lower() in ("/c", "/s") else []
        stmts: list[list[str]] = [[]]
        for w in rest:
            if w == "&":
                stmts.append([])
            else:
                stmts[-1].append(w.strip('"'))
        return [s for s in stmts if s] or [["exit", "0"]]
    return [words]
