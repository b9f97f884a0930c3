"""Service model -> Docker Engine API container create body (what compose sends)."""

from __future__ import annotations

import math
from typing import Any

from dockyard_compose import __version__
from dockyard_compose import engine as E
from dockyard_compose import model as m
from dockyard_compose.model import duration_ns
from dockyard_compose.schema import fields_set

#: Service keys accepted by the model that the create body cannot express (reported at ``up``).
UNSUPPORTED = ("blkio_config", "cpu_count", "cpu_percent", "cpu_rt_runtime", "cpu_rt_period",
               "credential_spec", "develop", "gpus", "post_start", "pre_stop", "isolation",
               "device_cgroup_rules", "external_links", "annotations")


def ignored_keys(svc: m.Service) -> list[str]:
    return [k for k in UNSUPPORTED if k in fields_set(svc) and getattr(svc, k)]


def image_ref(project: str, name: str, svc: m.Service) -> str:
    """The image a service runs: ``image:`` or the tag ``build:`` produces (``<project>-<service>``)."""
    return svc.image or f"{project}-{name}"


def container_name(project: str, name: str, svc: m.Service, number: int) -> str:
    return svc.container_name or f"{project}-{name}-{number}"


def compose_labels(ctx: Any, name: str, number: int, oneoff: bool, config_hash: str) -> dict[str, str]:
    return {
        E.L_PROJECT: ctx.name,
        E.L_SERVICE: name,
        E.L_NUMBER: str(number),
        E.L_ONEOFF: "True" if oneoff else "False",
        E.L_HASH: config_hash,
        E.L_WORKDIR: str(ctx.working_dir),
        E.L_FILES: ",".join(str(f) for f in ctx.config_files),
        E.L_VERSION: __version__,
        E.L_DEPENDS: ",".join(f"{d}:{c.condition}:{str(c.restart).lower()}"
                              for d, c in sorted(ctx.model.services[name].depends_on.items())),
    }


def _port_key(target: int | str, proto: str = "tcp") -> str:
    return f"{target}/{proto}"


def sorted_networks(svc: m.Service) -> list[str]:
    def prio(item: tuple[str, m.ServiceNetwork | None]) -> tuple[int, str]:
        cfg = item[1]
        return (-(cfg.priority or 0) if cfg else 0, item[0])

    return [k for k, _ in sorted(svc.networks.items(), key=prio)]


def endpoint_config(name: str, svc: m.Service, net_key: str, container: str) -> dict[str, Any]:
    cfg = svc.networks.get(net_key)
    aliases = [name] + (list(cfg.aliases) if cfg else [])
    out: dict[str, Any] = {"Aliases": aliases}
    ipam: dict[str, Any] = {}
    if cfg and cfg.ipv4_address:
        ipam["IPv4Address"] = cfg.ipv4_address
    if cfg and cfg.ipv6_address:
        ipam["IPv6Address"] = cfg.ipv6_address
    if ipam:
        out["IPAMConfig"] = ipam
    if cfg and cfg.mac_address:
        out["MacAddress"] = cfg.mac_address
    if cfg and cfg.driver_opts:
        out["DriverOpts"] = dict(cfg.driver_opts)
    return out


