"""Container routes of the Docker API front."""

from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerStatus,
    DeviceMapping,
    EndpointSettings,
    Healthcheck,
    HostConfig,
    LogConfig,
    Mount,
    PortBinding,
    RestartPolicy,
    Ulimit,
)
from dockyard.services.containers import ContainerCreate
from dockyard.specs.api import ApiRoute
from dockyard_api_docker import bodies
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of, no_content, qbool, qint, read_json
from dockyard_api_docker.shapes import container_inspect, container_summary
from dockyard_api_docker.streams import frame

LIST_FILTERS = {"id", "name", "label", "status", "ancestor", "exited", "network", "volume",
                "before", "since", "health", "is-task", "publish", "expose"}
STATUSES = {s.value for s in ContainerStatus}


def _matches(c: Container, flt: Filters) -> bool:
    for st in flt.get("status"):
        if st not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={st}'")
    if not flt.match_any("status", c.state.status.value):
        return False
    if "id" in flt and not any(c.id.startswith(w) for w in flt.get("id")):
        return False
    if "name" in flt and not any(w.lstrip("/") in c.name for w in flt.get("name")):
        return False
    if not flt.match_labels(c.config.labels):
        return False
    if "exited" in flt:
        if c.state.status is not ContainerStatus.EXITED or str(c.state.exit_code) not in flt.get("exited"):
            return False
    if "ancestor" in flt and not (c.config.image in flt.get("ancestor") or c.image_id in flt.get("ancestor")
                                  or any(c.image_id.startswith("sha256:" + w) for w in flt.get("ancestor"))):
        return False
    if "network" in flt and not (set(flt.get("network")) & (set(c.networks) | {
            ep.network_id for ep in c.networks.values()})):
        return False
    if "volume" in flt and not any(m.name in flt.get("volume") or m.destination in flt.get("volume")
                                   for m in c.mounts):
        return False
    if "health" in flt:
        health = c.state.health.status if c.state.health else "none"
        if health not in flt.get("health"):
            return False
    return True


def bound_ports(kernel: Any, c: Container) -> list[Any]:
    """The host ports the network drivers actually bound for a running container."""
    if not (c.state.running and kernel.has_service("networks")):
        return []
    try:
        return kernel.networks.ports_of(c.id)
    except DockyardError:
        return []


async def list_containers(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), LIST_FILTERS)
    show_all = qbool(request, "all") or bool(flt.get("status")) or "exited" in flt
    limit = qint(request, "limit", -1) or -1
    if limit > 0:
        show_all = True
    svc = kernel.containers
    containers = sorted(svc.list(), key=lambda c: c.created, reverse=True)
    before = [svc.get(ref).created for ref in flt.get("before")]
    since = [svc.get(ref).created for ref in flt.get("since")]
    out = []
    for c in containers:
        if any(c.created >= b for b in before) or any(c.created <= s_ for s_ in since):
            continue
        if "publish" in flt or "expose" in flt:
            ports = {p.split("/")[0] for p in c.host_config.port_bindings} | {
                b.host_port for v in c.host_config.port_bindings.values() for b in v}
            if "publish" in flt and not any(w.split("/")[0] in ports for w in flt.get("publish")):
                continue
            if "expose" in flt and not any((w if "/" in w else f"{w}/tcp") in c.config.exposed_ports
                                           for w in flt.get("expose")):
                continue
        if not show_all and c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED,
                                                    ContainerStatus.RESTARTING):
            continue
        if not _matches(c, flt):
            continue
        out.append(container_summary(c, c.image_id, bound_ports(kernel, c)))
        if 0 < limit <= len(out):
            break
    return json_response(out)


