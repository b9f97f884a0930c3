"""The Go types of the JSON bodies dockerd decodes, checked before a handler reads them.

dockerd decodes a body into Go structs, so a value of the wrong JSON type is a 400 naming the
field (``json: cannot unmarshal array into Go struct field ContainerConfigWrapper.Image of type
string``) and nothing is created. The handlers here read bodies as plain dicts; without this
check an array where a string goes reached them as a Python AttributeError and a 500.

A schema is a Go type written as a Python value: ``str``, ``int``, ``bool`` and ``float`` for
scalars (``int`` refuses a fraction, as ``int64`` does), ``[t]`` for a slice, ``{KEY: t}`` for a
map of ``t`` (``KEY`` is the one key of such a dict), a dict of field names for a struct (unknown
fields are ignored, as Go's decoder does), ``STRSLICE`` for Docker's ``strslice.StrSlice`` (a
string or an array of strings), ``ANY`` for ``interface{}``. ``null`` is accepted everywhere, as
Go leaves the zero value.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidArgument

KEY = "*"
ANY = object()
STRSLICE = object()

_GO = {str: "string", int: "int64", bool: "bool", float: "float64"}

STR_MAP = {KEY: str}
EMPTY_STRUCT_MAP = {KEY: {}}
THROTTLE = [{"Path": str, "Rate": int}]

HEALTHCHECK = {"Test": [str], "Interval": int, "Timeout": int, "StartPeriod": int, "Retries": int}

CONTAINER_CONFIG: dict[str, Any] = {
    "Hostname": str, "Domainname": str, "User": str, "AttachStdin": bool, "AttachStdout": bool,
    "AttachStderr": bool, "ExposedPorts": EMPTY_STRUCT_MAP, "Tty": bool, "OpenStdin": bool,
    "StdinOnce": bool, "Env": [str], "Cmd": STRSLICE, "Healthcheck": HEALTHCHECK, "ArgsEscaped": bool,
    "Image": str, "Volumes": EMPTY_STRUCT_MAP, "WorkingDir": str, "Entrypoint": STRSLICE,
    "NetworkDisabled": bool, "MacAddress": str, "OnBuild": [str], "Labels": STR_MAP, "StopSignal": str,
    "StopTimeout": int, "Shell": STRSLICE,
}

RESOURCES: dict[str, Any] = {
    "CpuShares": int, "Memory": int, "NanoCpus": int, "CgroupParent": str, "BlkioWeight": int,
    "BlkioWeightDevice": [{"Path": str, "Weight": int}], "BlkioDeviceReadBps": THROTTLE,
    "BlkioDeviceWriteBps": THROTTLE, "BlkioDeviceReadIOps": THROTTLE, "BlkioDeviceWriteIOps": THROTTLE,
    "CpuPeriod": int, "CpuQuota": int, "CpuRealtimePeriod": int, "CpuRealtimeRuntime": int,
    "CpusetCpus": str, "CpusetMems": str,
    "Devices": [{"PathOnHost": str, "PathInContainer": str, "CgroupPermissions": str}],
    "DeviceCgroupRules": [str],
    "DeviceRequests": [{"Driver": str, "Count": int, "DeviceIDs": [str], "Capabilities": [[str]],
                        "Options": STR_MAP}],
    "KernelMemory": int, "KernelMemoryTCP": int, "MemoryReservation": int, "MemorySwap": int,
    "MemorySwappiness": int, "OomKillDisable": bool, "PidsLimit": int,
    "Ulimits": [{"Name": str, "Soft": int, "Hard": int}], "CpuCount": int, "CpuPercent": int,
    "IOMaximumIOps": int, "IOMaximumBandwidth": int,
}

MOUNT = {"Type": str, "Source": str, "Target": str, "ReadOnly": bool, "Consistency": str,
         "BindOptions": {"Propagation": str, "NonRecursive": bool},
         "VolumeOptions": {"NoCopy": bool, "Labels": STR_MAP, "DriverConfig": {"Name": str, "Options": STR_MAP}},
         "TmpfsOptions": {"SizeBytes": int, "Mode": int}}

HOST_CONFIG: dict[str, Any] = {
    "Binds": [str], "ContainerIDFile": str, "LogConfig": {"Type": str, "Config": STR_MAP},
    "NetworkMode": str, "PortBindings": {KEY: [{"HostIp": str, "HostPort": str}]},
    "RestartPolicy": {"Name": str, "MaximumRetryCount": int}, "AutoRemove": bool, "VolumeDriver": str,
    "VolumesFrom": [str], "CapAdd": STRSLICE, "CapDrop": STRSLICE, "CgroupnsMode": str, "Dns": [str],
    "DnsOptions": [str], "DnsSearch": [str], "ExtraHosts": [str], "GroupAdd": [str], "IpcMode": str,
    "Cgroup": str, "Links": [str], "OomScoreAdj": int, "PidMode": str, "Privileged": bool,
    "PublishAllPorts": bool, "ReadonlyRootfs": bool, "SecurityOpt": [str], "StorageOpt": STR_MAP,
    "Tmpfs": STR_MAP, "UTSMode": str, "UsernsMode": str, "ShmSize": int, "Sysctls": STR_MAP,
    "Runtime": str, "ConsoleSize": [int], "Isolation": str, **RESOURCES, "Mounts": [MOUNT],
    "MaskedPaths": [str], "ReadonlyPaths": [str], "Init": bool,
}

ENDPOINT_SETTINGS: dict[str, Any] = {
    "IPAMConfig": {"IPv4Address": str, "IPv6Address": str, "LinkLocalIPs": [str]}, "Links": [str],
    "Aliases": [str], "NetworkID": str, "EndpointID": str, "Gateway": str, "IPAddress": str,
    "IPPrefixLen": int, "IPv6Gateway": str, "GlobalIPv6Address": str, "GlobalIPv6PrefixLen": int,
    "MacAddress": str, "DriverOpts": STR_MAP,
}

#: ``POST /containers/create``: dockerd's ``ContainerConfigWrapper``
CONTAINER_CREATE: dict[str, Any] = {**CONTAINER_CONFIG, "HostConfig": HOST_CONFIG,
                                    "NetworkingConfig": {"EndpointsConfig": {KEY: ENDPOINT_SETTINGS}}}
#: ``POST /containers/{id}/update``: ``container.UpdateConfig``
CONTAINER_UPDATE: dict[str, Any] = {**RESOURCES, "RestartPolicy": HOST_CONFIG["RestartPolicy"]}
#: ``POST /containers/{id}/exec``: ``types.ExecConfig``
EXEC_CREATE: dict[str, Any] = {"User": str, "Privileged": bool, "Tty": bool, "ConsoleSize": [int],
                               "AttachStdin": bool, "AttachStderr": bool, "AttachStdout": bool,
                               "Detach": bool, "DetachKeys": str, "Env": [str], "WorkingDir": str,
                               "Cmd": STRSLICE}
#: ``POST /exec/{id}/start``: ``types.ExecStartCheck``
EXEC_START: dict[str, Any] = {"Detach": bool, "Tty": bool, "ConsoleSize": [int]}
#: ``POST /networks/create``: ``types.NetworkCreateRequest``
NETWORK_CREATE: dict[str, Any] = {
    "Name": str, "CheckDuplicate": bool, "Driver": str, "Scope": str, "EnableIPv6": bool,
    "IPAM": {"Driver": str, "Config": [{"Subnet": str, "IPRange": str, "Gateway": str,
                                        "AuxiliaryAddresses": STR_MAP}], "Options": STR_MAP},
    "Internal": bool, "Attachable": bool, "Ingress": bool, "ConfigOnly": bool,
    "ConfigFrom": {"Network": str}, "Options": STR_MAP, "Labels": STR_MAP,
}
#: ``POST /networks/{id}/connect``: ``types.NetworkConnect``
NETWORK_CONNECT: dict[str, Any] = {"Container": str, "EndpointConfig": ENDPOINT_SETTINGS}
#: ``POST /networks/{id}/disconnect``: ``types.NetworkDisconnect``
NETWORK_DISCONNECT: dict[str, Any] = {"Container": str, "Force": bool}
#: ``POST /volumes/create``: ``volume.CreateOptions``
VOLUME_CREATE: dict[str, Any] = {"Name": str, "Driver": str, "DriverOpts": STR_MAP, "Labels": STR_MAP}


def _kind(value: Any) -> str:
    """How Go's decoder names a JSON value in its error (``UnmarshalTypeError.Value``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}" if isinstance(value, float) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go(schema: Any) -> str:
    if schema is STRSLICE:
        return "strslice.StrSlice"
    if isinstance(schema, type):
        return _GO[schema]
    if isinstance(schema, list):
        return "[]" + _go(schema[0])
    if isinstance(schema, dict) and set(schema) == {KEY}:
        return "map[string]" + _go(schema[KEY])
    return "struct"


