"""Typed model of the compose specification: dataclasses checked by :mod:`.schema`.

Short syntaxes are normalised to the long ones while validating (``"127.0.0.1:8080:80"`` becomes
a :class:`Port`, ``["A=1"]`` a mapping, ``command: "sh -c x"`` a list), so the rest of the plugin
sees one shape. Unknown keys are rejected except ``x-*`` extensions, at every level.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Annotated, Any, Literal

from dockyard_compose.schema import Before, Bounds, model
from dockyard_compose.schema import kind as _kind

# --- scalar coercions --------------------------------------------------------------------------------


def _scalar_str(v: Any) -> Any:
    """Strings, and numbers/booleans written where compose takes a string (env values, labels)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return v
    raise ValueError(f"expected a string, number or boolean, got {_kind(v)}")


Scalar = Annotated[str, Before(_scalar_str)]

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_NS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3, "ns": 1}


def _duration(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a duration like '10s' or '1m30s', got {_kind(v)}")
    if isinstance(v, (int, float)):
        return f"{v}s"
    if isinstance(v, str) and (_DURATION.match(v) or v == "0"):
        return v
    raise ValueError(f"expected a duration like '10s' or '1m30s', got {_kind(v)}")


Duration = Annotated[str, Before(_duration)]


def duration_ns(text: str | None) -> int:
    if not text or text == "0":
        return 0
    return int(sum(float(n) * _UNIT_NS[u] for n, u in _DUR_PART.findall(text)))


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.I)


def _byte_size(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a byte size like '64m' or a number of bytes, got {_kind(v)}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        m = _SIZE.match(v.strip())
        if m:
            mult = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
            return int(float(m.group(1)) * mult)
    raise ValueError(f"expected a byte size like '64m' or a number of bytes, got {_kind(v)}")


ByteSize = Annotated[int, Before(_byte_size)]


def _mapping(sep: str = "=", allow_null: bool = True):  # type: ignore[no-untyped-def]
    """``["A=1", "B"]`` or ``{A: 1, B: null}`` -> ``{"A": "1", "B": None}``."""

    def conv(v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, list):
            out: dict[str, Any] = {}
            for i, item in enumerate(v):
                if not isinstance(item, str):
                    raise ValueError(f"item [{i}]: expected a 'KEY{sep}VALUE' string, got {_kind(item)}")
                key, has, value = item.partition(sep)
                out[key.strip() if sep == ":" else key] = (value.strip() if sep == ":" else value) if has else None
            return out
        if isinstance(v, dict):
            out = {}
            for key, value in v.items():
                if value is None:
                    out[str(key)] = None
                elif isinstance(value, (dict, list)):
                    raise ValueError(f"key {key!r}: expected a string, number or boolean, got {_kind(value)}")
                else:
                    out[str(key)] = _scalar_str(value)
            return out
        raise ValueError(f"expected a mapping or a list of 'KEY{sep}VALUE' strings, got {_kind(v)}")

    return conv


EnvMap = Annotated[dict[str, str | None], Before(_mapping())]
LabelMap = Annotated[dict[str, str], Before(lambda v: {k: ("" if x is None else x)
                                                                 for k, x in _mapping()(v).items()})]
HostMap = Annotated[dict[str, str | None], Before(_mapping(":"))]


def _command(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return shlex.split(v)
        except ValueError as exc:
            raise ValueError(f"cannot split the command line: {exc}") from None
    if isinstance(v, list):
        return [_scalar_str(x) for x in v]
    raise ValueError(f"expected a string or a list of strings, got {_kind(v)}")


Command = Annotated[list[str] | None, Before(_command)]


def _str_list(v: Any) -> Any:
    if v is None:
        return []
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return [str(v)]
    if isinstance(v, list):
        return [_scalar_str(x) for x in v]
    raise ValueError(f"expected a string or a list of strings, got {_kind(v)}")


StrList = Annotated[list[str], Before(_str_list)]


# --- service pieces -----------------------------------------------------------------------------------

_PORT_RE = re.compile(
    r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]+)?:)??"
    r"(?:(?P<published>\d+(?:-\d+)?)?:)?(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$")


