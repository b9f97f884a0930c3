"""The real HCS transport: ``computecore.dll`` (HCS API v2) through :mod:`ctypes`.

Import-safe everywhere: nothing Windows-specific happens at import; :class:`ComputeCore`
loads the DLL when it is made (``ctypes.WinDLL``, which only Windows has) and raises
:class:`dockyard.errors.Unavailable` elsewhere. Every call follows the API's pattern:
``HcsCreateOperation`` → the call (returns an HRESULT at once) →
``HcsWaitForOperationResult`` (the result JSON, freed with ``LocalFree``) →
``HcsCloseOperation``. Strings are UTF-16 (``c_wchar_p``).

Process exit is found by polling ``HcsGetProcessProperties`` (``Exited``/``ExitCode``) rather
than by registering an ``HcsEventProcessExited`` callback; stdout/stderr are the pipe handles
``HcsWaitForOperationResultAndProcessInfo`` returns, read with ``PeekNamedPipe``/``ReadFile``.

NOT verified on Linux CI (no DLL): only that the module imports, refuses to load, carries the
prototypes of computecore.h, and turns an immediate failing HRESULT into :class:`HcsError`.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from ctypes import POINTER, Structure, c_uint32, c_void_p, c_wchar_p
from typing import Any

from dockyard.errors import Unavailable
from dockyard_arch_windows.hcs import HcsError, HcsTransport

INFINITE = 0xFFFFFFFF
GENERIC_ALL = 0x10000000


class HcsProcessInformation(Structure):
    """``HCS_PROCESS_INFORMATION`` (computecore.h)."""

    _fields_ = [("ProcessId", c_uint32), ("Reserved", c_uint32), ("StdInput", c_void_p),
                ("StdOutput", c_void_p), ("StdError", c_void_p)]


#: name -> (restype, argtypes), from computecore.h (HRESULT is a 32-bit signed int; handles void*)
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "HcsCreateOperation": (c_void_p, [c_void_p, c_void_p]),
    "HcsCloseOperation": (None, [c_void_p]),
    "HcsWaitForOperationResult": (ctypes.c_long, [c_void_p, c_uint32, POINTER(c_void_p)]),
    "HcsWaitForOperationResultAndProcessInfo": (ctypes.c_long, [c_void_p, c_uint32,
                                                                POINTER(HcsProcessInformation),
                                                                POINTER(c_void_p)]),
    "HcsCreateComputeSystem": (ctypes.c_long, [c_wchar_p, c_wchar_p, c_void_p, c_void_p, POINTER(c_void_p)]),
    "HcsOpenComputeSystem": (ctypes.c_long, [c_wchar_p, c_uint32, POINTER(c_void_p)]),
    "HcsStartComputeSystem": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsShutDownComputeSystem": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsTerminateComputeSystem": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsPauseComputeSystem": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsResumeComputeSystem": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsGetComputeSystemProperties": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsEnumerateComputeSystems": (ctypes.c_long, [c_wchar_p, c_void_p]),
    "HcsCloseComputeSystem": (None, [c_void_p]),
    "HcsCreateProcess": (ctypes.c_long, [c_void_p, c_wchar_p, c_void_p, c_void_p, POINTER(c_void_p)]),
    "HcsGetProcessProperties": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsTerminateProcess": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsSignalProcess": (ctypes.c_long, [c_void_p, c_void_p, c_wchar_p]),
    "HcsCloseProcess": (None, [c_void_p]),
}

#: SIGINT/SIGTERM as HCS ``ProcessSignal`` documents (Windows has console control events)
SIGNALS = {2: "CtrlC", 15: "CtrlShutdown", 1: "CtrlClose"}


class _Proc:
    def __init__(self, handle: int, info: HcsProcessInformation) -> None:
        self.handle = handle
        self.pid = info.ProcessId
        self.pipes = (("stdout", info.StdOutput), ("stderr", info.StdError))


def load(dll: Any = None) -> Any:
    """``computecore.dll`` with its prototypes set; Unavailable off Windows or when the DLL is
    missing (the Containers feature is not installed)."""
    if dll is None:
        if sys.platform != "win32":
            raise Unavailable("the Host Compute Service needs Windows: computecore.dll cannot be loaded on "
                              f"{sys.platform} (use the fake transport for tests)")
        try:
            dll = ctypes.WinDLL("computecore.dll")  # type: ignore[attr-defined]
        except OSError as exc:
            raise Unavailable(f"computecore.dll cannot be loaded ({exc}): enable the Containers feature") from exc
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(dll, name)
        fn.restype, fn.argtypes = restype, argtypes
    return dll


class ComputeCore(HcsTransport):
    """:class:`HcsTransport` over ``computecore.dll``; ``dll`` for tests (an object with the
    functions as attributes)."""

    def __init__(self, dll: Any = None, timeout_ms: int = 240_000) -> None:
        self.dll = load(dll)
        self.timeout_ms = timeout_ms
        self._kernel32: Any = None

    # ----------------------------------------------------------------- plumbing
    def _free(self, ptr: c_void_p) -> str:
        if not ptr.value:
            return ""
        text = ctypes.wstring_at(ptr.value)
        if self._kernel32 is None:
            self._kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
        self._kernel32.LocalFree(ptr)
        return text

    def _op(self, name: str, target: str, call: Any, *args: Any) -> str:
        """Run ``call(*args, operation)`` and wait for its result document."""
        op = self.dll.HcsCreateOperation(None, None)
        try:
            hr = call(*args[:1], op, *args[1:]) if args else call(op)
            if hr:
                raise HcsError(hr, name, target)
            result = c_void_p()
            hr = self.dll.HcsWaitForOperationResult(op, self.timeout_ms, ctypes.byref(result))
            text = self._free(result)
            if hr:
                raise HcsError(hr, name, target, text)
            return text
        finally:
            self.dll.HcsCloseOperation(op)

    # ----------------------------------------------------------------- systems
    def create_compute_system(self, system_id: str, document: str) -> object:
        handle = c_void_p()
        op = self.dll.HcsCreateOperation(None, None)
        try:
            hr = self.dll.HcsCreateComputeSystem(system_id, document, op, None, ctypes.byref(handle))
            if hr:
                raise HcsError(hr, "HcsCreateComputeSystem", system_id)
            result = c_void_p()
            hr = self.dll.HcsWaitForOperationResult(op, self.timeout_ms, ctypes.byref(result))
            text = self._free(result)
            if hr:
                if handle.value:
                    self.dll.HcsCloseComputeSystem(handle)
                raise HcsError(hr, "HcsCreateComputeSystem", system_id, text)
        finally:
            self.dll.HcsCloseOperation(op)
        return handle

    def open_compute_system(self, system_id: str) -> object:
        handle = c_void_p()
        hr = self.dll.HcsOpenComputeSystem(system_id, GENERIC_ALL, ctypes.byref(handle))
        if hr:
            raise HcsError(hr, "HcsOpenComputeSystem", system_id)
        return handle

    def start_compute_system(self, system: object) -> None:
        self._op("HcsStartComputeSystem", "", self.dll.HcsStartComputeSystem, system, None)

    def terminate_compute_system(self, system: object) -> None:
        self._op("HcsTerminateComputeSystem", "", self.dll.HcsTerminateComputeSystem, system, None)

    def pause_compute_system(self, system: object) -> None:
        self._op("HcsPauseComputeSystem", "", self.dll.HcsPauseComputeSystem, system, None)

    def resume_compute_system(self, system: object) -> None:
        self._op("HcsResumeComputeSystem", "", self.dll.HcsResumeComputeSystem, system, None)

    def get_compute_system_properties(self, system: object, query: str = "") -> str:
        return self._op("HcsGetComputeSystemProperties", "", self.dll.HcsGetComputeSystemProperties,
                        system, query or None)

    def close_compute_system(self, system: object) -> None:
        self.dll.HcsCloseComputeSystem(system)

    def enumerate_compute_systems(self, query: str = "") -> str:
        op = self.dll.HcsCreateOperation(None, None)
        try:
            hr = self.dll.HcsEnumerateComputeSystems(query or None, op)
            if hr:
                raise HcsError(hr, "HcsEnumerateComputeSystems")
            result = c_void_p()
            hr = self.dll.HcsWaitForOperationResult(op, self.timeout_ms, ctypes.byref(result))
            text = self._free(result)
            if hr:
                raise HcsError(hr, "HcsEnumerateComputeSystems", "", text)
            return text or "[]"
        finally:
            self.dll.HcsCloseOperation(op)

    # ----------------------------------------------------------------- processes
    def create_process(self, system: object, parameters: str) -> tuple[object, int]:
        handle = c_void_p()
        op = self.dll.HcsCreateOperation(None, None)
        try:
            hr = self.dll.HcsCreateProcess(system, parameters, op, None, ctypes.byref(handle))
            if hr:
                raise HcsError(hr, "HcsCreateProcess")
            info, result = HcsProcessInformation(), c_void_p()
            hr = self.dll.HcsWaitForOperationResultAndProcessInfo(op, self.timeout_ms, ctypes.byref(info),
                                                                  ctypes.byref(result))
            text = self._free(result)
            if hr:
                raise HcsError(hr, "HcsCreateProcess", "", text)
        finally:
            self.dll.HcsCloseOperation(op)
        proc = _Proc(handle.value or 0, info)
        return proc, proc.pid

    def wait_process(self, process: object, timeout: float | None = None) -> int | None:
        assert isinstance(process, _Proc)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            props = json.loads(self._op("HcsGetProcessProperties", str(process.pid),
                                        self.dll.HcsGetProcessProperties, c_void_p(process.handle), None) or "{}")
            if props.get("Exited"):
                return int(props.get("ExitCode", 0)) & 0xFFFFFFFF
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def read_output(self, process: object) -> list[tuple[str, bytes]]:
        assert isinstance(process, _Proc)
        if self._kernel32 is None:
            self._kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
        out: list[tuple[str, bytes]] = []
        for stream, pipe in process.pipes:
            if not pipe:
                continue
            avail = c_uint32()
            if not self._kernel32.PeekNamedPipe(c_void_p(pipe), None, 0, None, ctypes.byref(avail), None):
                continue
            if avail.value:
                buf = ctypes.create_string_buffer(avail.value)
                got = c_uint32()
                if self._kernel32.ReadFile(c_void_p(pipe), buf, avail.value, ctypes.byref(got), None):
                    out.append((stream, buf.raw[:got.value]))
        return out

    def terminate_process(self, process: object) -> None:
        assert isinstance(process, _Proc)
        self._op("HcsTerminateProcess", str(process.pid), self.dll.HcsTerminateProcess,
                 c_void_p(process.handle), None)

    def signal_process(self, process: object, signal: int) -> None:
        assert isinstance(process, _Proc)
        options = json.dumps({"Signal": SIGNALS.get(signal, "CtrlC")})
        self._op("HcsSignalProcess", str(process.pid), self.dll.HcsSignalProcess, c_void_p(process.handle), options)

    def close_process(self, process: object) -> None:
        assert isinstance(process, _Proc)
        self.dll.HcsCloseProcess(c_void_p(process.handle))
