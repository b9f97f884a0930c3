"""Docker API JSON <-> core's container model, for the manager: a node's inspect answer becomes
the :class:`~dockyard.model.Container` the API front renders (named ``node/name``, ``host`` set
to the node), and a create request goes to the node as the Docker body the client sent.

The engines speak the Docker API, so the manager reads what any Docker engine answers (not
dockyard's own documents): the fields the front renders are read back; the rest keep their
defaults.
"""

from __future__ import annotations

from typing import Any

from dockyard.model import (
    ZERO_TIME,
    Container,
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    EndpointSettings,
    Health,
    Healthcheck,
    HealthLogEntry,
    HostConfig,
    LogConfig,
    Mount,
    PortBinding,
    RestartPolicy,
    Ulimit,
)
from dockyard.services.containers import ContainerCreate
from dockyard.specs.network import PortMapping

_STATUSES = {s.value for s in ContainerStatus}


def _list(v: Any) -> list[str]:
    if not v:
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def state_from(d: dict[str, Any]) -> ContainerState:
    status = str(d.get("Status") or "created")
    health = None
    if d.get("Health"):
        h = d["Health"]
        health = Health(status=h.get("Status") or "starting", failing_streak=_int(h.get("FailingStreak")),
                        log=[HealthLogEntry(start=x.get("Start", ""), end=x.get("End", ""),
                                            exit_code=_int(x.get("ExitCode")), output=x.get("Output", ""))
                             for x in h.get("Log") or []])
    return ContainerState(status=ContainerStatus(status) if status in _STATUSES else ContainerStatus.CREATED,
                          pid=_int(d.get("Pid")), exit_code=_int(d.get("ExitCode")), error=d.get("Error") or "",
                          oom_killed=bool(d.get("OOMKilled")), started_at=d.get("StartedAt") or ZERO_TIME,
                          finished_at=d.get("FinishedAt") or ZERO_TIME, health=health)


def config_from(d: dict[str, Any]) -> ContainerConfig:
    hc = d.get("Healthcheck")
    return ContainerConfig(
        image=d.get("Image") or "", cmd=_list(d.get("Cmd")), entrypoint=_list(d.get("Entrypoint")),
        env=_list(d.get("Env")), working_dir=d.get("WorkingDir") or "", user=d.get("User") or "",
        labels={k: str(v) for k, v in (d.get("Labels") or {}).items()}, hostname=d.get("Hostname") or "",
        domainname=d.get("Domainname") or "", tty=bool(d.get("Tty")), open_stdin=bool(d.get("OpenStdin")),
        stdin_once=bool(d.get("StdinOnce")), attach_stdin=bool(d.get("AttachStdin")),
        attach_stdout=bool(d.get("AttachStdout")), attach_stderr=bool(d.get("AttachStderr")),
        exposed_ports=sorted(d.get("ExposedPorts") or {}), volumes=sorted(d.get("Volumes") or {}),
        healthcheck=Healthcheck(test=_list(hc.get("Test")), interval=_int(hc.get("Interval")),
                                timeout=_int(hc.get("Timeout")), start_period=_int(hc.get("StartPeriod")),
                                retries=_int(hc.get("Retries"))) if hc else None,
        stop_signal=d.get("StopSignal") or "",
        stop_timeout=d.get("StopTimeout") if d.get("StopTimeout") is not None else None)