# ---------------------------------------------------------------------------- create
def _strlist(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _cmdlist(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"invalid number {v!r}") from exc


def healthcheck_from(d: dict[str, Any] | None) -> Healthcheck | None:
    if not d:
        return None
    return Healthcheck(test=_strlist(d.get("Test")), interval=_int(d.get("Interval")),
                       timeout=_int(d.get("Timeout")), start_period=_int(d.get("StartPeriod")),
                       retries=_int(d.get("Retries")))


RESOURCE_KEYS = {"Memory": "memory", "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation",
                 "NanoCpus": "nano_cpus", "NanoCPUs": "nano_cpus", "CpuShares": "cpu_shares",
                 "CpuPeriod": "cpu_period", "CpuQuota": "cpu_quota", "CpusetCpus": "cpuset_cpus",
                 "CpusetMems": "cpuset_mems", "PidsLimit": "pids_limit", "BlkioWeight": "blkio_weight"}


#: HostConfig fields dockyard does not apply: a value other than the zero one (or the CLI's
#: default, second) is refused, never dropped ("accepted means applied", issue 21 item 5)
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "CgroupParent": ("",), "Cgroup": ("",), "UsernsMode": ("",), "CgroupnsMode": ("", "private"),
    "BlkioWeightDevice": ([],), "BlkioDeviceReadBps": ([],), "BlkioDeviceWriteBps": ([],),
    "BlkioDeviceReadIOps": ([],), "BlkioDeviceWriteIOps": ([],), "DeviceRequests": ([],),
    "KernelMemory": (0,), "KernelMemoryTCP": (0,), "MemorySwappiness": (-1,), "OomKillDisable": (False,),
    "StorageOpt": ({},), "CpuCount": (0,), "CpuPercent": (0,), "IOMaximumIOps": (0,),
    "IOMaximumBandwidth": (0,), "MaskedPaths": ([],), "ReadonlyPaths": ([],),
}


def refuse_unsupported(d: dict[str, Any]) -> None:
    for key, zero in UNSUPPORTED.items():
        value = d.get(key)
        if value is not None and value not in zero:
            raise InvalidArgument(f"HostConfig.{key} is not supported by dockyard (got {json.dumps(value)}); "
                                  "leave it unset")


def device_from(d: dict[str, Any]) -> DeviceMapping:
    host = d.get("PathOnHost") or ""
    if not host:
        raise InvalidArgument("invalid device mapping: no PathOnHost")
    return DeviceMapping(path_on_host=host, path_in_container=d.get("PathInContainer") or host,
                         cgroup_permissions=d.get("CgroupPermissions") or "rwm")


def host_config_from(d: dict[str, Any] | None) -> HostConfig:
    d = d or {}
    refuse_unsupported(d)
    hc = HostConfig()
    hc.binds = _strlist(d.get("Binds"))
    for m in d.get("Mounts") or []:
        typ = (m.get("Type") or "volume").lower()
        opts = []
        bind_opts = m.get("BindOptions") or {}
        if bind_opts.get("Propagation"):
            opts.append(bind_opts["Propagation"])
        tmpfs = m.get("TmpfsOptions") or {}
        if tmpfs.get("SizeBytes"):
            opts.append(f"size={tmpfs['SizeBytes']}")
        if tmpfs.get("Mode"):
            opts.append(f"mode={oct(int(tmpfs['Mode']))[2:]}")
        hc.mounts.append(Mount(type=typ, destination=m.get("Target") or m.get("Destination") or "",
                               source=(m.get("Source") or "") if typ == "bind" else "",
                               name=(m.get("Source") or "") if typ == "volume" else "",
                               driver=((m.get("VolumeOptions") or {}).get("DriverConfig") or {}).get("Name") or
                               ("local" if typ == "volume" else ""),
                               read_only=bool(m.get("ReadOnly")), options=opts))
    hc.tmpfs = dict(d.get("Tmpfs") or {})
    for port, bindings in (d.get("PortBindings") or {}).items():
        key = port if "/" in port else f"{port}/tcp"
        hc.port_bindings[key] = [PortBinding(host_ip=b.get("HostIp") or "", host_port=str(b.get("HostPort") or ""))
                                 for b in (bindings or [])]
    hc.publish_all_ports = bool(d.get("PublishAllPorts"))
    hc.network_mode = d.get("NetworkMode") or "default"
    rp = d.get("RestartPolicy") or {}
    hc.restart_policy = RestartPolicy(name=rp.get("Name") or "no", maximum_retry_count=_int(rp.get("MaximumRetryCount")))
    hc.auto_remove = bool(d.get("AutoRemove"))
    hc.runtime = d.get("Runtime") or ""
    hc.privileged = bool(d.get("Privileged"))
    hc.read_only_rootfs = bool(d.get("ReadonlyRootfs"))
    hc.cap_add = _strlist(d.get("CapAdd"))
    hc.cap_drop = _strlist(d.get("CapDrop"))
    hc.security_opt = _strlist(d.get("SecurityOpt"))
    hc.init = bool(d.get("Init"))
    for key, attr in RESOURCE_KEYS.items():
        if key in d and d[key] is not None:
            setattr(hc, attr, d[key] if attr.startswith("cpuset") else _int(d[key]))
    if hc.pids_limit < 0:
        hc.pids_limit = 0
    hc.ulimits = [Ulimit(name=u["Name"], soft=_int(u.get("Soft")), hard=_int(u.get("Hard")))
                  for u in d.get("Ulimits") or []]
    lc = d.get("LogConfig") or {}
    hc.log_config = LogConfig(type=lc.get("Type") or "json-file", config=dict(lc.get("Config") or {}))
    hc.dns = _strlist(d.get("Dns"))
    hc.dns_search = _strlist(d.get("DnsSearch"))
    hc.dns_options = _strlist(d.get("DnsOptions"))
    hc.extra_hosts = _strlist(d.get("ExtraHosts"))
    hc.shm_size = _int(d.get("ShmSize"))
    hc.volumes_from = _strlist(d.get("VolumesFrom"))
    hc.console_size = [_int(x) for x in (d.get("ConsoleSize") or [0, 0])][:2]
    hc.pid_mode = d.get("PidMode") or ""
    hc.uts_mode = d.get("UTSMode") or ""
    hc.ipc_mode = d.get("IpcMode") or ""
    hc.group_add = _strlist(d.get("GroupAdd"))
    hc.devices = [device_from(x or {}) for x in d.get("Devices") or []]
    hc.device_cgroup_rules = _strlist(d.get("DeviceCgroupRules"))
    hc.sysctls = dict(d.get("Sysctls") or {})
    hc.oom_score_adj = _int(d.get("OomScoreAdj"))
    hc.links = _strlist(d.get("Links"))
    hc.isolation = d.get("Isolation") or ""
    hc.volume_driver = d.get("VolumeDriver") or ""
    hc.cpu_realtime_period = _int(d.get("CpuRealtimePeriod"))
    hc.cpu_realtime_runtime = _int(d.get("CpuRealtimeRuntime"))
    return hc