@model
class Port:
    target: Annotated[int, Bounds(ge=1, le=65535)]
    published: str | None = None
    host_ip: str | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"
    name: str | None = None
    app_protocol: str | None = None

    @classmethod
    def _before(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("published"), int) \
                and not isinstance(data.get("published"), bool):
            data = {**data, "published": str(data["published"])}
        return data


def _split_range(text: str) -> list[int]:
    a, _, b = text.partition("-")
    lo, hi = int(a), int(b or a)
    if hi < lo or not (0 < lo <= 65535 and hi <= 65535):
        raise ValueError(f"invalid port range {text!r}")
    return list(range(lo, hi + 1))


def parse_port(v: Any) -> list[dict[str, Any]]:
    """One short-syntax port entry -> one or more long-syntax mappings."""
    if isinstance(v, bool):
        raise ValueError(f"expected a port like '8080:80' or a mapping, got {_kind(v)}")
    if isinstance(v, int):
        return [{"target": v}]
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, str):
        raise ValueError(f"expected a port like '8080:80' or a mapping, got {_kind(v)}")
    m = _PORT_RE.match(v.strip())
    if not m:
        raise ValueError(f"invalid port {v!r}: expected [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL], "
                         "e.g. '127.0.0.1:8080:80/tcp'")
    ip = (m.group("ip") or "").strip("[]") or None
    proto = m.group("proto") or "tcp"
    targets = _split_range(m.group("target"))
    pub = m.group("published")
    if pub is None:
        return [{"target": t, "host_ip": ip, "protocol": proto} for t in targets]
    pubs = _split_range(pub)
    if len(pubs) == len(targets):
        return [{"target": t, "published": str(p), "host_ip": ip, "protocol": proto}
                for t, p in zip(targets, pubs, strict=True)]
    if len(targets) == 1:  # a host range for one container port: the engine picks one
        return [{"target": targets[0], "published": pub, "host_ip": ip, "protocol": proto}]
    raise ValueError(f"invalid port {v!r}: the published and target ranges differ in length")


def _ports(v: Any) -> Any:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"expected a list of ports, got {_kind(v)}")
    out: list[Any] = []
    for item in v:
        out.extend(parse_port(item))
    return out


@model
class ServiceVolumeBind:
    propagation: str | None = None
    create_host_path: bool | None = None
    selinux: Literal["z", "Z"] | None = None


@model
class ServiceVolumeVolume:
    nocopy: bool | None = None
    subpath: str | None = None


@model
class ServiceVolumeTmpfs:
    size: ByteSize | None = None
    mode: int | None = None


@model
class ServiceVolume:
    type: Literal["volume", "bind", "tmpfs", "npipe", "cluster"] = "volume"
    source: str | None = None
    target: str
    read_only: bool = False
    consistency: str | None = None
    bind: ServiceVolumeBind | None = None
    volume: ServiceVolumeVolume | None = None
    tmpfs: ServiceVolumeTmpfs | None = None

    def _after(self) -> None:
        if not self.target.startswith("/"):
            raise ValueError(f"the mount target {self.target!r} must be an absolute path")
        if self.type == "bind" and not self.source:
            raise ValueError("a bind mount needs a source")


