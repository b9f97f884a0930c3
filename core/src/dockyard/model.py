"""The object model: plain dataclasses, persisted by the state store as JSON.

Field names are Pythonic; the Docker API front translates them to the API's PascalCase
shapes. Durations are nanoseconds (as in the Docker API), times are UTC datetimes stored
as RFC 3339 strings, sizes are bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import secrets
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_iso() -> str:
    """The current UTC time as RFC 3339 with nanosecond-style precision."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """A 64-hex-digit random ID, as Docker uses for containers, networks and execs."""
    return secrets.token_hex(32)


class ContainerStatus(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


@dataclass
class HealthLogEntry:
    start: str
    end: str
    exit_code: int
    output: str


@dataclass
class Health:
    status: str = "starting"  # starting | healthy | unhealthy
    failing_streak: int = 0
    log: list[HealthLogEntry] = field(default_factory=list)


@dataclass
class ContainerState:
    status: ContainerStatus = ContainerStatus.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    health: Health | None = None
    # The engine's bookkeeping, kept across daemon restarts (not in Docker's ``State``):
    #: starts so far; each start is one run, and an exit is recorded only for the run its
    #: monitor watched (a late monitor of an earlier run changes nothing)
    start_count: int = 0
    #: stopped by a user (``stop``, ``rm -f``): no restart policy applies (dockerd's
    #: ``HasBeenManuallyStopped``); a start clears it
    manually_stopped: bool = False
    #: the network sandbox the runtime driver made for this run (``create_sandbox``'s key: a
    #: network namespace path on Linux), Docker's ``NetworkSettings.SandboxKey``; "" when the
    #: container has none of its own (not running, ``host`` or ``container:<id>`` mode)
    sandbox_key: str = ""
    #: the checkpoint that ends this run (versionadded 0.3): set before a checkpoint that
    #: stops the container dumps it, so the exit it causes is no crash: no ``die``, no restart
    #: policy, no auto-remove, and the network sandbox and endpoints stay for the restore
    #: (``sandbox_key`` stays set while the container is exited); the next start clears it
    checkpoint: str = ""

    @property
    def running(self) -> bool:
        return self.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)


@dataclass
class Healthcheck:
    test: list[str] = field(default_factory=list)  # ["CMD", ...] | ["CMD-SHELL", "..."] | ["NONE"]
    interval: int = 0  # ns; 0 = default (30s)
    timeout: int = 0
    start_period: int = 0
    retries: int = 0


@dataclass
class RestartPolicy:
    name: str = "no"  # no | on-failure | always | unless-stopped
    maximum_retry_count: int = 0


@dataclass
class PortBinding:
    host_ip: str = ""
    host_port: str = ""


@dataclass
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass
class LogConfig:
    type: str = "json-file"
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class Mount:
    """A mount as the runtime sees it: resolved volume or bind, or tmpfs."""

    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""
    name: str = ""  # volume name
    driver: str = ""
    read_only: bool = False
    options: list[str] = field(default_factory=list)
    propagation: str = ""


@dataclass
class ContainerConfig:
    """What the user asked for: image config merged with the request at create time."""

    image: str = ""  # as typed by the user
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp"
    volumes: list[str] = field(default_factory=list)  # anonymous volume destinations
    healthcheck: Healthcheck | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None  # seconds
    platform: str = ""  # os/arch[/variant]; empty = host platform
    mac_address: str = ""  # the legacy Config.MacAddress (API < 1.44): the first endpoint's


@dataclass
class DeviceMapping:
    """A host device made available in a container (``--device``)."""

    path_on_host: str
    path_in_container: str = ""
    cgroup_permissions: str = "rwm"


@dataclass
class HostConfig:
    binds: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    port_bindings: dict[str, list[PortBinding]] = field(default_factory=dict)
    publish_all_ports: bool = False
    network_mode: str = "default"
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False
    runtime: str = ""
    privileged: bool = False
    read_only_rootfs: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    init: bool = False
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int = 0
    blkio_weight: int = 0
    ulimits: list[Ulimit] = field(default_factory=list)
    log_config: LogConfig = field(default_factory=LogConfig)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    shm_size: int = 0
    volumes_from: list[str] = field(default_factory=list)
    console_size: list[int] = field(default_factory=lambda: [0, 0])
    #: namespaces: "" (private), "host", "container:<id>" (pid, ipc), "shareable"/"none" (ipc)
    pid_mode: str = ""
    uts_mode: str = ""
    ipc_mode: str = ""
    group_add: list[str] = field(default_factory=list)
    devices: list[DeviceMapping] = field(default_factory=list)
    device_cgroup_rules: list[str] = field(default_factory=list)  # "c 1:3 rwm"
    sysctls: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int = 0
    #: legacy links, Docker's HostConfig.Links form: "/<target name>:/<this name>/<alias>"
    links: list[str] = field(default_factory=list)
    isolation: str = ""  # "" or "default" on Linux
    volume_driver: str = ""  # the driver of -v volumes that name none
    cpu_realtime_period: int = 0
    cpu_realtime_runtime: int = 0


@dataclass
class EndpointSettings:
    network_id: str = ""
    endpoint_id: str = ""
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""  # requested (IPAMConfig) or assigned
    ip_prefix_len: int = 0
    gateway: str = ""
    ipv6_address: str = ""
    mac_address: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    #: what was asked for (Docker's endpoint ``IPAMConfig``); kept across runs
    ipam_ipv4: str = ""
    ipam_ipv6: str = ""
    link_local_ips: list[str] = field(default_factory=list)
    ipv6_gateway: str = ""
    ipv6_prefix_len: int = 0


@dataclass
class Container:
    """A container: what was asked for (``config``, ``host_config``), what it was given
    (``networks``, ``mounts``, ``log_path``) and its state machine (``state``), all typed.

    Drivers keep their own records of a container (the runtime driver its bundle and monitor,
    the storage driver its layer) under their own directories, keyed by ``id``; nothing of
    theirs is stored here. Documents written before 0.2 kept part of the state machine in an
    ``extra`` dict; :func:`from_dict` moves it into ``state`` (see :func:`_container_before_0_2`).
    """

    KIND: ClassVar[str] = "container"
    id: str
    name: str  # without the leading "/"
    image_id: str  # "sha256:..."
    config: ContainerConfig
    host_config: HostConfig
    created: str = field(default_factory=now_iso)
    state: ContainerState = field(default_factory=ContainerState)
    driver: str = ""  # storage driver that holds the rootfs
    runtime: str = ""  # runtime driver name
    platform: str = "linux"
    #: the image's ``os/arch[/variant]`` the runtime runs (``linux/arm64``); "" before 0.3
    image_platform: str = ""
    #: run under emulation (a binfmt_misc handler), not natively
    emulated: bool = False
    networks: dict[str, EndpointSettings] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    log_path: str = ""
    exec_ids: list[str] = field(default_factory=list)
    host: str = ""  # node name when placed by a cluster manager; "" = this host
    #: Swarm classic's inspect ``Node`` (``ID``, ``IP``, ``Addr``, ``Name``) when a manager placed it
    node: dict[str, str] = field(default_factory=dict)


@dataclass
class ImageConfig:
    """The runnable part of an OCI/Docker image config."""

    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    on_build: list[str] = field(default_factory=list)
    shell: list[str] = field(default_factory=list)


@dataclass
class HistoryEntry:
    created: str = ""
    created_by: str = ""
    comment: str = ""
    author: str = ""
    empty_layer: bool = False


@dataclass
class Image:
    KIND: ClassVar[str] = "image"
    id: str  # "sha256:<config digest>"
    repo_tags: list[str] = field(default_factory=list)  # normalized: docker.io/library/busybox:latest
    repo_digests: list[str] = field(default_factory=list)
    parent: str = ""
    created: str = field(default_factory=now_iso)
    author: str = ""
    comment: str = ""
    architecture: str = "amd64"
    os: str = "linux"
    variant: str = ""
    #: the image config's ``os.version`` (Windows images: ``10.0.20348.2527``); "" when none
    os_version: str = ""
    config: ImageConfig = field(default_factory=ImageConfig)
    layers: list[str] = field(default_factory=list)  # diff IDs ("sha256:..."), bottom first
    size: int = 0
    history: list[HistoryEntry] = field(default_factory=list)
    manifest_digest: str = ""
    last_tag_time: str = ""
    build_record: dict[str, Any] | None = None  # structured build inputs (for provenance)


@dataclass
class IpamPool:
    subnet: str
    gateway: str = ""
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass
class Network:
    KIND: ClassVar[str] = "network"
    id: str
    name: str
    driver: str = "bridge"
    scope: str = "local"
    created: str = field(default_factory=now_iso)
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    ipam_pools: list[IpamPool] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    builtin: bool = False  # bridge/host/none created by the daemon
    extra: dict[str, Any] = field(default_factory=dict)  # driver-private state


@dataclass
class Volume:
    KIND: ClassVar[str] = "volume"
    name: str
    driver: str = "local"
    mountpoint: str = ""
    created: str = field(default_factory=now_iso)
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    scope: str = "local"
    anonymous: bool = False

    @property
    def id(self) -> str:
        return self.name


@dataclass
class HostTLS:
    """Client TLS material to reach a host's engine (PEM text): the CA the engine's server
    certificate is checked against, and the client certificate and key the engine accepts.

    The caller that provisions a host keeps it (the machine store, ``docker-machine env``'s
    ``DOCKER_CERT_PATH``); a provision driver never sees it. What the engine itself serves with
    is :class:`dockyard.specs.provision.EngineTLS`.
    """

    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""


@dataclass
class Host:
    """A machine that runs (or will run) a dockyard engine: provisioned or joined to a cluster.

    ``addresses`` are the IP addresses (and DNS names) the engine is reached by, known once a
    provision driver has prepared the host; they are the server certificate's subject
    alternative names. ``extra`` is the driver's record of what it made (process ids, link
    names, paths): enough to remove the host even when it is broken or half-created.
    ``state`` is the service's record (``creating`` until the engine first answers,
    ``removing`` while it is taken apart); ``reason`` says why a host is in ``error`` (or
    ``stopped`` without being asked to).
    """

    KIND: ClassVar[str] = "host"
    id: str
    name: str
    driver: str  # provision driver name (netns, ssh, ...)
    state: str = "none"  # none | creating | running | stopped | error | removing
    reason: str = ""
    engine_url: str = ""  # unix:///... or tcp://ip:port
    addresses: list[str] = field(default_factory=list)
    tls: HostTLS | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """One state change. Emitted after the transaction that made it commits."""

    KIND: ClassVar[str] = "event"
    type: str  # container | image | network | volume | daemon | plugin | host | node
    action: str  # create, start, die, destroy, pull, tag, connect, health_status: healthy...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    scope: str = "local"
    time_nano: int = 0
    #: the engine it happened on, when a daemon relays several engines' events (a swarm
    #: manager): Swarm classic's ``node`` (``Name``, ``Id``, ``Addr``, ``Ip``); empty when local
    node: dict[str, str] = field(default_factory=dict)
    #: the host's sequence number (one more per event, kept across restarts when an
    #: ``EventJournal`` persists them); 0 for an event relayed from elsewhere
    seq: int = 0


# ---------------------------------------------------------------------------------------------
# JSON (de)serialisation for the state store: dataclasses <-> plain dicts, driven by type hints.

#: types :func:`to_dict` returns as they are, tested first by exact type: most values of a
#: record are these, and the generic checks below cost ~4× more (60 → 17 µs for a container)
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})


def to_dict(obj: Any) -> Any:
    """A JSON-ready plain structure for a dataclass (recursively)."""
    cls = type(obj)
    if cls in _PLAIN:
        return obj
    if cls is dict:
        return {k: v if type(v) in _PLAIN else to_dict(v) for k, v in obj.items()}
    if cls is list or cls is tuple:
        return [v if type(v) in _PLAIN else to_dict(v) for v in obj]
    names = _field_names(cls) if hasattr(cls, "__dataclass_fields__") else None
    if names is not None:
        out: dict[str, Any] = {}
        for n in names:
            v = getattr(obj, n)
            out[n] = v if type(v) in _PLAIN else to_dict(v)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# The store rebuilds every model it reads, thousands per container start, so the type-hint walk
# is done once per class and field type (memoised below), not once per value.

@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


Converter = Callable[[Any], Any]


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Converter | None], ...]:
    """(field name, converter or None for values kept as they are) of a dataclass."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls))


