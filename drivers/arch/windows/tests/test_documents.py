"""HCS schema v2 documents: golden files for representative containers, all valid against the
schema derived from hcsshim (``schema/hcs-schema-v2.json``); the schema itself refuses what HCS
would. Regenerate the golden files with ``DOCKYARD_REGEN_GOLDEN=1``."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from dockyard.errors import InvalidArgument
from dockyard.model import Container, ContainerConfig, HostConfig, Mount
from dockyard_arch_windows import documents as D

GOLDEN = Path(__file__).parent / "golden"
CID = "3f4c" + "0" * 60
BASE = D.LayerRef(D.layer_guid("C:\\ProgramData\\docker\\windowsfilter\\base"),
                  "C:\\ProgramData\\docker\\windowsfilter\\base")
MID = D.LayerRef(D.layer_guid("C:\\ProgramData\\docker\\windowsfilter\\mid"),
                 "C:\\ProgramData\\docker\\windowsfilter\\mid")
TOP = D.LayerRef(D.layer_guid("C:\\ProgramData\\docker\\windowsfilter\\top"),
                 "C:\\ProgramData\\docker\\windowsfilter\\top")
SCRATCH = "C:\\ProgramData\\docker\\windowsfilter\\" + CID
NS = "a1b2c3d4-0000-4000-8000-00000000abcd"


def schema() -> dict:
    return json.loads(files("dockyard_arch_windows").joinpath("schema/hcs-schema-v2.json").read_text())


VALIDATOR = jsonschema.Draft202012Validator(schema())


def container(**host) -> Container:
    return Container(id=CID, name="web", image_id="sha256:" + "1" * 64,
                     config=ContainerConfig(image="mcr.microsoft.com/windows/nanoserver:ltsc2022",
                                            cmd=["cmd", "/c", "echo hi"], hostname="web1"),
                     host_config=HostConfig(**host))


def cases() -> dict[str, dict]:
    ro = [Mount(type="bind", destination="C:\\data", source="D:\\shared\\data", read_only=True),
          Mount(type="bind", destination="/logs", source="D:\\logs"),
          Mount(type="bind", destination="\\\\.\\pipe\\docker_engine", source="\\\\.\\pipe\\docker_engine")]
    hv = container(isolation="hyperv", memory=2 * 1024**3)
    return {
        "process": D.container_document(container(isolation="process"), [BASE], SCRATCH),
        "process-layers": D.container_document(container(), [TOP, MID, BASE], SCRATCH),
        "process-mounts-readonly": D.container_document(container(), [BASE], SCRATCH, mounts=ro),
        "process-limits": D.container_document(container(memory=512 * 1024**2, nano_cpus=1_500_000_000),
                                               [BASE], SCRATCH, host_cpus=4),
        "process-cpu-shares": D.container_document(container(cpu_shares=500), [BASE], SCRATCH),
        "process-network": D.container_document(container(), [BASE], SCRATCH, network_namespace=NS),
        "hyperv-uvm": D.utility_vm_document(hv, [TOP, BASE], BASE.path + "\\UtilityVM\\Files",
                                            SCRATCH + "\\uvm-sandbox.vhdx", mounts=ro[:2]),
        "hyperv-container": D.container_document(hv, [TOP, BASE], SCRATCH, mounts=ro[:2], network_namespace=NS,
                                                 hosting_system_id=CID + D.UVM_SUFFIX),
    }


@pytest.mark.parametrize("name", sorted(cases()))
def test_golden_document(name):
    doc = cases()[name]
    VALIDATOR.validate(doc)
    path = GOLDEN / f"{name}.json"
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if os.environ.get("DOCKYARD_REGEN_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs: regenerate with DOCKYARD_REGEN_GOLDEN=1 and review"


def test_every_golden_file_is_a_case_and_valid():
    names = {p.stem for p in GOLDEN.glob("*.json")}
    assert names == set(cases())
    for p in GOLDEN.glob("*.json"):
        VALIDATOR.validate(json.loads(p.read_text()))


def test_the_documents_say_what_was_asked():
    c = cases()
    assert c["process"]["SchemaVersion"] == {"Major": 2, "Minor": 1}
    assert [layer["Path"] for layer in c["process-layers"]["Container"]["Storage"]["Layers"]] == [
        TOP.path, MID.path, BASE.path]
    dirs = c["process-mounts-readonly"]["Container"]["MappedDirectories"]
    assert dirs == [{"HostPath": "D:\\shared\\data", "ContainerPath": "C:\\data", "ReadOnly": True},
                    {"HostPath": "D:\\logs", "ContainerPath": "C:\\logs"}]
    assert c["process-mounts-readonly"]["Container"]["MappedPipes"] == [
        {"ContainerPipeName": "docker_engine", "HostPath": "\\\\.\\pipe\\docker_engine"}]
    assert c["process-limits"]["Container"]["Memory"] == {"SizeInMB": 512}
    assert c["process-limits"]["Container"]["Processor"] == {"Maximum": 3750}  # 1.5 of 4 CPUs
    assert c["process-network"]["Container"]["Networking"] == {"Namespace": NS}
    uvm = c["hyperv-uvm"]["VirtualMachine"]
    assert uvm["ComputeTopology"]["Memory"]["SizeInMB"] == 2048
    shares = {s["Name"]: s for s in uvm["Devices"]["VirtualSmb"]["Shares"]}
    assert shares["os"]["Path"].endswith("\\UtilityVM\\Files") and TOP.id in shares and BASE.id in shares
    hosted = c["hyperv-container"]
    assert hosted["HostingSystemId"] == CID + "@vm" and "Memory" not in hosted["Container"]
    assert all(layer["PathType"] == "VirtualSmbShareName" and layer["Path"] in shares
               for layer in hosted["Container"]["Storage"]["Layers"])
    assert all(d["HostPath"] in shares for d in hosted["Container"]["MappedDirectories"])


@pytest.mark.parametrize("mutate, why", [
    (lambda d: d["Container"].update(MapedDirectories=[]), "misspelt key"),
    (lambda d: d["Container"].update(Processor={"Maximum": 5000, "Weight": 100}), "exclusive limits"),
    (lambda d: d["Container"]["Storage"]["Layers"][0].update(Id="not-a-guid"), "layer GUID"),
    (lambda d: d["Container"]["Storage"]["Layers"][0].pop("Path"), "layer path"),
    (lambda d: d.pop("SchemaVersion"), "schema version"),
    (lambda d: d["Container"].update(IsolationType="Hyperv"), "isolation enum"),
    (lambda d: d.update(VirtualMachine={"ComputeTopology": {"Memory": {"SizeInMB": 1}, "Processor": {"Count": 1}}}),
     "container and VM at once"),
])
def test_the_schema_refuses(mutate, why):
    doc = cases()["process"]
    mutate(doc)
    assert not VALIDATOR.is_valid(doc), why


def test_process_parameters_are_valid_and_quoted():
    p = D.process_parameters(["cmd", "/c", "echo a b"], ["A=1", "EMPTY"], "C:\\app", "ContainerUser")
    VALIDATOR.evolve(schema={**schema(), "$ref": "#/$defs/ProcessParameters"}).validate(p)
    assert p["CommandLine"] == 'cmd /c "echo a b"' and p["Environment"] == {"A": "1", "EMPTY": ""}
    assert p["CreateStdErrPipe"] and not p.get("EmulateConsole")
    tty = D.process_parameters(["cmd"], tty=True, console_size=(30, 100))
    assert tty["EmulateConsole"] and tty["ConsoleSize"] == [30, 100] and "CreateStdErrPipe" not in tty
    with pytest.raises(InvalidArgument):
        D.process_parameters([])


def test_isolation_and_paths():
    assert D.isolation(container()) == "process"
    assert D.isolation(container(), default="hyperv") == "hyperv"
    assert D.isolation(container(isolation="HyperV")) == "hyperv"
    with pytest.raises(InvalidArgument, match="isolation"):
        D.isolation(container(isolation="vm"))
    assert D.windows_path("/data/x") == "C:\\data\\x"
    for bad in ("data", "C:\\a\\..\\b"):
        with pytest.raises(InvalidArgument):
            D.windows_path(bad)
    with pytest.raises(InvalidArgument, match="tmpfs"):
        D.container_document(container(), [BASE], SCRATCH, mounts=[Mount(type="tmpfs", destination="C:\\t")])
    with pytest.raises(InvalidArgument, match="conflicting"):
        D.container_document(container(nano_cpus=10**9, cpu_shares=10), [BASE], SCRATCH)
    assert D.layer_guid("C:\\x\\Base") == D.layer_guid("/y/base")  # named after the directory
