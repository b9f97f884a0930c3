"""The real transport is import-safe on Linux, refuses to load here, carries computecore.h's
prototypes, and turns a failing HRESULT into HcsError (with a stand-in DLL object)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from dockyard import errors as e
from dockyard_arch_windows import computecore, hcs


def test_import_is_safe_and_light():
    code = ("import sys, dockyard_arch_windows.computecore, dockyard_arch_windows.driver; "
            "print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal off Windows")
def test_it_refuses_to_load_off_windows():
    with pytest.raises(e.Unavailable, match="needs Windows"):
        computecore.ComputeCore()


class _Fn:
    def __init__(self, name, result=0):
        self.name, self.result, self.calls = name, result, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.result


class _Dll:
    def __init__(self, fail=None):
        for name in computecore.PROTOTYPES:
            setattr(self, name, _Fn(name, hcs.HCS_E_INVALID_STATE if name == fail else 0))


def test_prototypes_and_an_immediate_failure():
    assert {"HcsCreateComputeSystem", "HcsStartComputeSystem", "HcsCreateProcess", "HcsWaitForOperationResult",
            "HcsCloseComputeSystem", "HcsTerminateComputeSystem"} <= set(computecore.PROTOTYPES)
    dll = _Dll(fail="HcsStartComputeSystem")
    core = computecore.ComputeCore(dll=dll)
    assert dll.HcsStartComputeSystem.argtypes and dll.HcsCreateProcess.restype is not None
    with pytest.raises(hcs.HcsError) as x:
        core.start_compute_system(object())
    assert x.value.hresult == hcs.HCS_E_INVALID_STATE and isinstance(hcs.to_dockyard(x.value), e.Conflict)
    assert len(dll.HcsCreateOperation.calls) == 1 and len(dll.HcsCloseOperation.calls) == 1  # op closed


def test_the_module_reloads_cleanly():
    importlib.reload(computecore)