@functools.cache
def _converter(tp: Any) -> Converter | None:
    """How to rebuild a value of type ``tp`` from JSON; None when it is used as it is."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _converter(args[0]) if len(args) == 1 else None
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        item = _converter(arg)
        return None if item is None else (lambda v: [None if x is None else item(x) for x in v])
    if origin is dict:
        _, varg = typing.get_args(tp) or (Any, Any)
        val = _converter(varg)
        return None if val is None else (lambda v: {k: None if x is None else val(x) for k, x in v.items()})
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return lambda v: from_dict(tp, v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    return None


#: per class, a function turning a document written by an older version into the current shape
#: (run by :func:`from_dict` before it reads the fields; the next write stores the new shape)
_UPGRADES: dict[type, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _container_before_0_2(data: dict[str, Any]) -> dict[str, Any]:
    """dockyard 0.1 kept the engine's state machine in ``Container.extra``: ``run``,
    ``manual_stop`` and ``netns`` become ``state.start_count``, ``state.manually_stopped`` and
    ``state.sandbox_key`` (so live-restore finds containers an older daemon started)."""
    extra = data.get("extra")
    if not isinstance(extra, dict):
        return data
    data = {k: v for k, v in data.items() if k != "extra"}
    state = dict(data.get("state") or {})
    if "run" in extra:
        state.setdefault("start_count", int(extra["run"] or 0))
    if "manual_stop" in extra:
        state.setdefault("manually_stopped", bool(extra["manual_stop"]))
    if "netns" in extra:
        state.setdefault("sandbox_key", str(extra["netns"] or ""))
    data["state"] = state
    return data


_UPGRADES[Container] = _container_before_0_2


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass from :func:`to_dict` output; unknown keys are ignored, and a
    document of an older shape is upgraded first (``_UPGRADES``)."""
    upgrade = _UPGRADES.get(cls)
    if upgrade is not None:
        data = upgrade(data)
    kwargs = {}
    for name, conv in _plan(cls):
        if name in data:
            value = data[name]
            kwargs[name] = value if conv is None or value is None else conv(value)
    return cls(**kwargs)
