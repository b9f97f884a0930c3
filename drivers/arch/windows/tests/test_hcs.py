"""The fake HCS's state machine and HRESULTs, their mapping to typed errors, and the driver's
errors on top of it (isolation, os.version, layers, Hyper-V utility VM life)."""

from __future__ import annotations

import json
import signal

import pytest

from dockyard import errors as e
from dockyard.model import Container, ContainerConfig, HostConfig, Image, new_id
from dockyard.specs.arch import ExecRequest, RuntimeCreateRequest
from dockyard_arch_windows import hcs
from dockyard_arch_windows.driver import WindowsRuntime, check_os_version, read_layerchain
from dockyard_arch_windows.fake import FakeHcs
from dockyard_arch_windows.hcs import HcsError, to_dockyard
from dockyard_plugin_sdk.conformance.arch import make_runtime_context

DOC = json.dumps({"Owner": "t", "SchemaVersion": {"Major": 2, "Minor": 1},
                  "Container": {"Storage": {"Layers": [{"Id": "x", "Path": "C:\\l"}]}},
                  "ShouldTerminateOnLastHandleClosed": True})


def hr(exc_info) -> int:
    return exc_info.value.hresult


def test_the_state_machine_and_its_errors():
    f = FakeHcs()
    h = f.create_compute_system("c1", DOC)
    with pytest.raises(HcsError) as x:
        f.create_compute_system("c1", DOC)
    assert hr(x) == hcs.HCS_E_SYSTEM_ALREADY_EXISTS
    for op in (f.pause_compute_system, f.resume_compute_system):
        with pytest.raises(HcsError) as x:
            op(h)
        assert hr(x) == hcs.HCS_E_INVALID_STATE  # Created: neither pause nor resume
    with pytest.raises(HcsError) as x:
        f.create_process(h, json.dumps({"CommandLine": "cmd /c echo hi"}))
    assert hr(x) == hcs.HCS_E_INVALID_STATE  # not running yet
    f.start_compute_system(h)
    with pytest.raises(HcsError) as x:
        f.start_compute_system(h)
    assert hr(x) == hcs.HCS_E_INVALID_STATE and "0x80370105" in str(x.value)
    f.pause_compute_system(h)
    assert json.loads(f.get_compute_system_properties(h))["State"] == "Paused"
    f.resume_compute_system(h)
    f.terminate_compute_system(h)
    props = json.loads(f.get_compute_system_properties(h))
    assert props["State"] == "Stopped" and props["ExitCode"] == 1
    with pytest.raises(HcsError) as x:
        f.terminate_compute_system(h)
    assert hr(x) == hcs.HCS_E_SYSTEM_ALREADY_STOPPED
    with pytest.raises(HcsError) as x:
        f.start_compute_system(h)
    assert hr(x) == hcs.HCS_E_INVALID_STATE  # Stopped is final
    f.close_compute_system(h)  # the last handle of a stopped system: it is gone
    with pytest.raises(HcsError) as x:
        f.open_compute_system("c1")
    assert hr(x) == hcs.HCS_E_SYSTEM_NOT_FOUND
    with pytest.raises(HcsError) as x:
        f.close_compute_system(h)
    assert hr(x) == hcs.E_INVALIDARG


def test_documents_are_checked():
    f = FakeHcs()
    with pytest.raises(HcsError) as x:
        f.create_compute_system("c", "{not json")
    assert hr(x) == hcs.HCS_E_INVALID_JSON
    with pytest.raises(HcsError) as x:
        f.create_compute_system("c", json.dumps({"Container": {}}))
    assert hr(x) == hcs.HCS_E_INVALID_JSON  # no SchemaVersion
    with pytest.raises(HcsError) as x:
        f.create_compute_system("c", json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1},
                                                 "HostingSystemId": "nope@vm", "Container": {}}))
    assert hr(x) == hcs.HCS_E_SYSTEM_NOT_FOUND
    with pytest.raises(HcsError) as x:
        f.create_compute_system("c", json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1},
                                                 "Container": {"Storage": {"Layers": [{"Id": "x"}]}}}))
    assert hr(x) == hcs.HCS_E_INVALID_LAYER


def test_processes_and_a_missing_program():
    f = FakeHcs(tick=0.01)
    h = f.create_compute_system("c", DOC)
    f.start_compute_system(h)
    with pytest.raises(HcsError) as x:
        f.create_process(h, json.dumps({"CommandLine": "C:\\no\\such.exe"}))
    assert hr(x) == hcs.E_FILE_NOT_FOUND
    p, pid = f.create_process(h, json.dumps({"CommandLine": 'cmd /c "echo a & echo b 1>&2 & exit /b 4"'}))
    assert pid > 0 and f.wait_process(p, 5) == 4
    assert f.read_output(p) == [("stdout", b"a\r\n"), ("stderr", b"b\r\n")]
    with pytest.raises(HcsError) as x:
        f.terminate_process(p)
    assert hr(x) == hcs.HCS_E_PROCESS_ALREADY_STOPPED
    p2, _ = f.create_process(h, json.dumps({"CommandLine": "ping -t localhost"}))
    assert f.wait_process(p2, 0.05) is None
    f.signal_process(p2, signal.SIGINT)
    assert f.wait_process(p2, 5) == 0xC000013A  # STATUS_CONTROL_C_EXIT
    p3, _ = f.create_process(h, json.dumps({"CommandLine": "ping -t localhost"}))
    f.terminate_compute_system(h)  # takes its processes with it
    assert f.wait_process(p3, 5) == 1