def endpoint_settings_from(ep: dict[str, Any]) -> EndpointSettings:
    """An ``EndpointSettings`` body (create's ``EndpointsConfig`` values, connect's
    ``EndpointConfig``): what was asked for, kept as Docker's endpoint ``IPAMConfig``."""
    ipam = ep.get("IPAMConfig") or {}
    v4, v6 = ipam.get("IPv4Address") or "", ipam.get("IPv6Address") or ""
    return EndpointSettings(aliases=_strlist(ep.get("Aliases")), ipv4_address=v4, ipv6_address=v6,
                            ipam_ipv4=v4, ipam_ipv6=v6, link_local_ips=_strlist(ipam.get("LinkLocalIPs")),
                            mac_address=ep.get("MacAddress") or "", driver_opts=dict(ep.get("DriverOpts") or {}))


def create_request_from(body: dict[str, Any], name: str) -> ContainerCreate:
    cfg = ContainerConfig(
        image=body.get("Image") or "", env=_strlist(body.get("Env")), working_dir=body.get("WorkingDir") or "",
        user=body.get("User") or "", labels={k: str(v) for k, v in (body.get("Labels") or {}).items()},
        hostname=body.get("Hostname") or "", domainname=body.get("Domainname") or "", tty=bool(body.get("Tty")),
        open_stdin=bool(body.get("OpenStdin")), stdin_once=bool(body.get("StdinOnce")),
        attach_stdin=bool(body.get("AttachStdin")), attach_stdout=bool(body.get("AttachStdout")),
        attach_stderr=bool(body.get("AttachStderr")),
        exposed_ports=sorted(p if "/" in p else f"{p}/tcp" for p in (body.get("ExposedPorts") or {})),
        volumes=sorted(body.get("Volumes") or {}), healthcheck=healthcheck_from(body.get("Healthcheck")),
        stop_signal=body.get("StopSignal") or "",
        stop_timeout=body.get("StopTimeout") if body.get("StopTimeout") is not None else None,
        mac_address=body.get("MacAddress") or "")
    hc = host_config_from(body.get("HostConfig"))
    if body.get("NetworkDisabled"):
        hc.network_mode = "none"
    networks: dict[str, EndpointSettings] = {}
    for net, ep in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).items():
        networks[net] = endpoint_settings_from(ep or {})
        # the CLI sends --link on a user-defined network as the endpoint's Links
        hc.links += [link for link in _strlist((ep or {}).get("Links")) if link not in hc.links]
    return ContainerCreate(config=cfg, host_config=hc, name=name, entrypoint=_cmdlist(body.get("Entrypoint")),
                           cmd=_cmdlist(body.get("Cmd")), networks=networks)