def _fail(value: Any, path: str, schema: Any) -> InvalidArgument:
    return InvalidArgument(f"json: cannot unmarshal {_kind(value)} into Go struct field {path} of type {_go(schema)}")


def _check(value: Any, schema: Any, path: str) -> None:
    if value is None or schema is ANY:
        return
    if schema is STRSLICE:
        if isinstance(value, str):
            return
        schema = [str]
    if schema is str or schema is bool:
        if not isinstance(value, schema):
            raise _fail(value, path, schema)
    elif schema is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(value, path, schema)
        if isinstance(value, float) and not value.is_integer():
            raise _fail(value, path, schema)
    elif schema is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(value, path, schema)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise _fail(value, path, schema)
        for item in value:
            _check(item, schema[0], path)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _fail(value, path, schema)
        if set(schema) == {KEY}:
            for item in value.values():
                _check(item, schema[KEY], path)
        else:
            for name, item in value.items():
                sub = schema.get(name)
                if sub is not None:
                    _check(item, sub, f"{path}.{name}")


def check(body: Any, schema: dict[str, Any], struct: str) -> None:
    """Raise InvalidArgument, worded as dockerd's decoder, when ``body`` does not fit ``schema``
    (the Go struct named ``struct``)."""
    _check(body, schema, struct)