def test_hresults_map_to_typed_errors():
    assert hcs.code(0xC037010E) == hcs.HCS_E_SYSTEM_NOT_FOUND  # hcsshim's spelling
    assert hcs.code(-2147024894) == hcs.E_FILE_NOT_FOUND  # a negative int32
    cases = {hcs.HCS_E_SYSTEM_NOT_FOUND: e.NotFound, hcs.HCS_E_INVALID_STATE: e.Conflict,
             hcs.HCS_E_SYSTEM_ALREADY_EXISTS: e.Conflict, hcs.HCS_E_INVALID_JSON: e.InvalidArgument,
             hcs.E_FILE_NOT_FOUND: e.NotFound, hcs.HCS_E_HYPERV_NOT_INSTALLED: e.Unavailable,
             hcs.HCS_E_ACCESS_DENIED: e.Forbidden, hcs.HCS_E_IMAGE_MISMATCH: e.InvalidArgument}
    for code, kind in cases.items():
        err = to_dockyard(HcsError(code, "HcsX", "c"))
        assert type(err) is kind and f"0x{code:08X}" in str(err)
    other = to_dockyard(HcsError(0x80004005, "HcsX"))
    assert type(other) is e.DockyardError and "0x80004005" in str(other)


def request(rootfs, cmd=("cmd", "/c", "echo hi"), os_version="", **host) -> RuntimeCreateRequest:
    cid = new_id()
    return RuntimeCreateRequest(
        container=Container(id=cid, name="t", image_id="sha256:" + "0" * 64,
                            config=ContainerConfig(image="w", cmd=list(cmd)), host_config=HostConfig(**host)),
        image=Image(id="sha256:" + "0" * 64, os="windows", os_version=os_version), rootfs=str(rootfs))


@pytest.fixture
async def driver(tmp_path):
    drv = WindowsRuntime(make_runtime_context(tmp_path / "d", "dycw", **{"os-version": "10.0.20348.2527"}),
                         transport=FakeHcs(tick=0.01))
    await drv.setup()
    return drv


async def test_the_driver_refuses_what_windows_would(driver, make_scratch, tmp_path):
    rootfs = make_scratch()
    with pytest.raises(e.InvalidArgument, match="isolation"):
        await driver.create(request(rootfs, isolation="vm"))
    with pytest.raises(e.InvalidArgument, match="hyperv"):  # a 2019 image, process isolation on 2022
        await driver.create(request(rootfs, os_version="10.0.17763.5329"))
    with pytest.raises(e.InvalidArgument, match="not a Windows container layer"):
        await driver.create(request(tmp_path))
    with pytest.raises(e.InvalidArgument, match="SIG"):
        req = request(rootfs, cmd=("ping", "-t", "localhost"))
        await driver.create(req)
        await driver.start(req.container.id)
        await driver.kill(req.container.id, signal.SIGHUP)
    await driver.delete(req.container.id, force=True)
    assert driver.hcs.systems == {}  # type: ignore[attr-defined]


async def test_hyperv_runs_an_older_image_in_a_utility_vm(driver, make_scratch):
    req = request(make_scratch(), cmd=("cmd", "/c", "exit /b 2"), os_version="10.0.17763.5329", isolation="hyperv")
    cid = req.container.id
    await driver.create(req)
    fake = driver.hcs
    assert set(fake.systems) == {cid, cid + "@vm"} and fake.systems[cid + "@vm"].state == "Running"
    assert fake.systems[cid].document["HostingSystemId"] == cid + "@vm"
    assert await driver.list() == [cid]  # the utility VM is not a container
    await driver.start(cid)
    assert (await driver.wait(cid)).exit_code == 2
    with pytest.raises(e.Conflict):
        await driver.exec(ExecRequest(container_id=cid, exec_id=new_id(), cmd=["cmd"]))
    await driver.delete(cid)
    assert fake.systems == {}
    with pytest.raises(e.InvalidArgument, match="newer"):
        await driver.create(request(make_scratch(name="s2"), os_version="10.0.26100.1", isolation="hyperv"))


async def test_a_missing_program_is_typed_and_leaves_it_stopped(driver, make_scratch):
    req = request(make_scratch(), cmd=("notepad.exe",))
    await driver.create(req)
    with pytest.raises(e.NotFound, match="ERROR_FILE_NOT_FOUND"):
        await driver.start(req.container.id)
    st = await driver.state(req.container.id)
    assert st.status == "stopped" and st.exit_code == 127 and "not found" in st.error
    await driver.delete(req.container.id)


def test_os_version_rules():
    check_os_version("10.0.20348.2527", "10.0.20348.1", "process")  # patch levels interchangeable
    check_os_version("", "10.0.17763.1", "process")  # unknown host: pass
    check_os_version("10.0.26100.1", "10.0.20348.9", "process")  # 2022 images on newer hosts
    with pytest.raises(e.InvalidArgument):
        check_os_version("10.0.17763.1", "10.0.20348.1", "process")
    check_os_version("10.0.20348.1", "10.0.17763.1", "hyperv")


def test_layerchain(tmp_path):
    (tmp_path / "layerchain.json").write_text("{}")
    with pytest.raises(e.InvalidArgument, match="non-empty list"):
        read_layerchain(str(tmp_path))
    (tmp_path / "layerchain.json").write_text('["C:\\\\l\\\\top", "C:\\\\l\\\\base"]')
    assert [r.path for r in read_layerchain(str(tmp_path))] == ["C:\\l\\top", "C:\\l\\base"]


async def test_unknown_option_and_transport(tmp_path):
    with pytest.raises(e.InvalidArgument):
        WindowsRuntime(make_runtime_context(tmp_path, "o", isolation="vm"))
    drv = WindowsRuntime(make_runtime_context(tmp_path, "o", transport="carrier-pigeon"))
    with pytest.raises(e.InvalidArgument, match="transport"):
        await drv.setup()
