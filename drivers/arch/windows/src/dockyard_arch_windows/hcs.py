"""The Host Compute Service as the driver sees it: a transport ABC and HRESULT errors.

Every HCS call is "JSON document in, JSON result out" on a handle; :class:`HcsTransport` is
that surface, blocking like the C API (the driver calls it from a thread). Two transports:
:mod:`dockyard_arch_windows.computecore` (ctypes to ``computecore.dll``, Windows only) and
:mod:`dockyard_arch_windows.fake` (an in-memory HCS enforcing the state machine, for Linux CI).

Failures are :class:`HcsError` carrying the HRESULT; :func:`to_dockyard` maps one to a typed
dockyard error. The codes are ``winerror.h``'s ``HCS_E_*`` (facility 0x37 = FACILITY_COMPUTE);
hcsshim spells the same codes with the NTSTATUS-style severity bits (``0xc037010e`` for
``HCS_E_SYSTEM_NOT_FOUND``, ``internal/hcs/errors.go``): :func:`code` compares both forms.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from dockyard import errors as e

# winerror.h, facility FACILITY_COMPUTE (0x37)
HCS_E_TERMINATED_DURING_START = 0x80370100
HCS_E_IMAGE_MISMATCH = 0x80370101
HCS_E_HYPERV_NOT_INSTALLED = 0x80370102
HCS_E_OPERATION_PENDING_LEGACY = 0x80370103  # hcsshim: ErrVmcomputeOperationPending
HCS_E_INVALID_STATE = 0x80370105
HCS_E_UNEXPECTED_EXIT = 0x80370106
HCS_E_TERMINATED = 0x80370107
HCS_E_INVALID_JSON = 0x8037010D
HCS_E_SYSTEM_NOT_FOUND = 0x8037010E
HCS_E_SYSTEM_ALREADY_EXISTS = 0x8037010F
HCS_E_SYSTEM_ALREADY_STOPPED = 0x80370110
HCS_E_INVALID_LAYER = 0x80370112
HCS_E_SERVICE_NOT_AVAILABLE = 0x80370114
HCS_E_OPERATION_TIMEOUT = 0x80370118
HCS_E_ACCESS_DENIED = 0x8037011B
HCS_E_PROCESS_ALREADY_STOPPED = 0x8037011F
# HRESULT_FROM_WIN32
E_FILE_NOT_FOUND = 0x80070002  # ERROR_FILE_NOT_FOUND: CreateProcess of a missing program
E_PATH_NOT_FOUND = 0x80070003
E_ACCESS_DENIED = 0x80070005
E_INVALID_DATA = 0x8007000D  # hcsshim ErrInvalidData
E_NOT_SUPPORTED = 0x80070032
E_ELEMENT_NOT_FOUND = 0x80070490  # hcsshim ErrElementNotFound
E_INVALIDARG = 0x80070057

NAMES = {
    HCS_E_TERMINATED_DURING_START: "HCS_E_TERMINATED_DURING_START",
    HCS_E_IMAGE_MISMATCH: "HCS_E_IMAGE_MISMATCH",
    HCS_E_HYPERV_NOT_INSTALLED: "HCS_E_HYPERV_NOT_INSTALLED",
    HCS_E_INVALID_STATE: "HCS_E_INVALID_STATE",
    HCS_E_UNEXPECTED_EXIT: "HCS_E_UNEXPECTED_EXIT",
    HCS_E_TERMINATED: "HCS_E_TERMINATED",
    HCS_E_INVALID_JSON: "HCS_E_INVALID_JSON",
    HCS_E_SYSTEM_NOT_FOUND: "HCS_E_SYSTEM_NOT_FOUND",
    HCS_E_SYSTEM_ALREADY_EXISTS: "HCS_E_SYSTEM_ALREADY_EXISTS",
    HCS_E_SYSTEM_ALREADY_STOPPED: "HCS_E_SYSTEM_ALREADY_STOPPED",
    HCS_E_INVALID_LAYER: "HCS_E_INVALID_LAYER",
    HCS_E_SERVICE_NOT_AVAILABLE: "HCS_E_SERVICE_NOT_AVAILABLE",
    HCS_E_OPERATION_TIMEOUT: "HCS_E_OPERATION_TIMEOUT",
    HCS_E_ACCESS_DENIED: "HCS_E_ACCESS_DENIED",
    HCS_E_PROCESS_ALREADY_STOPPED: "HCS_E_PROCESS_ALREADY_STOPPED",
    E_FILE_NOT_FOUND: "ERROR_FILE_NOT_FOUND",
    E_PATH_NOT_FOUND: "ERROR_PATH_NOT_FOUND",
    E_ACCESS_DENIED: "E_ACCESSDENIED",
    E_INVALID_DATA: "ERROR_INVALID_DATA",
    E_NOT_SUPPORTED: "ERROR_NOT_SUPPORTED",
    E_ELEMENT_NOT_FOUND: "ERROR_NOT_FOUND",
    E_INVALIDARG: "E_INVALIDARG",
}


def code(hresult: int) -> int:
    """The HRESULT in its ``0x8...`` form: hcsshim's ``0xc037....`` spelling (NTSTATUS-style
    severity bits) and a negative ``int32`` both normalize to it."""
    hresult &= 0xFFFFFFFF
    if hresult & 0xC0000000 == 0xC0000000 and (hresult >> 16) & 0x7FF == 0x37:
        hresult = (hresult & ~0x40000000) & 0xFFFFFFFF
    return hresult


class HcsError(e.DockyardError):
    """An HCS call failed with ``hresult``; ``result`` is HCS's JSON result document (its
    ``ErrorEvents`` say more), ``op`` the C function, ``target`` the compute system or process."""

    def __init__(self, hresult: int, op: str, target: str = "", result: str = "") -> None:
        self.hresult = code(hresult)
        self.op, self.target, self.result = op, target, result
        name = NAMES.get(self.hresult, "HRESULT")
        super().__init__(f"{op}({target}): {name} 0x{self.hresult:08X}" + (f": {result}" if result else ""))


@dataclass(frozen=True)
class _Mapping:
    kind: type[e.DockyardError]
    say: str


_MAP: dict[int, _Mapping] = {
    HCS_E_SYSTEM_NOT_FOUND: _Mapping(e.NotFound, "no such compute system"),
    E_ELEMENT_NOT_FOUND: _Mapping(e.NotFound, "not found"),
    HCS_E_SYSTEM_ALREADY_EXISTS: _Mapping(e.Conflict, "a compute system with this id exists"),
    HCS_E_INVALID_STATE: _Mapping(e.Conflict, "the compute system is not in a state for this operation"),
    HCS_E_SYSTEM_ALREADY_STOPPED: _Mapping(e.Conflict, "the compute system is already stopped"),
    HCS_E_PROCESS_ALREADY_STOPPED: _Mapping(e.Conflict, "the process is already stopped"),
    HCS_E_INVALID_JSON: _Mapping(e.InvalidArgument, "HCS refused the document"),
    E_INVALID_DATA: _Mapping(e.InvalidArgument, "HCS refused the request"),
    E_INVALIDARG: _Mapping(e.InvalidArgument, "invalid argument"),
    HCS_E_INVALID_LAYER: _Mapping(e.InvalidArgument, "a layer of the image is unusable"),
    HCS_E_IMAGE_MISMATCH: _Mapping(e.InvalidArgument,
                                   "the image's Windows build does not match the host's (use --isolation=hyperv)"),
    E_FILE_NOT_FOUND: _Mapping(e.NotFound, "the program was not found"),
    E_PATH_NOT_FOUND: _Mapping(e.NotFound, "the path was not found"),
    HCS_E_HYPERV_NOT_INSTALLED: _Mapping(e.Unavailable, "Hyper-V is not installed (needed by --isolation=hyperv)"),
    HCS_E_SERVICE_NOT_AVAILABLE: _Mapping(e.Unavailable, "the Host Compute Service is not available"),
    HCS_E_OPERATION_TIMEOUT: _Mapping(e.Unavailable, "the HCS operation timed out"),
    HCS_E_ACCESS_DENIED: _Mapping(e.Forbidden, "access denied"),
    E_ACCESS_DENIED: _Mapping(e.Forbidden, "access denied"),
    E_NOT_SUPPORTED: _Mapping(e.InvalidArgument, "not supported by this host"),
}


def to_dockyard(err: HcsError) -> e.DockyardError:
    """The typed dockyard error for ``err`` (chain it: ``raise to_dockyard(x) from x``):
    NotFound, Conflict, InvalidArgument, Unavailable, Forbidden; anything else stays a
    DockyardError with the HRESULT in the message."""
    m = _MAP.get(err.hresult)
    if m is None:
        return e.DockyardError(str(err))
    return m.kind(f"{m.say}: {err}")


#: compute-system states as HCS reports them (``Properties.State``)
CREATED, RUNNING, PAUSED, STOPPED = "Created", "Running", "Paused", "Stopped"


class HcsTransport(abc.ABC):
    """The HCS API v2 surface the driver uses. Handles are opaque; every method blocks and
    raises :class:`HcsError`. Documents are JSON text, as ``computecore.dll`` takes them."""

    @abc.abstractmethod
    def create_compute_system(self, system_id: str, document: str) -> object:
        """``HcsCreateComputeSystem``: a compute system in state Created; its handle."""

    @abc.abstractmethod
    def open_compute_system(self, system_id: str) -> object:
        """``HcsOpenComputeSystem``: a handle on an existing one (HCS_E_SYSTEM_NOT_FOUND)."""

    @abc.abstractmethod
    def start_compute_system(self, system: object) -> None:
        """``HcsStartComputeSystem``: Created → Running (HCS_E_INVALID_STATE otherwise)."""

    @abc.abstractmethod
    def terminate_compute_system(self, system: object) -> None:
        """``HcsTerminateComputeSystem``: Running/Paused → Stopped (already stopped:
        HCS_E_SYSTEM_ALREADY_STOPPED)."""

    @abc.abstractmethod
    def pause_compute_system(self, system: object) -> None:
        """``HcsPauseComputeSystem``: Running → Paused."""

    @abc.abstractmethod
    def resume_compute_system(self, system: object) -> None:
        """``HcsResumeComputeSystem``: Paused → Running."""

    @abc.abstractmethod
    def get_compute_system_properties(self, system: object, query: str = "") -> str:
        """``HcsGetComputeSystemProperties``: JSON with at least ``Id``, ``State``,
        ``SystemType``, and ``ExitCode`` once stopped."""

    @abc.abstractmethod
    def close_compute_system(self, system: object) -> None:
        """``HcsCloseComputeSystem``: release the handle (the system lives on)."""

    @abc.abstractmethod
    def enumerate_compute_systems(self, query: str = "") -> str:
        """``HcsEnumerateComputeSystems``: a JSON list of ``{Id, State, Owner, SystemType}``."""

    @abc.abstractmethod
    def create_process(self, system: object, parameters: str) -> tuple[object, int]:
        """``HcsCreateProcess``: (process handle, pid). A program that does not exist fails with
        ERROR_FILE_NOT_FOUND; a system that is not Running with HCS_E_INVALID_STATE."""

    @abc.abstractmethod
    def wait_process(self, process: object, timeout: float | None = None) -> int | None:
        """Wait for the process to exit (the ``HcsEventProcessExited`` callback): its exit code,
        or None on timeout."""

    @abc.abstractmethod
    def read_output(self, process: object) -> list[tuple[str, bytes]]:
        """What the process wrote to its stdout/stderr pipes since the last call, in order."""

    @abc.abstractmethod
    def terminate_process(self, process: object) -> None:
        """``HcsTerminateProcess`` (HCS_E_PROCESS_ALREADY_STOPPED when it has exited)."""

    @abc.abstractmethod
    def signal_process(self, process: object, signal: int) -> None:
        """``HcsSignalProcess`` with ``{"Signal": "CtrlC"|"CtrlBreak"|"CtrlClose"...}``; the
        driver maps SIGINT/SIGTERM to ctrl events."""

    @abc.abstractmethod
    def close_process(self, process: object) -> None:
        """``HcsCloseProcess``."""