def host_config_from(d: dict[str, Any]) -> HostConfig:
    rp = d.get("RestartPolicy") or {}
    lc = d.get("LogConfig") or {}
    return HostConfig(
        binds=_list(d.get("Binds")),
        port_bindings={k: [PortBinding(host_ip=b.get("HostIp") or "", host_port=str(b.get("HostPort") or ""))
                           for b in (v or [])] for k, v in (d.get("PortBindings") or {}).items()},
        publish_all_ports=bool(d.get("PublishAllPorts")), network_mode=d.get("NetworkMode") or "default",
        restart_policy=RestartPolicy(name=rp.get("Name") or "no", maximum_retry_count=_int(rp.get("MaximumRetryCount"))),
        auto_remove=bool(d.get("AutoRemove")), runtime=d.get("Runtime") or "", privileged=bool(d.get("Privileged")),
        read_only_rootfs=bool(d.get("ReadonlyRootfs")), cap_add=_list(d.get("CapAdd")), cap_drop=_list(d.get("CapDrop")),
        security_opt=_list(d.get("SecurityOpt")), init=bool(d.get("Init")), memory=_int(d.get("Memory")),
        memory_swap=_int(d.get("MemorySwap")), memory_reservation=_int(d.get("MemoryReservation")),
        nano_cpus=_int(d.get("NanoCpus")), cpu_shares=_int(d.get("CpuShares")), cpu_period=_int(d.get("CpuPeriod")),
        cpu_quota=_int(d.get("CpuQuota")), cpuset_cpus=d.get("CpusetCpus") or "", cpuset_mems=d.get("CpusetMems") or "",
        pids_limit=_int(d.get("PidsLimit")), blkio_weight=_int(d.get("BlkioWeight")),
        ulimits=[Ulimit(name=u.get("Name", ""), soft=_int(u.get("Soft")), hard=_int(u.get("Hard")))
                 for u in d.get("Ulimits") or []],
        log_config=LogConfig(type=lc.get("Type") or "json-file", config=dict(lc.get("Config") or {})),
        dns=_list(d.get("Dns")), dns_search=_list(d.get("DnsSearch")), dns_options=_list(d.get("DnsOptions")),
        extra_hosts=_list(d.get("ExtraHosts")), shm_size=_int(d.get("ShmSize")),
        volumes_from=_list(d.get("VolumesFrom")), tmpfs=dict(d.get("Tmpfs") or {}))


