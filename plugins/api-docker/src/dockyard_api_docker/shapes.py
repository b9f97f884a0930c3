"""Object model -> Docker API JSON shapes (PascalCase, as dockerd 20.10 answers)."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import Any

from dockyard.model import ZERO_TIME, Container, ContainerStatus


def unix_seconds(iso: str) -> int:
    if not iso or iso == ZERO_TIME:
        return 0
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def human_duration(seconds: float) -> str:
    """Go's ``units.HumanDuration``, which ``docker ps`` status strings use."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


def status_text(c: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if c.node.get("Status") == "Unhealthy":
        return "Host Down"  # a cluster manager's container whose node is down (Swarm classic's word)
    st = c.state
    if st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        text = "Up " + human_duration(now - unix_seconds(st.started_at))
        if st.status is ContainerStatus.PAUSED:
            text += " (Paused)"
        elif st.health is not None:
            text += f" (health: {st.health.status})" if st.health.status == "starting" else f" ({st.health.status})"
        return text
    if st.status is ContainerStatus.RESTARTING:
        return f"Restarting ({st.exit_code}) {human_duration(now - unix_seconds(st.finished_at))} ago"
    if st.status is ContainerStatus.EXITED:
        if unix_seconds(st.finished_at) == 0:
            return "Created" if unix_seconds(st.started_at) == 0 else f"Exited ({st.exit_code})"
        return f"Exited ({st.exit_code}) {human_duration(now - unix_seconds(st.finished_at))} ago"
    if st.status is ContainerStatus.REMOVING:
        return "Removal In Progress"
    if st.status is ContainerStatus.DEAD:
        return "Dead"
    return "Created"


def command_text(c: Container) -> str:
    args = (c.config.entrypoint or []) + (c.config.cmd or [])
    return " ".join(shlex.quote(a) if (" " in a or not a) else a for a in args)


def port_list(c: Container, bound: list[Any]) -> list[dict[str, Any]]:
    """``Ports`` of a container summary: the host ports actually bound (``docker ps`` shows
    ``127.0.0.1:52110->80/tcp`` for ``-p 127.0.0.1::80``), then exposed-only ports. Publishing
    on every address is reported as ``0.0.0.0`` and ``::``, as dockerd does."""
    out: list[dict[str, Any]] = []
    published = set()
    for pm in bound:
        for ip in [pm.host_ip] if pm.host_ip else ["0.0.0.0", "::"]:
            out.append({"IP": ip, "PrivatePort": pm.container_port, "PublicPort": pm.host_port,
                        "Type": pm.protocol})
        published.add(f"{pm.container_port}/{pm.protocol}")
    for port_proto in sorted(set(c.config.exposed_ports) - published):
        port, _, proto = port_proto.partition("/")
        out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def mount_list(c: Container) -> list[dict[str, Any]]:
    return [{"Type": m.type, "Name": m.name, "Source": m.source, "Destination": m.destination,
             "Driver": m.driver, "Mode": "", "RW": not m.read_only, "Propagation": m.propagation}
            for m in c.mounts]


def ipam_config_json(ep: Any) -> dict[str, Any] | None:
    """The endpoint's ``IPAMConfig``: what was asked for (null when nothing was)."""
    out: dict[str, Any] = {}
    if ep.ipam_ipv4:
        out["IPv4Address"] = ep.ipam_ipv4
    if ep.ipam_ipv6:
        out["IPv6Address"] = ep.ipam_ipv6
    if ep.link_local_ips:
        out["LinkLocalIPs"] = list(ep.link_local_ips)
    return out or None


def endpoint_json(ep: Any) -> dict[str, Any]:
    return {"IPAMConfig": ipam_config_json(ep), "Links": None, "Aliases": list(ep.aliases) or None,
            "NetworkID": ep.network_id, "EndpointID": ep.endpoint_id, "Gateway": ep.gateway,
            "IPAddress": ep.ipv4_address.split("/")[0], "IPPrefixLen": ep.ip_prefix_len,
            "IPv6Gateway": ep.ipv6_gateway, "GlobalIPv6Address": ep.ipv6_address.split("/")[0],
            "GlobalIPv6PrefixLen": ep.ipv6_prefix_len,
            "MacAddress": ep.mac_address, "DriverOpts": dict(ep.driver_opts) or None}


def container_summary(c: Container, image_ref: str, bound: list[Any] | None = None) -> dict[str, Any]:
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.config.image or image_ref,
        "ImageID": c.image_id,
        "Command": command_text(c),
        "Created": unix_seconds(c.created),
        # dockerd lists the ports of a running (or paused) container only: they are released at
        # exit (releaseNetwork sets NetworkSettings.Ports to nil) and not bound before start.
        "Ports": port_list(c, bound or []) if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
        else [],
        "Labels": dict(c.config.labels),
        "State": c.state.status.value,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.network_mode},
        "NetworkSettings": {"Networks": {name: endpoint_json(ep) for name, ep in c.networks.items()}},
        "Mounts": mount_list(c),
    }


