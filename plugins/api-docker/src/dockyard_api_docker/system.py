"""System routes: ``/_ping``, ``/version``, ``/info``, ``/events``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from aiohttp import web

from dockyard import __version__
from dockyard.errors import InvalidArgument, ServiceNotInstalled
from dockyard.model import Event
from dockyard.services import DEFAULT_ROLE
from dockyard.specs import NAMESPACES
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of
from dockyard_api_docker.middleware import API_VERSION, MIN_API_VERSION, docker_headers

ATTACK_SURFACE = ("\n            Access to the remote API is equivalent to root access on the host. Refer\n"
                  "            to the 'Docker daemon attack surface' section in the documentation for\n"
                  "            more information: https://docs.docker.com/go/attack-surface/")


def api_warnings(kernel: Any) -> list[str]:
    """dockerd's ``docker info`` warnings for a TCP API without TLS or without client
    verification (dockyardd also logs them at start; off loopback plain TCP refuses to start
    unless ``--tls=false`` is explicit)."""
    from dockyard.tlsconfig import ServerTLS

    tls = ServerTLS.from_config(kernel.config)
    out = []
    for host in kernel.config.get("hosts") or []:
        proto, _, addr = str(host).partition("://")
        if proto != "tcp":
            continue
        if not tls.enabled:
            out.append(f"WARNING: API is accessible on http://{addr} without encryption.{ATTACK_SURFACE}")
        elif not tls.verify:
            out.append(f"WARNING: API is accessible on https://{addr} without TLS client verification."
                       f"{ATTACK_SURFACE}")
    return out


async def ping(request: web.Request) -> web.Response:
    resp = web.Response(text="OK" if request.method != "HEAD" else None,
                        content_type="text/plain", charset="utf-8")
    resp.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    resp.headers["Pragma"] = "no-cache"
    resp.headers["Builder-Version"] = "1"
    resp.headers["Swarm"] = "inactive"
    # the docker CLI shows experimental commands (checkpoint) only to a daemon saying this
    resp.headers["Docker-Experimental"] = "true" if kernel_of(request).config.get("experimental") else "false"
    return resp


def _arch_go(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


async def version(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    f = kernel.facts()
    server_version = __version__
    if kernel.role != DEFAULT_ROLE:
        # a daemon in another role (a swarm manager) reports its services' version (swarm/VERSION)
        try:
            server_version = (await kernel.system.info()).server_version or __version__
        except ServiceNotInstalled:
            pass
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Arch": f["arch"],
               "Os": f["os"], "KernelVersion": f["kernel"],
               "Experimental": "true" if kernel.config.get("experimental") else "false",
               "GitCommit": "", "GoVersion": "", "BuildTime": ""}
    components: list[dict[str, Any]] = [{"Name": "Engine", "Version": server_version, "Details": details}]
    for rec in kernel.registry.records:
        if rec.status == "loaded" and rec.kind == "arch":
            components.append({"Name": f"dockyard-arch-{rec.name}", "Version": rec.version,
                               "Details": {"Distribution": rec.distribution}})
    return json_response({
        "Platform": {"Name": "Dockyard Engine"},
        "Components": components,
        "Version": server_version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "", "Os": f["os"], "Arch": f["arch"],
        "KernelVersion": f["kernel"], "BuildTime": "", "Experimental": bool(kernel.config.get("experimental")),
    })


def _os_release() -> str:
    try:
        for line in open("/etc/os-release", encoding="utf-8"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def plugin_records(kernel: Any) -> list[dict[str, str]]:
    return [{"Name": r.name, "Kind": r.kind, "Area": r.area, "Distribution": r.distribution,
             "Version": r.version, "Status": r.status, "Error": r.error}
            for r in kernel.registry.records]


async def info(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    f = kernel.facts()
    engine = await kernel.system.info()
    warnings = [str(p) for p in kernel.registry.problems] + engine.warnings
    warnings += [f"plugin {fl.plugin} failed on {fl.event}: {fl.error}" for fl in kernel.events.failures[-10:]]
    warnings += api_warnings(kernel)
    # dockerd omits an empty SystemStatus; a cluster manager's system service fills it
    system_status = {"SystemStatus": [list(p) for p in engine.system_status]} if engine.system_status else {}
    return json_response({
        "ID": kernel.daemon_id,
        "Containers": engine.containers,
        "ContainersRunning": engine.containers_running,
        "ContainersPaused": engine.containers_paused,
        "ContainersStopped": engine.containers_stopped,
        "Images": engine.images,
        "Driver": engine.storage_driver,
        "DriverStatus": [list(p) for p in engine.driver_status],
        **system_status,
        "Plugins": {
            "Volume": engine.volume_drivers,
            "Network": engine.network_drivers,
            # dockerd lists its configured --authorization-plugin names (dockyard-docker-plugins)
            "Authorization": list(kernel.config.get("authorization-plugins") or []) or None,
            "Log": [],
        },
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "Debug": bool(kernel.config.get("debug")),
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": f["cgroup_version"],
        "NEventsListener": len(kernel.events.subscribers),
        "KernelVersion": f["kernel"],
        "OperatingSystem": engine.operating_system or _os_release(),
        "OSVersion": "",
        "OSType": engine.os_type or f["os"],  # the runtime driver's native platform
        "Architecture": os.uname().machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           # the registry-mirrors setting (validated at load), shown as dockerd: "URL/"
                           "Mirrors": [str(m).rstrip("/") + "/" for m in kernel.config.get("registry-mirrors") or []]},
        "NCPU": engine.ncpu or os.cpu_count() or 1,
        "MemTotal": engine.mem_total or _mem_total(),
        "DockerRootDir": str(kernel.config.data_root),
        "Name": f["hostname"],
        "Labels": list(kernel.config.get("labels") or []),
        "ExperimentalBuild": bool(kernel.config.get("experimental")),
        "ServerVersion": engine.server_version or __version__,
        "Runtimes": engine.runtimes,
        "DefaultRuntime": engine.default_runtime or kernel.config.get("default-runtime"),
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": bool(kernel.config.get("live-restore")),
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": engine.security_options,
        "Warnings": warnings or None,
        # dockyard extension: every installed plugin and driver, with load errors.
        "DockyardPlugins": plugin_records(kernel),
        "DockyardCheckpoint": engine.checkpoint,  # CRIU checkpoint/restore: for which runtimes, or why not
        # the platforms containers can have here, native first (a swarm node's description)
        "DockyardPlatforms": [{"Platform": p, "Emulated": emulated} for p, emulated in engine.platforms],
        "DockyardAreas": {area: sorted({r.name for r in kernel.registry.records
                                        if r.area == area and r.status in ("available", "loaded")})
                          for area in sorted({a for a, *_ in NAMESPACES.values()})},
    })


# ----------------------------------------------------------------------------- events
EVENT_FILTERS = {"container", "image", "label", "type", "event", "network", "volume", "daemon",
                 "plugin", "scope", "node", "host"}


def parse_timestamp(raw: str | None, name: str) -> int | None:
    """Docker's ``since``/``until``: unix seconds, optionally ``.nanoseconds``."""
    if raw is None or raw == "":
        return None
    secs, _, frac = raw.partition(".")
    try:
        ns = int(secs) * 1_000_000_000
        if frac:
            ns += int(frac.ljust(9, "0")[:9])
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for {name!r}: {raw!r} is not a unix timestamp") from exc
    return ns