def bound_ports(doc: dict[str, Any], node_ip: str = "") -> list[PortMapping]:
    """The host ports a node reports bound (``NetworkSettings.Ports``); every-address bindings
    show the node's IP, as Swarm classic's ``ps`` did."""
    out: list[PortMapping] = []
    for spec, bindings in ((doc.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = spec.partition("/")
        seen = set()
        for b in bindings or []:
            ip = b.get("HostIp") or ""
            if ip in ("", "0.0.0.0", "::"):
                ip = node_ip
            key = (ip, b.get("HostPort"))
            if key in seen or not str(b.get("HostPort") or "").isdigit():
                continue
            seen.add(key)
            out.append(PortMapping(container_port=_int(port), protocol=proto or "tcp", host_ip=ip,
                                   host_port=_int(b.get("HostPort"))))
    return out


def container_from(doc: dict[str, Any], node: str, addr: str = "", node_id: str = "") -> Container:
    """A node's ``GET /containers/{id}/json`` answer as the manager shows it: named
    ``node/name``, ``host`` = the node, ``node`` = Swarm classic's inspect ``Node``."""
    cfg = config_from(doc.get("Config") or {})
    path, args = doc.get("Path") or "", _list(doc.get("Args"))
    if not cfg.entrypoint and not cfg.cmd and path:
        cfg.cmd = [path, *args]
    networks = {}
    for name, ep in ((doc.get("NetworkSettings") or {}).get("Networks") or {}).items():
        ep = ep or {}
        ip, plen = ep.get("IPAddress") or "", _int(ep.get("IPPrefixLen"))
        networks[name] = EndpointSettings(
            network_id=ep.get("NetworkID") or "", endpoint_id=ep.get("EndpointID") or "",
            gateway=ep.get("Gateway") or "", ipv4_address=f"{ip}/{plen}" if ip and plen else ip,
            ip_prefix_len=plen, ipv6_address=ep.get("GlobalIPv6Address") or "", mac_address=ep.get("MacAddress") or "",
            aliases=_list(ep.get("Aliases")), driver_opts=dict(ep.get("DriverOpts") or {}))
    mounts = [Mount(type=m.get("Type") or "volume", destination=m.get("Destination") or "",
                    source=m.get("Source") or "", name=m.get("Name") or "", driver=m.get("Driver") or "",
                    read_only=not m.get("RW", True), propagation=m.get("Propagation") or "")
              for m in doc.get("Mounts") or []]
    state = state_from(doc.get("State") or {})
    state.restart_count = _int(doc.get("RestartCount"))
    state.sandbox_key = (doc.get("NetworkSettings") or {}).get("SandboxKey") or ""
    return Container(id=doc["Id"], name=f"{node}/{str(doc.get('Name') or '').lstrip('/')}",
                     image_id=doc.get("Image") or "", config=cfg, host_config=host_config_from(doc.get("HostConfig") or {}),
                     created=doc.get("Created") or ZERO_TIME, state=state, driver=doc.get("Driver") or "",
                     platform=doc.get("Platform") or "linux", networks=networks, mounts=mounts,
                     log_path=doc.get("LogPath") or "", exec_ids=_list(doc.get("ExecIDs")), host=node,
                     node={"ID": node_id or node, "IP": addr.rsplit(":", 1)[0].strip("[]"), "Addr": addr,
                           "Name": node})


def create_body(req: ContainerCreate) -> dict[str, Any]:
    """The Docker create body of ``req``: the client's own when the front kept it, else built
    from the typed request (the fields the front parses)."""
    raw = getattr(req, "body", None)
    if isinstance(raw, dict) and raw:
        return dict(raw)
    cfg, hc = req.config, req.host_config
    body: dict[str, Any] = {
        "Image": cfg.image, "Env": list(cfg.env), "WorkingDir": cfg.working_dir, "User": cfg.user,
        "Labels": dict(cfg.labels), "Hostname": cfg.hostname, "Domainname": cfg.domainname, "Tty": cfg.tty,
        "OpenStdin": cfg.open_stdin, "StdinOnce": cfg.stdin_once, "AttachStdin": cfg.attach_stdin,
        "AttachStdout": cfg.attach_stdout, "AttachStderr": cfg.attach_stderr,
        "ExposedPorts": {p: {} for p in cfg.exposed_ports}, "Volumes": {v: {} for v in cfg.volumes},
        "StopSignal": cfg.stop_signal or None, "StopTimeout": cfg.stop_timeout,
        "Entrypoint": req.entrypoint, "Cmd": req.cmd,
        "HostConfig": {
            "Binds": list(hc.binds), "PortBindings": {k: [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in v]
                                                      for k, v in hc.port_bindings.items()},
            "PublishAllPorts": hc.publish_all_ports, "NetworkMode": hc.network_mode,
            "RestartPolicy": {"Name": hc.restart_policy.name, "MaximumRetryCount": hc.restart_policy.maximum_retry_count},
            "AutoRemove": hc.auto_remove, "Privileged": hc.privileged, "ReadonlyRootfs": hc.read_only_rootfs,
            "CapAdd": list(hc.cap_add), "CapDrop": list(hc.cap_drop), "SecurityOpt": list(hc.security_opt),
            "Init": hc.init, "Memory": hc.memory, "MemorySwap": hc.memory_swap, "NanoCpus": hc.nano_cpus,
            "CpuShares": hc.cpu_shares, "Dns": list(hc.dns), "ExtraHosts": list(hc.extra_hosts),
            "VolumesFrom": list(hc.volumes_from), "Tmpfs": dict(hc.tmpfs),
            "LogConfig": {"Type": hc.log_config.type, "Config": dict(hc.log_config.config)},
        },
    }
    if req.networks:
        body["NetworkingConfig"] = {"EndpointsConfig": {
            n: {"Aliases": list(ep.aliases) or None,
                "IPAMConfig": {"IPv4Address": ep.ipv4_address} if ep.ipv4_address else None}
            for n, ep in req.networks.items()}}
    return {k: v for k, v in body.items() if v is not None}


__all__ = ["bound_ports", "container_from", "create_body", "state_from"]