def _svc(request: web.Request) -> Any:
    return kernel_of(request).containers


async def create_container(request: web.Request) -> web.Response:
    body = await read_json(request, schema=bodies.CONTAINER_CREATE, struct="ContainerConfigWrapper")
    req = create_request_from(body, request.query.get("name", ""))
    req.body = body  # what the client sent: a swarm manager forwards it to the node it places on
    if request.query.get("platform"):  # API 1.41: docker create/run --platform
        from dockyard.platforms import parse

        req.platform = str(parse(request.query["platform"]).normalized())
    c = await _svc(request).create(req)
    return json_response({"Id": c.id, "Warnings": []}, status=201)


async def inspect_container(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    c = _svc(request).get(request.match_info["id"])
    data = container_inspect(c, bound_ports(kernel, c))
    if qbool(request, "size"):
        data["SizeRw"], data["SizeRootFs"] = 0, 0
    return json_response(data)


async def start_container(request: web.Request) -> web.Response:
    if request.query.get("checkpoint"):  # docker start --checkpoint NAME (experimental)
        from dockyard_api_docker.checkpoints import start_from_checkpoint

        await start_from_checkpoint(request, request.match_info["id"], request.query["checkpoint"])
        return no_content()
    await _svc(request).start_container(request.match_info["id"])
    return no_content()


async def stop_container(request: web.Request) -> web.Response:
    await _svc(request).stop_container(request.match_info["id"], qint(request, "t"), request.query.get("signal"))
    return no_content()


async def restart_container(request: web.Request) -> web.Response:
    await _svc(request).restart(request.match_info["id"], qint(request, "t"))
    return no_content()


async def kill_container(request: web.Request) -> web.Response:
    await _svc(request).kill(request.match_info["id"], request.query.get("signal"))
    return no_content()


async def pause_container(request: web.Request) -> web.Response:
    await _svc(request).pause(request.match_info["id"])
    return no_content()


async def unpause_container(request: web.Request) -> web.Response:
    await _svc(request).unpause(request.match_info["id"])
    return no_content()


async def remove_container(request: web.Request) -> web.Response:
    if qbool(request, "link"):  # docker rm --link /parent/alias
        await _svc(request).remove_link(request.match_info["id"])
        return no_content()
    await _svc(request).remove(request.match_info["id"], force=qbool(request, "force"), volumes=qbool(request, "v"))
    return no_content()


async def remove_link(request: web.Request) -> web.Response:
    if not qbool(request, "link"):
        raise NotFound("page not found")
    await _svc(request).remove_link(f"/{request.match_info['parent']}/{request.match_info['alias']}")
    return no_content()


async def rename_container(request: web.Request) -> web.Response:
    await _svc(request).rename(request.match_info["id"], request.query.get("name", ""))
    return no_content()


async def update_container(request: web.Request) -> web.Response:
    body = await read_json(request, schema=bodies.CONTAINER_UPDATE, struct="UpdateConfig")
    resources = {attr: (body[k] if attr.startswith("cpuset") else _int(body[k]))
                 for k, attr in RESOURCE_KEYS.items() if k in body and body[k] not in (None, "")}
    resources = {k: v for k, v in resources.items() if v or k in ("memory", "memory_swap")}
    resources = {k: v for k, v in resources.items() if v != 0}
    rp = body.get("RestartPolicy")
    pol = None
    if rp and rp.get("Name"):
        pol = RestartPolicy(name=rp["Name"], maximum_retry_count=_int(rp.get("MaximumRetryCount")))
    warnings = await _svc(request).update(request.match_info["id"], resources, pol)
    return json_response({"Warnings": warnings})


async def wait_container(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    condition = request.query.get("condition", "") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    waiter = asyncio.ensure_future(svc.wait(c.id, condition))
    try:
        # a client that hangs up (``docker run -d`` does, once started) cancels the wait
        while not waiter.done():
            await asyncio.wait([waiter], timeout=1.0)
            if request.transport is None or request.transport.is_closing():
                waiter.cancel()
                return resp
        code = waiter.result()
        body = {"Error": None, "StatusCode": code}
    except DockyardError as exc:
        body = {"Error": {"Message": str(exc)}, "StatusCode": -1}
    finally:
        if not waiter.done():
            waiter.cancel()
    try:
        await resp.write((json.dumps(body) + "\n").encode())
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client hung up (detached run): a cancellation, not an error
    return resp


async def top_container(request: web.Request) -> web.Response:
    return json_response(await _svc(request).top(request.match_info["id"], request.query.get("ps_args", "")))


async def stats_container(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if not stream:
        if one_shot:
            return json_response(await svc.stats(c.id))
        samples = [d async for d in svc.stats_stream(c.id, stream=False)]
        return json_response(samples[-1])
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    await resp.prepare(request)
    try:
        async for data in svc.stats_stream(c.id, stream=True):
            await resp.write((json.dumps(data) + "\n").encode())
            if not svc.get(c.id).state.running:
                break
    except (ConnectionResetError, ConnectionError, NotFound):
        return resp
    await resp.write_eof()
    return resp


def _since(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise InvalidArgument(f"invalid time {value!r}") from exc


async def logs_container(request: web.Request) -> web.StreamResponse:
    from dockyard.services.containers import LogOptions

    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    svc.check_logs_readable(c)
    stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("You must choose at least one stream")
    tail_raw = request.query.get("tail", "all")
    tail = None if tail_raw in ("", "all") else _int(tail_raw)
    opts = LogOptions(stdout=stdout, stderr=stderr, follow=qbool(request, "follow"), tail=tail,
                      since=_since(request.query.get("since")), until=_since(request.query.get("until")),
                      timestamps=qbool(request, "timestamps"))
    # the log is opened before the headers go: docker-py's run(remove=True) removes the
    # container as soon as it has them, and reads the stream only then
    records = await svc.open_logs(c.id, opts)
    resp = web.StreamResponse(status=200)
    resp.enable_chunked_encoding()
    tty = c.config.tty
    try:
        await resp.prepare(request)
        async for name, data in records:
            await resp.write(data if tty else frame(name, data))
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        await records.aclose()
    return resp


async def resize_container(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    if h <= 0 or w <= 0:
        raise InvalidArgument("invalid resize: height and width must be positive")
    await _svc(request).resize(request.match_info["id"], h, w)
    return web.Response(status=200)


async def prune_containers(request: web.Request) -> web.Response:
    flt = Filters.parse(request.query.get("filters"), {"until", "label"})
    until = None
    if flt.get("until"):
        from dockyard.times import parse_until

        until = parse_until(flt.get("until")[0])
    removed, reclaimed = await _svc(request).prune(until, flt.get("label"))
    return json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": reclaimed})


def routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/containers/json", list_containers, name="containers-list"),
            ApiRoute("POST", "/containers/create", create_container, name="containers-create"),
            ApiRoute("POST", "/containers/prune", prune_containers, name="containers-prune"),
            ApiRoute("GET", "/containers/{id}/json", inspect_container, name="containers-inspect"),
            ApiRoute("POST", "/containers/{id}/start", start_container, name="containers-start"),
            ApiRoute("POST", "/containers/{id}/stop", stop_container, name="containers-stop"),
            ApiRoute("POST", "/containers/{id}/restart", restart_container, name="containers-restart"),
            ApiRoute("POST", "/containers/{id}/kill", kill_container, name="containers-kill"),
            ApiRoute("POST", "/containers/{id}/pause", pause_container, name="containers-pause"),
            ApiRoute("POST", "/containers/{id}/unpause", unpause_container, name="containers-unpause"),
            ApiRoute("DELETE", "/containers/{id}", remove_container, name="containers-remove"),
            # a link's name is /<parent>/<alias>: ``docker rm --link`` sends it as the path
            ApiRoute("DELETE", "/containers/{parent}/{alias}", remove_link, name="containers-remove-link"),
            ApiRoute("POST", "/containers/{id}/rename", rename_container, name="containers-rename"),
            ApiRoute("POST", "/containers/{id}/update", update_container, name="containers-update"),
            ApiRoute("POST", "/containers/{id}/wait", wait_container, name="containers-wait"),
            ApiRoute("GET", "/containers/{id}/top", top_container, name="containers-top"),
            ApiRoute("GET", "/containers/{id}/stats", stats_container, name="containers-stats"),
            ApiRoute("GET", "/containers/{id}/logs", logs_container, name="containers-logs"),
            ApiRoute("POST", "/containers/{id}/resize", resize_container, name="containers-resize")]