def _ns_ports(c: Container, bound: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {p: None for p in c.config.exposed_ports}
    for pm in bound:
        key = f"{pm.container_port}/{pm.protocol}"
        ips = [pm.host_ip] if pm.host_ip else ["0.0.0.0", "::"]
        for ip in ips:
            out.setdefault(key, None)
            out[key] = (out[key] or []) + [{"HostIp": ip, "HostPort": str(pm.host_port)}]
    return out


def _healthcheck_json(h: Any) -> dict[str, Any] | None:
    if h is None:
        return None
    out: dict[str, Any] = {"Test": list(h.test)}
    for key, attr in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
                      ("Retries", "retries")):
        if getattr(h, attr):
            out[key] = getattr(h, attr)
    return out


def host_config_json(hc: Any) -> dict[str, Any]:
    return {
        "Binds": list(hc.binds) or None, "ContainerIDFile": "",
        "LogConfig": {"Type": hc.log_config.type or "json-file", "Config": dict(hc.log_config.config)},
        "NetworkMode": hc.network_mode,
        "PortBindings": {k: [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in v]
                         for k, v in hc.port_bindings.items()},
        "RestartPolicy": {"Name": hc.restart_policy.name, "MaximumRetryCount": hc.restart_policy.maximum_retry_count},
        "AutoRemove": hc.auto_remove, "VolumeDriver": hc.volume_driver, "VolumesFrom": list(hc.volumes_from) or None,
        "CapAdd": list(hc.cap_add) or None, "CapDrop": list(hc.cap_drop) or None, "CgroupnsMode": "private",
        "Dns": list(hc.dns), "DnsOptions": list(hc.dns_options), "DnsSearch": list(hc.dns_search),
        "ExtraHosts": list(hc.extra_hosts) or None, "GroupAdd": list(hc.group_add) or None,
        "IpcMode": hc.ipc_mode or "private", "Cgroup": "",
        "Links": list(hc.links) or None, "OomScoreAdj": hc.oom_score_adj, "PidMode": hc.pid_mode,
        "Privileged": hc.privileged,
        "PublishAllPorts": hc.publish_all_ports, "ReadonlyRootfs": hc.read_only_rootfs,
        "SecurityOpt": list(hc.security_opt) or None, "UTSMode": hc.uts_mode, "UsernsMode": "",
        "ShmSize": hc.shm_size or 67108864, "Runtime": hc.runtime or "runc", "ConsoleSize": list(hc.console_size),
        "Isolation": hc.isolation, "CpuShares": hc.cpu_shares, "Memory": hc.memory, "NanoCpus": hc.nano_cpus,
        "CgroupParent": "", "BlkioWeight": hc.blkio_weight, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None, "CpuPeriod": hc.cpu_period, "CpuQuota": hc.cpu_quota,
        "CpuRealtimePeriod": hc.cpu_realtime_period, "CpuRealtimeRuntime": hc.cpu_realtime_runtime,
        "CpusetCpus": hc.cpuset_cpus, "CpusetMems": hc.cpuset_mems,
        "Devices": [{"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container,
                     "CgroupPermissions": d.cgroup_permissions} for d in hc.devices],
        "DeviceCgroupRules": list(hc.device_cgroup_rules) or None, "DeviceRequests": None,
        "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": hc.memory_reservation,
        "MemorySwap": hc.memory_swap, "MemorySwappiness": None, "OomKillDisable": False,
        "PidsLimit": hc.pids_limit or None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in hc.ulimits] or None,
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": [{"Type": m.type, "Source": m.source or m.name, "Target": m.destination, "ReadOnly": m.read_only}
                   for m in hc.mounts] or None,
        "Tmpfs": dict(hc.tmpfs) or None, "Init": hc.init or None, "Sysctls": dict(hc.sysctls) or None,
        "MaskedPaths": [], "ReadonlyPaths": [],
    }


