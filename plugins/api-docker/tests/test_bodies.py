"""Typed body checks (issue 21 items 1 and 16): a JSON value of the wrong type is a 400 worded
as dockerd's Go decoder, never a Python error; unsupported HostConfig fields are refused by name."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard_api_docker import bodies
from dockyard_api_docker.containers import create_request_from, endpoint_settings_from, host_config_from


@pytest.mark.parametrize("body, message", [
    ({"Image": ["busybox"]}, "cannot unmarshal array into Go struct field ContainerConfigWrapper.Image of type string"),
    ({"Env": [["a"]]}, "cannot unmarshal array into Go struct field ContainerConfigWrapper.Env of type string"),
    ({"Labels": {"a": 1}}, "cannot unmarshal number into Go struct field ContainerConfigWrapper.Labels of type string"),
    ({"HostConfig": {"Memory": 1.5}}, "cannot unmarshal number 1.5 into Go struct field "
                                      "ContainerConfigWrapper.HostConfig.Memory of type int64"),
    ({"HostConfig": {"Privileged": "yes"}}, "cannot unmarshal string into Go struct field "
                                            "ContainerConfigWrapper.HostConfig.Privileged of type bool"),
    ({"HostConfig": {"Mounts": ["x"]}}, "cannot unmarshal string into Go struct field "
                                        "ContainerConfigWrapper.HostConfig.Mounts of type struct"),
    ({"HostConfig": {"Memory": True}}, "cannot unmarshal bool"),
    ({"NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "a"}}}}, "EndpointsConfig.Aliases of type []string"),
])
def test_wrong_types_are_refused_as_go_words_it(body: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        bodies.check(body, bodies.CONTAINER_CREATE, "ContainerConfigWrapper")
    assert message in str(info.value)


def test_the_clients_bodies_pass() -> None:
    cli = {"Image": "busybox", "Cmd": ["true"], "Entrypoint": None, "Env": None, "Tty": False,
           "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000}, "StopTimeout": None,
           "Unknown": [1, {"x": []}],  # unknown fields are ignored, as Go's decoder does
           "HostConfig": {"MemorySwappiness": -1, "OomKillDisable": False, "LogConfig": {"Type": "", "Config": {}},
                          "CapAdd": "NET_ADMIN", "ConsoleSize": [0, 0], "PortBindings": {"80/tcp": [{"HostIp": ""}]}},
           "NetworkingConfig": {"EndpointsConfig": {"default": {}}}}
    bodies.check(cli, bodies.CONTAINER_CREATE, "ContainerConfigWrapper")
    create_request_from(cli, "x")
    bodies.check({"Cmd": "echo hi", "Entrypoint": ["sh"]}, bodies.CONTAINER_CREATE, "ContainerConfigWrapper")


@pytest.mark.parametrize("field, value", [("OomKillDisable", True), ("CgroupParent", "x"), ("KernelMemory", 1),
                                          ("MemorySwappiness", 10), ("DeviceRequests", [{"Count": -1}]),
                                          ("UsernsMode", "host"), ("CgroupnsMode", "host")])
def test_unsupported_fields_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(InvalidArgument, match=f"HostConfig.{field} is not supported by dockyard"):
        host_config_from({field: value})


def test_applied_fields_round_trip() -> None:
    hc = host_config_from({"PidMode": "host", "UTSMode": "host", "IpcMode": "shareable", "GroupAdd": ["audio"],
                           "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "", "CgroupPermissions": ""}],
                           "DeviceCgroupRules": ["c 1:3 mr"], "Sysctls": {"net.x": "1"}, "OomScoreAdj": -5,
                           "Links": ["db:alias"], "Isolation": "default", "VolumeDriver": "local",
                           "CpuRealtimePeriod": 1000000, "CpuRealtimeRuntime": 950})
    assert (hc.pid_mode, hc.uts_mode, hc.ipc_mode, hc.group_add) == ("host", "host", "shareable", ["audio"])
    assert (hc.devices[0].path_in_container, hc.devices[0].cgroup_permissions) == ("/dev/fuse", "rwm")
    assert (hc.oom_score_adj, hc.links, hc.isolation, hc.volume_driver) == (-5, ["db:alias"], "default", "local")
    assert (hc.cpu_realtime_period, hc.cpu_realtime_runtime, hc.sysctls) == (1000000, 950, {"net.x": "1"})
    ep = endpoint_settings_from({"IPAMConfig": {"IPv4Address": "10.0.0.9", "IPv6Address": "fd00::9",
                                                "LinkLocalIPs": ["169.254.1.1"]}, "DriverOpts": {"k": "v"}})
    assert (ep.ipam_ipv4, ep.ipam_ipv6, ep.link_local_ips, ep.driver_opts) == (
        "10.0.0.9", "fd00::9", ["169.254.1.1"], {"k": "v"})