def parse_volume(v: Any) -> Any:
    if isinstance(v, dict):
        return v
    if not isinstance(v, str):
        raise ValueError(f"expected 'SOURCE:TARGET[:MODE]' or a mapping, got {_kind(v)}")
    parts = v.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise ValueError(f"invalid volume {v!r}: expected SOURCE:TARGET[:MODE]")
    source, target = parts[0], parts[1]
    mode = parts[2].split(",") if len(parts) == 3 else []
    bad = [m for m in mode if m not in ("ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave",
                                        "rslave", "private", "rprivate", "cached", "delegated", "consistent")]
    if bad:
        raise ValueError(f"invalid volume {v!r}: unknown mode {bad[0]!r} (expected ro, rw, z, Z...)")
    is_path = source.startswith(("/", ".", "~"))
    out: dict[str, Any] = {"type": "bind" if is_path else "volume", "source": source, "target": target,
                           "read_only": "ro" in mode}
    if is_path:
        out["bind"] = {"create_host_path": True}
        sel = [m for m in mode if m in ("z", "Z")]
        if sel:
            out["bind"]["selinux"] = sel[0]
    elif "nocopy" in mode:
        out["volume"] = {"nocopy": True}
    return out


def _volumes(v: Any) -> Any:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"expected a list of volumes, got {_kind(v)}")
    return [parse_volume(x) for x in v]


@model
class Healthcheck:
    test: Command = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: Annotated[int, Bounds(ge=0)] | None = None
    start_period: Duration | None = None
    start_interval: Duration | None = None
    disable: bool = False

    @classmethod
    def _before(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("test"), str):
            data = {**data, "test": ["CMD-SHELL", data["test"]]}
        return data

    def _after(self) -> None:
        if self.test and self.test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError(f"healthcheck test must start with CMD, CMD-SHELL or NONE, got {self.test[0]!r}")


@model
class DependsOn:
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = \
        "service_started"
    required: bool = True
    restart: bool = False


def _depends_on(v: Any) -> Any:
    if v is None:
        return {}
    if isinstance(v, list):
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise ValueError(f"item [{i}]: expected a service name, got {_kind(x)}")
        return {x: {} for x in v}
    if isinstance(v, dict):
        return {k: ({} if x is None else x) for k, x in v.items()}
    raise ValueError(f"expected a list of service names or a mapping, got {_kind(v)}")


@model
class ServiceNetwork:
    aliases: StrList = []
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: StrList = []
    mac_address: str | None = None
    driver_opts: dict[str, Scalar] = {}
    priority: int | None = None
    gw_priority: int | None = None


def _service_networks(v: Any) -> Any:
    if v is None:
        return {}
    if isinstance(v, list):
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise ValueError(f"item [{i}]: expected a network name, got {_kind(x)}")
        return {x: None for x in v}
    if isinstance(v, dict):
        return v
    raise ValueError(f"expected a list of network names or a mapping, got {_kind(v)}")


@model
class Build:
    context: str = "."
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: EnvMap = {}
    target: str | None = None
    labels: LabelMap = {}
    network: str | None = None
    pull: bool | None = None
    no_cache: bool | None = None
    cache_from: StrList = []
    cache_to: StrList = []
    tags: StrList = []
    platforms: StrList = []
    extra_hosts: HostMap = {}
    shm_size: ByteSize | None = None
    ssh: Any = None
    secrets: Any = None
    additional_contexts: Any = None
    isolation: str | None = None
    privileged: bool | None = None

    @classmethod
    def _before(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"context": data}
        return data


@model
class Extends:
    service: str
    file: str | None = None

    @classmethod
    def _before(cls, data: Any) -> Any:
        return {"service": data} if isinstance(data, str) else data


@model
class EnvFile:
    path: str
    required: bool = True
    format: str | None = None


def _env_files(v: Any) -> Any:
    if v is None:
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for i, x in enumerate(items):
        if isinstance(x, str):
            out.append({"path": x})
        elif isinstance(x, dict):
            out.append(x)
        else:
            raise ValueError(f"item [{i}]: expected a path or a mapping, got {_kind(x)}")
    return out


@model
class Logging:
    driver: str | None = None
    options: dict[str, Scalar | None] = {}


@model
class Resources:
    cpus: Scalar | None = None
    memory: ByteSize | None = None
    pids: int | None = None
    devices: Any = None
    generic_resources: Any = None


@model
class ResourcesSpec:
    limits: Resources | None = None
    reservations: Resources | None = None