def _actor_matches(wanted: list[str], ev: Event) -> bool:
    name = ev.attributes.get("name", "")
    return any(w in (ev.actor_id, name) or (len(w) >= 12 and ev.actor_id.startswith(w)) for w in wanted)


def event_matches(ev: Event, flt: Filters) -> bool:
    """dockerd's event filter semantics: keys AND-ed, values OR-ed, labels all required."""
    if not (flt.match_any("type", ev.type) and flt.match_any("scope", ev.scope)
            and flt.match_any("event", ev.action, ev.action.split(":", 1)[0])
            and flt.match_labels(ev.attributes)):
        return False
    for key in ("container", "network", "volume", "daemon", "plugin", "node", "host"):
        if key in flt and not (ev.type == key and _actor_matches(flt.get(key), ev)):
            # node=: also an event relayed from that engine (a manager's merged stream)
            if not (key == "node" and ev.node and {ev.node.get("Name"), ev.node.get("Id")} & set(flt.get(key))):
                return False
    if "image" in flt:
        wanted = flt.get("image")
        by_image = ev.type == "image" and _actor_matches(wanted, ev)
        by_container = ev.type == "container" and ev.attributes.get("image", "") in wanted
        if not (by_image or by_container):
            return False
    return True


def event_json(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ev.type in ("container", "image"):
        out["status"] = ev.action
        out["id"] = ev.actor_id
        if ev.type == "container" and "image" in ev.attributes:
            out["from"] = ev.attributes["image"]
    out.update({"Type": ev.type, "Action": ev.action,
                "Actor": {"ID": ev.actor_id, "Attributes": dict(ev.attributes)},
                "scope": ev.scope, "time": ev.time_nano // 1_000_000_000, "timeNano": ev.time_nano})
    if ev.node:  # relayed from another engine (a manager's merged stream)
        out["node"] = dict(ev.node)
    return out


async def events(request: web.Request) -> web.StreamResponse:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), EVENT_FILTERS)
    since = parse_timestamp(request.query.get("since"), "since")
    until = parse_timestamp(request.query.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise InvalidArgument("`since` time is after `until` time")
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    docker_headers(resp)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    # Subscribe before replaying history, so nothing emitted in between is lost.
    live = kernel.events.subscribe()
    last = 0

    async def send(ev: Event) -> None:
        await resp.write((json.dumps(event_json(ev), separators=(",", ":")) + "\n").encode())

    try:
        if since is not None:
            for ev in kernel.events.past(since, until):
                if event_matches(ev, flt):
                    await send(ev)
                last = max(last, ev.time_nano)
        now = time.time_ns()
        if until is not None and until <= now:
            return resp
        timeout = None if until is None else (until - now) / 1e9
        async with asyncio.timeout(timeout):
            async for ev in live:
                if ev.time_nano <= last:
                    continue
                if until is not None and ev.time_nano > until:
                    break
                if event_matches(ev, flt):
                    await send(ev)
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        await live.aclose()
    return resp


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/_ping", ping, name="ping"),
        ApiRoute("HEAD", "/_ping", ping),
        ApiRoute("GET", "/version", version, name="version"),
        ApiRoute("GET", "/info", info, name="info"),
        ApiRoute("GET", "/events", events, name="events"),
    ]

