"""HCS schema v2 documents from dockyard's container model. Pure functions, no I/O.

* :func:`container_document` -- the compute system of a Windows container: ``Container``
  with ``Storage`` (the image's layers and the scratch layer; order below), ``MappedDirectories``/``MappedPipes`` from the mounts, ``Networking``
  (the HNS namespace), ``GuestOs.HostName``, ``Memory``/``Processor`` limits. With Hyper-V
  isolation the same container is hosted by a utility VM (``HostingSystemId``) and its layers
  and directories are reached through the VM's virtual SMB shares.
* :func:`utility_vm_document` -- the ``VirtualMachine`` that hosts a Hyper-V isolated container:
  UEFI boot of the base layer's ``UtilityVM/Files`` over VMBFS, the scratch VHDX on SCSI 0:0,
  memory and processors, one read-only VSMB share per layer and one per mapped directory.
* :func:`process_parameters` -- ``HcsCreateProcess``'s document.

Field names and shapes follow hcsshim's ``internal/hcs/schema2`` and how its ``hcsoci``
package fills them for Windows containers (``create_wcow.go``, ``resources_wcow.go``); the
tests validate every document against ``schema/hcs-schema-v2.json``.

Layer order: ``Storage.Layers`` lists the image's read-only layers from the topmost to the
base (docker's ``layerchain.json`` order, which is what HCS's layer stack expects);
``Storage.Path`` is the container's scratch layer.
"""

from __future__ import annotations

import math
import re
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.model import Container, Mount

SCHEMA_VERSION = {"Major": 2, "Minor": 1}
#: the name-space of :func:`layer_guid` (dockyard's own; HCS only needs the ids stable and unique)
LAYER_NAMESPACE = uuid.UUID("5d4ae1b5-3c5d-4f3e-9d5c-6c0c1d0ea2a1")
UVM_SUFFIX = "@vm"  # hcsshim names a container's utility VM "<id>@vm"
UVM_BOOT = {"DeviceType": "VmbFs", "DevicePath": "\\EFI\\Microsoft\\Boot\\bootmgfw.efi"}
DEFAULT_UVM_MEMORY_MB = 1024
DEFAULT_UVM_CPUS = 2
_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")
PIPE_PREFIX = "\\\\.\\pipe\\"


@dataclass(frozen=True)
class LayerRef:
    """One read-only layer: its GUID and its directory on the host (a Windows path)."""

    id: str
    path: str


def layer_guid(path: str) -> str:
    """A stable GUID for a layer directory (named after its last component, as hcsshim's
    ``wclayer.LayerID`` is; HCS's own ``NameToGuid`` hash is not public, and HCS needs only
    stable, distinct ids)."""
    base = re.split(r"[\\/]", path.rstrip("\\/"))[-1]
    return str(uuid.uuid5(LAYER_NAMESPACE, base.lower()))


def isolation(container: Container, default: str = "process") -> str:
    """``process`` or ``hyperv`` from ``HostConfig.Isolation`` (``""``/``default`` = the
    host's ``default``); InvalidArgument for anything else (dockerd's wording)."""
    iso = (container.host_config.isolation or "default").lower()
    if iso == "default":
        iso = default
    if iso not in ("process", "hyperv"):
        raise InvalidArgument(f"invalid isolation: {container.host_config.isolation!r}: "
                              "Windows containers take 'default', 'process' or 'hyperv'")
    return iso


def windows_path(path: str, what: str = "path") -> str:
    r"""A container path as Windows writes it: ``C:\data`` stays, ``/data`` becomes
    ``C:\data``; ``..`` components are refused."""
    p = path.replace("/", "\\")
    if p.startswith("\\\\"):
        return p
    if p.startswith("\\"):
        p = "C:" + p
    if not _DRIVE_PATH.match(p):
        raise InvalidArgument(f"{what} {path!r} is not an absolute Windows path (C:\\dir)")
    if ".." in p.split("\\"):
        raise InvalidArgument(f"{what} {path!r} must not contain '..'")
    return p[0].upper() + p[1:]