@model
class RestartPolicy:
    condition: Literal["none", "on-failure", "any"] | None = None
    delay: Duration | None = None
    max_attempts: int | None = None
    window: Duration | None = None


@model
class Deploy:
    mode: Literal["replicated", "global", "replicated-job", "global-job"] | None = None
    replicas: Annotated[int, Bounds(ge=0)] | None = None
    labels: LabelMap = {}
    resources: ResourcesSpec | None = None
    restart_policy: RestartPolicy | None = None
    endpoint_mode: str | None = None
    placement: Any = None
    update_config: Any = None
    rollback_config: Any = None


@model
class ServiceFileRef:
    """A service's ``secrets:``/``configs:`` entry."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None


def _file_refs(v: Any) -> Any:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"expected a list, got {_kind(v)}")
    return [{"source": x} if isinstance(x, str) else x for x in v]


@model
class Ulimit:
    soft: int
    hard: int


def _ulimits(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of limits, got {_kind(v)}")
    return {k: ({"soft": x, "hard": x} if isinstance(x, int) and not isinstance(x, bool) else x)
            for k, x in v.items()}


_RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")


def _restart(v: Any) -> Any:
    if v is None:
        return None
    if v is False:
        return "no"
    if isinstance(v, str) and _RESTART.match(v):
        return v
    raise ValueError(f"expected no, always, unless-stopped or on-failure[:N], got {_kind(v)}")


@model
class Service:
    """One service. Fields the engine cannot express yet are accepted and reported at ``up``."""

    image: str | None = None
    build: Build | None = None
    command: Command = None
    entrypoint: Command = None
    environment: EnvMap = {}
    env_file: Annotated[list[EnvFile], Before(_env_files)] = []
    labels: LabelMap = {}
    annotations: LabelMap = {}
    ports: Annotated[list[Port], Before(_ports)] = []
    expose: StrList = []
    volumes: Annotated[list[ServiceVolume], Before(_volumes)] = []
    volumes_from: StrList = []
    networks: Annotated[dict[str, ServiceNetwork | None], Before(_service_networks)] = {}
    network_mode: str | None = None
    depends_on: Annotated[dict[str, DependsOn], Before(_depends_on)] = {}
    healthcheck: Healthcheck | None = None
    deploy: Deploy | None = None
    scale: Annotated[int, Bounds(ge=0)] | None = None
    profiles: StrList = []
    extends: Extends | None = None
    container_name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    working_dir: str | None = None
    user: str | None = None
    restart: Annotated[str | None, Before(_restart)] = None
    stop_signal: str | None = None
    stop_grace_period: Duration | None = None
    tty: bool = False
    stdin_open: bool = False
    init: bool | None = None
    privileged: bool = False
    read_only: bool = False
    cap_add: StrList = []
    cap_drop: StrList = []
    security_opt: StrList = []
    dns: StrList = []
    dns_search: StrList = []
    dns_opt: StrList = []
    extra_hosts: HostMap = {}
    tmpfs: StrList = []
    shm_size: ByteSize | None = None
    sysctls: EnvMap = {}
    ulimits: Annotated[dict[str, Ulimit], Before(_ulimits)] = {}
    mem_limit: ByteSize | None = None
    mem_reservation: ByteSize | None = None
    memswap_limit: ByteSize | None = None
    mem_swappiness: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset: str | None = None
    pids_limit: int | None = None
    oom_kill_disable: bool | None = None
    oom_score_adj: int | None = None
    pid: str | None = None
    ipc: str | None = None
    uts: str | None = None
    userns_mode: str | None = None
    cgroup: str | None = None
    cgroup_parent: str | None = None
    group_add: StrList = []
    devices: StrList = []
    device_cgroup_rules: StrList = []
    links: StrList = []
    external_links: StrList = []
    logging: Logging | None = None
    pull_policy: Literal["always", "never", "missing", "if_not_present", "build", "daily", "weekly"] | None = None
    platform: str | None = None
    runtime: str | None = None
    mac_address: str | None = None
    secrets: Annotated[list[ServiceFileRef], Before(_file_refs)] = []
    configs: Annotated[list[ServiceFileRef], Before(_file_refs)] = []
    attach: bool = True
    isolation: str | None = None
    storage_opt: dict[str, Scalar] = {}
    blkio_config: Any = None
    cpu_count: int | None = None
    cpu_percent: int | None = None
    cpu_rt_runtime: Any = None
    cpu_rt_period: Any = None
    credential_spec: Any = None
    develop: Any = None
    gpus: Any = None
    post_start: Any = None
    pre_stop: Any = None

    def _after(self) -> None:
        if self.container_name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+",
                                                                self.container_name):
            raise ValueError(f"invalid container_name {self.container_name!r}: "
                             "expected [a-zA-Z0-9][a-zA-Z0-9_.-]+")
        if self.network_mode and self.networks:
            raise ValueError("network_mode and networks cannot be combined")


# --- top-level resources ----------------------------------------------------------------------------


@model
class IpamConfig:
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = {}


@model
class Ipam:
    driver: str | None = None
    config: list[IpamConfig] = []
    options: dict[str, Scalar] = {}


def _external(v: Any) -> Any:
    if isinstance(v, dict):  # legacy {external: {name: x}}
        return True
    return v


def _legacy_external(data: Any) -> Any:
    """``external: {name: x}`` (compose file format 2/3) -> ``external: true, name: x``."""
    if isinstance(data, dict) and isinstance(data.get("external"), dict):
        ext = data["external"]
        extra = set(ext) - {"name"}
        if extra:
            raise ValueError(f"external: unknown key {sorted(extra)[0]!r} (only 'name' is allowed)")
        data = {**data, "name": data.get("name") or ext.get("name")}
    return data


@model
class Network:
    name: str | None = None
    driver: str | None = None
    driver_opts: dict[str, Scalar] = {}
    ipam: Ipam | None = None
    external: Annotated[bool, Before(_external)] = False
    internal: bool = False
    attachable: bool = False
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    labels: LabelMap = {}

    _before = staticmethod(_legacy_external)


@model
class Volume:
    name: str | None = None
    driver: str | None = None
    driver_opts: dict[str, Scalar] = {}
    external: Annotated[bool, Before(_external)] = False
    labels: LabelMap = {}

    _before = staticmethod(_legacy_external)


@model
class FileObject:
    """A top-level ``configs:`` or ``secrets:`` entry."""

    name: str | None = None
    file: str | None = None
    environment: str | None = None
    content: str | None = None
    external: Annotated[bool, Before(_external)] = False
    labels: LabelMap = {}
    driver: str | None = None
    driver_opts: dict[str, Scalar] = {}
    template_driver: str | None = None

    def _after(self) -> None:
        sources = [s for s in ("file", "environment", "content") if getattr(self, s) is not None]
        if not self.external and len(sources) != 1:
            raise ValueError("expected exactly one of file, environment or content (or external: true)")


def _entries(v: Any) -> Any:
    """Top-level sections: ``{name: null}`` means an entry with every default."""
    if v is None:
        return {}
    if isinstance(v, dict):
        return {k: ({} if x is None else x) for k, x in v.items()}
    return v


@model
class Project:
    """The whole (merged) file."""

    name: str | None = None
    version: Scalar | None = None  # obsolete, accepted and ignored (compose warns too)
    services: Annotated[dict[str, Service], Before(_entries)] = {}
    networks: Annotated[dict[str, Network], Before(_entries)] = {}
    volumes: Annotated[dict[str, Volume], Before(_entries)] = {}
    configs: Annotated[dict[str, FileObject], Before(_entries)] = {}
    secrets: Annotated[dict[str, FileObject], Before(_entries)] = {}
    include: Any = None  # resolved by the loader before validation


#: Keys of ``Service`` the container builder applies; the rest are reported as ignored.
SERVICE_KEYS = frozenset(f.name for f in dataclasses.fields(Service))