def _platform_json(c: Container) -> dict[str, Any]:
    """``DockyardPlatform`` {Platform: the image's os/arch[/variant], Emulated}: what the
    runtime runs (Docker's ``Platform`` is the OS alone); nothing for a pre-0.3 record."""
    if not c.image_platform:
        return {}
    return {"DockyardPlatform": {"Platform": c.image_platform, "Emulated": c.emulated}}


def container_inspect(c: Container, bound_ports: list[Any] | None = None, image_ref: str = "") -> dict[str, Any]:
    st = c.state
    cfg = c.config
    args = (cfg.entrypoint or []) + (cfg.cmd or [])
    state: dict[str, Any] = {
        "Status": st.status.value, "Running": st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED),
        "Paused": st.status is ContainerStatus.PAUSED, "Restarting": st.status is ContainerStatus.RESTARTING,
        "OOMKilled": st.oom_killed, "Dead": st.status is ContainerStatus.DEAD, "Pid": st.pid,
        "ExitCode": st.exit_code, "Error": st.error, "StartedAt": st.started_at, "FinishedAt": st.finished_at,
    }
    if st.health is not None and cfg.healthcheck is not None:
        state["Health"] = {"Status": st.health.status, "FailingStreak": st.health.failing_streak,
                           "Log": [{"Start": e.start, "End": e.end, "ExitCode": e.exit_code, "Output": e.output}
                                   for e in st.health.log]}
    cdir = str(c.log_path).rsplit("/", 1)[0] if c.log_path else ""
    networks = {name: endpoint_json(ep) for name, ep in c.networks.items()}
    legacy = next(iter(c.networks.values()), None) if c.host_config.network_mode in ("default", "bridge") else None
    return {
        "Id": c.id, "Created": c.created, "Path": args[0] if args else "", "Args": args[1:],
        "State": state, "Image": c.image_id,
        "ResolvConfPath": f"{cdir}/resolv.conf" if cdir else "",
        "HostnamePath": f"{cdir}/hostname" if cdir else "", "HostsPath": f"{cdir}/hosts" if cdir else "",
        "LogPath": c.log_path, "Name": "/" + c.name, "RestartCount": st.restart_count, "Driver": c.driver,
        "Platform": c.platform or "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        **_platform_json(c),
        "ExecIDs": list(c.exec_ids) or None, "HostConfig": host_config_json(c.host_config),
        "GraphDriver": {"Name": c.driver, "Data": None},
        "Mounts": mount_list(c),
        "Config": {
            "Hostname": cfg.hostname, "Domainname": cfg.domainname, "User": cfg.user,
            "AttachStdin": cfg.attach_stdin, "AttachStdout": cfg.attach_stdout, "AttachStderr": cfg.attach_stderr,
            "ExposedPorts": {p: {} for p in cfg.exposed_ports} or None, "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin, "StdinOnce": cfg.stdin_once, "Env": list(cfg.env),
            "Cmd": list(cfg.cmd) or None, "Healthcheck": _healthcheck_json(cfg.healthcheck),
            "Image": cfg.image or image_ref, "Volumes": {v: {} for v in cfg.volumes} or None,
            "WorkingDir": cfg.working_dir, "Entrypoint": list(cfg.entrypoint) or None, "OnBuild": None,
            "Labels": dict(cfg.labels), **({"StopSignal": cfg.stop_signal} if cfg.stop_signal else {}),
            **({"MacAddress": cfg.mac_address} if cfg.mac_address else {}),
            **({"StopTimeout": cfg.stop_timeout} if cfg.stop_timeout is not None else {}),
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": st.sandbox_key.rsplit("/", 1)[-1],
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": _ns_ports(c, bound_ports or []) if st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
            else {},  # as dockerd: nothing bound before start or after exit (compose v1 `ps` shows it)
            "SandboxKey": st.sandbox_key, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": legacy.endpoint_id if legacy else "", "Gateway": legacy.gateway if legacy else "",
            "GlobalIPv6Address": legacy.ipv6_address.split("/")[0] if legacy else "",
            "GlobalIPv6PrefixLen": legacy.ipv6_prefix_len if legacy else 0,
            "IPAddress": legacy.ipv4_address.split("/")[0] if legacy else "",
            "IPPrefixLen": legacy.ip_prefix_len if legacy else 0, "IPv6Gateway": legacy.ipv6_gateway if legacy else "",
            "MacAddress": legacy.mac_address if legacy else "",
            "Networks": networks,
        },
        # Swarm classic's node of a container a manager placed ({ID, IP, Addr, Name})
        **({"Node": dict(c.node)} if c.node else {}),
    }