def create_body(ctx: Any, name: str, svc: m.Service, number: int, image: str, labels: dict[str, str],
                network_mode_ref: str | None = None) -> dict[str, Any]:
    """The ``POST /containers/create`` body for replica ``number`` of service ``name``."""
    project = ctx.model
    cname = container_name(ctx.name, name, svc, number)
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in svc.ports:
        key = _port_key(port.target, port.protocol)
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": port.host_ip or "", "HostPort": port.published or ""})
    for ex in svc.expose:
        num, _, proto = ex.partition("/")
        exposed.setdefault(_port_key(num, proto or "tcp"), {})

    binds: list[str] = []
    anon: dict[str, dict] = {}
    tmpfs: dict[str, str] = {}
    for vol in svc.volumes:
        if vol.type == "volume" and not vol.source:
            anon[vol.target] = {}
            continue
        if vol.type == "tmpfs":
            opts = []
            if vol.tmpfs and vol.tmpfs.size:
                opts.append(f"size={vol.tmpfs.size}")
            if vol.tmpfs and vol.tmpfs.mode is not None:
                opts.append(f"mode={vol.tmpfs.mode:o}")
            tmpfs[vol.target] = ",".join(opts)
            continue
        src = vol.source or ""
        if vol.type == "volume":
            src = project.volumes[src].name or src
        mode = ["ro" if vol.read_only else "rw"]
        if vol.bind and vol.bind.selinux:
            mode.append(vol.bind.selinux)
        if vol.bind and vol.bind.propagation:
            mode.append(vol.bind.propagation)
        if vol.volume and vol.volume.nocopy:
            mode.append("nocopy")
        binds.append(f"{src}:{vol.target}:{','.join(mode)}")
    for t in svc.tmpfs:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    for _kind, refs, top, base in (("secrets", svc.secrets, project.secrets, "/run/secrets/"),
                                  ("configs", svc.configs, project.configs, "/")):
        for ref in refs:
            obj = top[ref.source]
            target = ref.target or ref.source
            if not target.startswith("/"):
                target = base + target
            if obj.file:
                binds.append(f"{obj.file}:{target}:ro")

    restart = svc.restart
    policy: dict[str, Any] = {"Name": "no"}
    if restart:
        pname, _, count = restart.partition(":")
        policy = {"Name": pname, "MaximumRetryCount": int(count or 0)}
    elif svc.deploy and svc.deploy.restart_policy and svc.deploy.restart_policy.condition:
        cond = svc.deploy.restart_policy.condition
        policy = {"Name": {"none": "no", "any": "always"}.get(cond, cond),
                  "MaximumRetryCount": svc.deploy.restart_policy.max_attempts or 0}

    host: dict[str, Any] = {
        "Binds": binds, "PortBindings": bindings, "RestartPolicy": policy,
        "Privileged": svc.privileged, "ReadonlyRootfs": svc.read_only,
        "LogConfig": {"Type": (svc.logging.driver or "") if svc.logging else "",
                      "Config": {k: v for k, v in (svc.logging.options if svc.logging else {}).items()
                                 if v is not None}},
    }
    limits = svc.deploy.resources.limits if svc.deploy and svc.deploy.resources else None
    reserv = svc.deploy.resources.reservations if svc.deploy and svc.deploy.resources else None
    memory = svc.mem_limit or (limits.memory if limits else None)
    cpus = svc.cpus if svc.cpus is not None else (float(limits.cpus) if limits and limits.cpus else None)
    simple = {
        "CapAdd": svc.cap_add or None, "CapDrop": svc.cap_drop or None, "SecurityOpt": svc.security_opt or None,
        "Dns": svc.dns or None, "DnsSearch": svc.dns_search or None, "DnsOptions": svc.dns_opt or None,
        "ExtraHosts": [f"{h}:{ip}" for h, ip in svc.extra_hosts.items()] or None,
        "Tmpfs": tmpfs or None, "ShmSize": svc.shm_size,
        "Sysctls": {k: v for k, v in svc.sysctls.items() if v is not None} or None,
        "Ulimits": [{"Name": k, "Soft": u.soft, "Hard": u.hard} for k, u in svc.ulimits.items()] or None,
        "Memory": memory, "MemoryReservation": svc.mem_reservation or (reserv.memory if reserv else None),
        "MemorySwap": svc.memswap_limit, "MemorySwappiness": svc.mem_swappiness,
        "NanoCpus": int(math.floor(cpus * 1e9)) if cpus else None,
        "CpuShares": svc.cpu_shares, "CpuQuota": svc.cpu_quota, "CpuPeriod": svc.cpu_period,
        "CpusetCpus": svc.cpuset, "PidsLimit": svc.pids_limit or (limits.pids if limits else None),
        "OomKillDisable": svc.oom_kill_disable, "OomScoreAdj": svc.oom_score_adj,
        "PidMode": svc.pid, "IpcMode": svc.ipc, "UTSMode": svc.uts, "UsernsMode": svc.userns_mode,
        "CgroupnsMode": svc.cgroup, "CgroupParent": svc.cgroup_parent, "GroupAdd": svc.group_add or None,
        "Devices": [_device(d) for d in svc.devices] or None, "Init": svc.init, "Runtime": svc.runtime,
        "StorageOpt": dict(svc.storage_opt) or None,
        "Links": [(f"{ctx.name}-{x.split(':')[0]}-1:{x.split(':')[-1]}") for x in svc.links] or None,
    }
    host.update({k: v for k, v in simple.items() if v is not None})

    nets = sorted_networks(svc)
    endpoints: dict[str, Any] = {}
    if svc.network_mode:
        if svc.network_mode.startswith("service:"):
            host["NetworkMode"] = f"container:{network_mode_ref}"
        else:
            host["NetworkMode"] = svc.network_mode
    elif nets:
        first = project.networks[nets[0]].name
        host["NetworkMode"] = first
        endpoints[first] = endpoint_config(name, svc, nets[0], cname)
    if svc.volumes_from:
        host["VolumesFrom"] = [_volumes_from(ctx, v) for v in svc.volumes_from]

    body: dict[str, Any] = {
        "Image": image, "Labels": {**svc.labels, **labels},
        "Env": [f"{k}={v}" if v is not None else k for k, v in sorted(svc.environment.items())
                if v is not None],
        "Tty": svc.tty, "OpenStdin": svc.stdin_open, "StdinOnce": False,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": exposed, "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }
    if svc.command is not None:
        body["Cmd"] = svc.command
    if svc.entrypoint is not None:
        body["Entrypoint"] = svc.entrypoint
    if anon:
        body["Volumes"] = anon
    for key, value in (("Hostname", svc.hostname), ("Domainname", svc.domainname), ("User", svc.user),
                       ("WorkingDir", svc.working_dir), ("StopSignal", svc.stop_signal),
                       ("MacAddress", svc.mac_address)):
        if value:
            body[key] = value
    if svc.stop_grace_period:
        body["StopTimeout"] = max(0, round(duration_ns(svc.stop_grace_period) / 1e9))
    hc = svc.healthcheck
    if hc is not None:
        if hc.disable or (hc.test and hc.test[0] == "NONE"):
            body["Healthcheck"] = {"Test": ["NONE"]}
        else:
            check: dict[str, Any] = {}
            if hc.test:
                check["Test"] = hc.test
            for key, val in (("Interval", hc.interval), ("Timeout", hc.timeout),
                             ("StartPeriod", hc.start_period), ("StartInterval", hc.start_interval)):
                if val:
                    check[key] = duration_ns(val)
            if hc.retries is not None:
                check["Retries"] = hc.retries
            body["Healthcheck"] = check
    return body


def stop_timeout(svc: m.Service | None, default: int = 10) -> int:
    if svc is not None and svc.stop_grace_period:
        return max(0, round(duration_ns(svc.stop_grace_period) / 1e9))
    return default


def _device(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    host = parts[0]
    cont = parts[1] if len(parts) > 1 else host
    perms = parts[2] if len(parts) > 2 else "rwm"
    return {"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perms}


def _volumes_from(ctx: Any, spec: str) -> str:
    if spec.startswith("container:"):
        return spec.partition(":")[2]
    svc, _, mode = spec.partition(":")
    target = ctx.model.services.get(svc)
    cname = container_name(ctx.name, svc, target, 1) if target else svc
    return f"{cname}:{mode}" if mode else cname