def _mapped(mounts: Sequence[Mount]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dirs: list[dict[str, Any]] = []
    pipes: list[dict[str, Any]] = []
    for m in mounts:
        if m.type == "tmpfs":
            raise InvalidArgument("Windows containers have no tmpfs mounts")
        if not m.source:
            raise InvalidArgument(f"mount {m.destination!r} has no source")
        if m.source.startswith(PIPE_PREFIX) or m.destination.startswith(PIPE_PREFIX):
            if not (m.source.startswith(PIPE_PREFIX) and m.destination.startswith(PIPE_PREFIX)):
                raise InvalidArgument(f"a named pipe mount maps a pipe to a pipe: {m.source} -> {m.destination}")
            pipes.append({"ContainerPipeName": m.destination[len(PIPE_PREFIX):], "HostPath": m.source})
            continue
        entry: dict[str, Any] = {"HostPath": m.source,
                                 "ContainerPath": windows_path(m.destination, "mount destination")}
        if m.read_only:
            entry["ReadOnly"] = True
        dirs.append(entry)
    return dirs, pipes


def memory_mb(limit: int) -> int:
    """Bytes to whole MiB, rounded up (HCS takes ``SizeInMB``)."""
    return math.ceil(limit / (1024 * 1024)) if limit > 0 else 0


def processor(container: Container, host_cpus: int) -> dict[str, int]:
    """``Container.Processor``: one of Count, Maximum and Weight (mutually exclusive in HCS).
    ``--cpus`` (NanoCPUs) becomes Maximum in cycles per 10,000 of the host (dockerd's
    ``oci_windows.go``); ``--cpu-shares`` becomes Weight (1..10000); both is an error."""
    hc = container.host_config
    if hc.nano_cpus and hc.cpu_shares:
        raise InvalidArgument("conflicting options: --cpus and --cpu-shares on a Windows container")
    if hc.nano_cpus:
        if host_cpus <= 0:
            raise InvalidArgument("--cpus needs the host's processor count")
        maximum = int(10000 * hc.nano_cpus / 1e9 / host_cpus)
        return {"Maximum": min(max(maximum, 1), 10000)}
    if hc.cpu_shares:
        if not 1 <= hc.cpu_shares <= 10000:
            raise InvalidArgument(f"--cpu-shares on Windows is 1 to 10000, not {hc.cpu_shares}")
        return {"Weight": hc.cpu_shares}
    return {}


def container_document(container: Container, layers: Sequence[LayerRef], scratch: str, *,
                       mounts: Sequence[Mount] = (), network_namespace: str = "", owner: str = "dockyard",
                       host_cpus: int = 1, hosting_system_id: str = "") -> dict[str, Any]:
    """The compute-system document of ``container``: ``layers`` topmost first (base last),
    ``scratch`` its writable layer directory, ``network_namespace`` the HNS namespace GUID
    ("" = none), ``hosting_system_id`` the utility VM for Hyper-V isolation ("" = process)."""
    if not layers:
        raise InvalidArgument("a Windows container needs at least its base layer")
    dirs, pipes = _mapped(mounts)
    storage: dict[str, Any] = {"Layers": [], "Path": scratch}
    for layer in layers:
        entry: dict[str, Any] = {"Id": layer.id, "Path": layer.path}
        if hosting_system_id:  # reached through the utility VM's share of that name
            entry = {"Id": layer.id, "Path": layer.id, "PathType": "VirtualSmbShareName"}
        storage["Layers"].append(entry)
    spec: dict[str, Any] = {"Storage": storage}
    hostname = container.config.hostname or container.id[:12]
    spec["GuestOs"] = {"HostName": hostname}
    if dirs:
        if hosting_system_id:
            dirs = [{**d, "HostPath": share_name(d["HostPath"]), "HostPathType": "VirtualSmbShareName"}
                    for d in dirs]
        spec["MappedDirectories"] = dirs
    if pipes:
        spec["MappedPipes"] = pipes
    mem = memory_mb(container.host_config.memory)
    if mem and not hosting_system_id:  # Hyper-V: the VM's size is the limit
        spec["Memory"] = {"SizeInMB": mem}
    cpu = processor(container, host_cpus)
    if cpu:
        spec["Processor"] = cpu
    if network_namespace:
        spec["Networking"] = {"Namespace": network_namespace}
    doc: dict[str, Any] = {"Owner": owner, "SchemaVersion": dict(SCHEMA_VERSION)}
    if hosting_system_id:
        doc["HostingSystemId"] = hosting_system_id
    doc["Container"] = spec
    doc["ShouldTerminateOnLastHandleClosed"] = True
    return doc


def share_name(host_path: str) -> str:
    """The VSMB share name of a mapped host directory (stable per path)."""
    return "m-" + str(uuid.uuid5(LAYER_NAMESPACE, host_path.lower()))[:8]


def utility_vm_document(container: Container, layers: Sequence[LayerRef], uvm_image: str, scratch_vhdx: str, *,
                        mounts: Sequence[Mount] = (), owner: str = "dockyard",
                        memory_limit_mb: int = 0, cpus: int = 0) -> dict[str, Any]:
    """The utility VM hosting ``container`` under Hyper-V isolation: boots
    ``uvm_image`` (the base layer's ``UtilityVM\\Files``), scratch on SCSI 0:0; memory is the
    container's ``--memory`` (else 1024 MiB), processors its ``--cpu-count``-like ``cpus`` (else 2)."""
    dirs, _pipes = _mapped(mounts)
    share_opts = {"ReadOnly": True, "CacheIo": True, "ShareRead": True, "TakeBackupPrivilege": True,
                  "NoOplocks": True, "PseudoOplocks": True}
    shares: list[dict[str, Any]] = [{"Name": "os", "Path": uvm_image, "Options": dict(share_opts)}]
    shares += [{"Name": layer.id, "Path": layer.path, "Options": dict(share_opts)} for layer in layers]
    for d in dirs:
        opts = {"ShareRead": True} | ({"ReadOnly": True} if d.get("ReadOnly") else {})
        shares.append({"Name": share_name(d["HostPath"]), "Path": d["HostPath"], "Options": opts})
    mem = memory_limit_mb or memory_mb(container.host_config.memory) or DEFAULT_UVM_MEMORY_MB
    return {
        "Owner": owner,
        "SchemaVersion": dict(SCHEMA_VERSION),
        "VirtualMachine": {
            "StopOnReset": True,
            "Chipset": {"Uefi": {"BootThis": dict(UVM_BOOT)}},
            "ComputeTopology": {"Memory": {"SizeInMB": mem, "AllowOvercommit": True},
                                "Processor": {"Count": cpus or DEFAULT_UVM_CPUS}},
            "Devices": {
                "Scsi": {"0": {"Attachments": {"0": {"Type": "VirtualDisk", "Path": scratch_vhdx}}}},
                "HvSocket": {},
                "VirtualSmb": {"Shares": shares, "DirectFileMappingInMB": 1024},
            },
            "GuestConnection": {},
        },
        "ShouldTerminateOnLastHandleClosed": True,
    }


def command_line(args: Sequence[str]) -> str:
    """argv as one Windows command line (the MS C runtime's quoting rules)."""
    return subprocess.list2cmdline(list(args))


def process_parameters(args: Sequence[str], env: Sequence[str] = (), working_dir: str = "", user: str = "",
                       tty: bool = False, stdin: bool = False, console_size: tuple[int, int] = (0, 0)
                       ) -> dict[str, Any]:
    """``HcsCreateProcess``'s document for ``args`` (``KEY=VALUE`` env). A TTY is an emulated
    console (no separate stderr pipe: HCS ignores it), ``console_size`` is (height, width)."""
    if not args:
        raise InvalidArgument("no command given: the container needs a Cmd or an Entrypoint")
    environment: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable {item!r}")
        environment[key] = value if sep else ""
    doc: dict[str, Any] = {"CommandLine": command_line(args)}
    if user:
        doc["User"] = user
    doc["WorkingDirectory"] = windows_path(working_dir, "working directory") if working_dir else "C:\\"
    if environment:
        doc["Environment"] = environment
    doc["CreateStdInPipe"] = stdin
    doc["CreateStdOutPipe"] = True
    if tty:
        doc["EmulateConsole"] = True
        if console_size[0] and console_size[1]:
            doc["ConsoleSize"] = [console_size[0], console_size[1]]
    else:
        doc["CreateStdErrPipe"] = True
    return doc
