"""OCI runtime spec (``config.json``) generation from a :class:`RuntimeCreateRequest`.

A pure function of the request and :class:`SpecOptions` (facts about the host that the driver
measures once): no subprocess, no cgroup access. It only reads the rootfs's /etc/passwd and
/etc/group to resolve the user, and stats the device nodes it passes (``--device``, the host's
/dev for ``--privileged``). Docker's defaults are reproduced where Docker has them
(capabilities, masked and read-only paths, mounts, devices, seccomp shape).
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.model import Container, HostConfig, Image, Mount
from dockyard.specs.arch import ExecRequest, RuntimeCreateRequest
from dockyard_arch_linux import seccomp
from dockyard_arch_linux.users import ExecUser, resolve_user

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_DESTINATION = "/dev/init"

#: Docker's default capability set (moby ``oci/caps/defaults.go``).
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

#: Every capability by number (index = capability number), up to CAP_CHECKPOINT_RESTORE (40).
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

#: Docker's masked paths (a /dev/null or empty read-only tmpfs over them).
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
#: Docker's read-only paths. runc keeps /proc's nosuid, nodev and noexec on them; crun 1.8
#: remounts them with ``ro`` alone, so for crun ``/proc/{bus,fs,irq,sys}`` are bind mounts
#: instead (:func:`proc_readonly_mounts`; runc refuses mounts inside /proc).
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)
PROC_READONLY_DIRS: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys")
#: /dev entries a privileged container does not get from the host (moby's ``HostDevices``)
HOST_DEVICE_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console"})

#: Device cgroup rules Docker allows by default after denying everything.
DEFAULT_DEVICE_RULES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)

RLIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}
#: Docker (through containerd) gives containers this open-files limit; clamped to the host's.
DEFAULT_NOFILE = 1048576


@dataclass(frozen=True)
class SpecOptions:
    """Host facts and driver settings that shape the spec (measured by the driver)."""

    owner: str = "dytest0"
    machine: str = "x86_64"
    cap_last_cap: int = 40
    host_nofile_hard: int = DEFAULT_NOFILE  # the daemon's own hard RLIMIT_NOFILE
    swap_supported: bool = True  # v1: memory.memsw.* present; v2: memory.swap.max present
    cgroup_v2: bool = False
    init_path: str = ""  # host path of catatonit/tini for --init; "" = not available
    #: capabilities the daemon itself holds (its bounding set); privileged containers and
    #: ``--cap-add ALL`` get these, since a runtime cannot grant more. Empty = no such limit.
    host_capabilities: frozenset[str] = frozenset()
    #: False when the runtime cannot enforce device rules here (crun on cgroup v2 needs to raise
    #: RLIMIT_MEMLOCK for its eBPF device filter, which fails without CAP_SYS_RESOURCE). The spec
    #: then carries no device rules and, to compensate, drops CAP_MKNOD unless it was added.
    device_cgroup: bool = True
    cgroup_parent: str = ""  # "" = /dockyard-<owner>-<id> at the root of each hierarchy
    #: True when the runtime's ``readonlyPaths`` drops nosuid/nodev/noexec (crun 1.8): the
    #: /proc trees are then read-only bind mounts with those flags (:func:`proc_readonly_mounts`)
    proc_readonly_binds: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecurityOptions:
    no_new_privileges: bool = False
    seccomp: str = "default"  # default | unconfined | a JSON profile
    ignored: tuple[str, ...] = ()
    unmask_system_paths: bool = False  # systempaths=unconfined: no masked or read-only /proc paths


def cgroups_path(owner: str, container_id: str, parent: str = "") -> str:
    """The cgroupfs path of a container: recognisable by its owner token."""
    leaf = f"dockyard-{owner}-{container_id}"
    return posixpath.join("/", parent.strip("/"), leaf) if parent else "/" + leaf


def parse_security_opt(opts: list[str]) -> SecurityOptions:
    """Docker's ``--security-opt`` values: ``no-new-privileges[:true|false]``,
    ``seccomp=unconfined|<json>``, ``apparmor=...`` and ``label=...`` (accepted, not enforced:
    the host has no LSM policy for them)."""
    nnp, profile, ignored, unmask = False, "default", [], False
    for opt in opts:
        if opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
            nnp = True
            continue
        if opt in ("no-new-privileges=false", "no-new-privileges:false"):
            nnp = False
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
        if key == "seccomp":
            if value == "unconfined":
                profile = "unconfined"
            elif value.lstrip().startswith("{"):
                try:
                    json.loads(value)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid seccomp profile: {exc}") from exc
                profile = value
            else:
                raise InvalidArgument("seccomp=<file> must be sent as the profile's JSON text")
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidArgument(f"invalid --security-opt: {opt!r}: systempaths takes only 'unconfined'")
            unmask = True
        elif key in ("apparmor", "label"):  # as dockerd on a host without AppArmor or SELinux
            ignored.append(opt)
        else:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
    return SecurityOptions(no_new_privileges=nnp, seccomp=profile, ignored=tuple(ignored),
                           unmask_system_paths=unmask)


def normalize_capability(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return upper


def supported_capabilities(cap_last_cap: int = 40, held: frozenset[str] = frozenset()) -> list[str]:
    """Capabilities the kernel knows, limited to ``held`` (the daemon's bounding set) if given."""
    return [c for c in ALL_CAPABILITIES[: cap_last_cap + 1] if not held or c in held]


def capabilities(host: HostConfig, cap_last_cap: int = 40, held: frozenset[str] = frozenset()) -> list[str]:
    """The effective capability list, following Docker's ``TweakCapabilities``. ``ALL`` and
    ``--privileged`` mean every capability the kernel knows and the daemon holds."""
    supported = supported_capabilities(cap_last_cap, held)
    if host.privileged:
        return supported
    adds = [normalize_capability(c) for c in host.cap_add]
    drops = [normalize_capability(c) for c in host.cap_drop]
    if "ALL" in adds:
        caps = [c for c in supported if c not in drops]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
        caps += [c for c in adds if c not in caps]
    return caps


def merge_env(image_env: list[str], container_env: list[str]) -> list[str]:
    """Image env, then the container's entries replacing same-named ones (order kept)."""
    order: list[str] = []
    values: dict[str, str] = {}
    for entry in [*image_env, *container_env]:
        key = entry.split("=", 1)[0]
        if key not in values:
            order.append(key)
        values[key] = entry
    return [values[k] for k in order]


def process_args(container: Container, image: Image) -> list[str]:
    cfg = container.config
    entrypoint = cfg.entrypoint or image.config.entrypoint
    cmd = cfg.cmd or ([] if cfg.entrypoint else image.config.cmd)
    args = [*entrypoint, *cmd]
    if not args:
        raise InvalidArgument("no command specified")
    return args


def _mount(destination: str, type_: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": options}


def proc_readonly_mounts() -> list[dict[str, Any]]:
    """``/proc/{bus,fs,irq,sys}`` bound read-only over the container's /proc with nosuid,
    nodev and noexec (dockerd's flags). The source is the runtime's own /proc: these trees
    answer by the reading process's namespaces (``/proc/sys/net`` is the container's network
    namespace, ``kernel.hostname`` its UTS namespace), not by the proc instance."""
    return [_mount(d, "bind", d, ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"])
            for d in PROC_READONLY_DIRS]


def shm_mount(host: HostConfig) -> list[dict[str, Any]]:
    """/dev/shm by IPC mode: a private tmpfs, the host's (``host``), none (``none``). A
    shareable container's and its joiners' come as a bind in the request's mounts (the engine
    keeps that tmpfs on the host), which replaces this one."""
    mode = host.ipc_mode
    if mode == "none":
        return []
    if mode == "host":
        return [_mount("/dev/shm", "bind", "/dev/shm", ["rbind", "nosuid", "noexec", "nodev", "rprivate"])]
    shm = host.shm_size or DEFAULT_SHM_SIZE
    return [_mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"])]


def default_mounts(host: HostConfig, host_network: bool) -> list[dict[str, Any]]:
    mounts = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        *shm_mount(host),
    ]
    ro = [] if host.privileged else ["ro"]
    if host_network:
        # sysfs of the host's network namespace cannot be mounted anew: bind the host's.
        mounts.append(_mount("/sys", "bind", "/sys", ["rbind", "nosuid", "noexec", "nodev", *ro]))
    else:
        mounts.append(_mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", *ro]))
    mounts.append(_mount("/sys/fs/cgroup", "cgroup", "cgroup",
                         ["nosuid", "noexec", "nodev", "relatime", *(ro or ["rw"])]))
    return mounts


def user_mounts(request: RuntimeCreateRequest) -> list[dict[str, Any]]:
    """The request's bind/volume/tmpfs mounts plus HostConfig.tmpfs, parents first."""
    host = request.container.host_config
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    entries: list[Mount] = list(request.mounts)
    planned = {posixpath.normpath(m.destination) for m in entries}
    for dest, opts in host.tmpfs.items():  # the engine plans them into request.mounts already
        if posixpath.normpath(dest) not in planned:
            entries.append(Mount(type="tmpfs", destination=dest,
                                 options=[o for o in opts.split(",") if o]))
    for m in entries:
        dest = posixpath.normpath(m.destination)
        if not dest.startswith("/"):
            raise InvalidArgument(f"mount destination {m.destination!r} is not absolute")
        if dest in seen:
            raise InvalidArgument(f"duplicate mount point: {dest}")
        seen.add(dest)
        if m.type in ("bind", "volume"):
            if not m.source:
                raise InvalidArgument(f"mount {dest} has no source")
            opts = ["rbind", m.propagation or "rprivate"]
            opts += [o for o in m.options if o not in opts and o not in ("ro", "rw")]
            opts.append("ro" if m.read_only or "ro" in m.options else "rw")
            out.append(_mount(dest, "bind", m.source, opts))
        elif m.type == "tmpfs":
            opts = ["nosuid", "nodev", "noexec"]
            for o in m.options:
                if o in ("exec", "suid", "dev"):
                    opts = [x for x in opts if x != "no" + o]
                elif o not in opts and o not in ("ro", "rw"):
                    opts.append(o)
            opts.append("ro" if m.read_only or "ro" in m.options else "rw")
            out.append(_mount(dest, "tmpfs", "tmpfs", opts))
        else:
            raise InvalidArgument(f"unsupported mount type {m.type!r} for {dest}")
    out.sort(key=lambda mm: mm["destination"].count("/") if mm["destination"] != "/" else 0)
    return out


def etc_mounts(request: RuntimeCreateRequest, taken: set[str]) -> list[dict[str, Any]]:
    out = []
    for dest, path in (("/etc/hosts", request.hosts_path), ("/etc/resolv.conf", request.resolv_conf_path),
                       ("/etc/hostname", request.hostname_path)):
        if path and dest not in taken:
            out.append(_mount(dest, "bind", path, ["rbind", "rprivate"]))
    return out


def namespaces(netns_path: str | None, host: HostConfig | None = None,
               join: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The namespaces of the container: new ones, except the host's for ``--pid/--uts/--ipc
    host`` (none listed) and another container's for ``container:<id>`` (``join``'s paths)."""
    join = join or {}
    shared_with_host = set()
    if host is not None:
        shared_with_host = {kind for kind, mode in (("pid", host.pid_mode), ("uts", host.uts_mode),
                                                    ("ipc", host.ipc_mode)) if mode == "host"}
    ns: list[dict[str, str]] = []
    for kind in ("pid", "ipc", "uts", "mount", "cgroup"):
        if kind in shared_with_host:
            continue
        ns.append({"type": kind, "path": join[kind]} if join.get(kind) else {"type": kind})
    if netns_path is None:
        ns.append({"type": "network"})
    elif netns_path != "host":
        ns.append({"type": "network", "path": netns_path})
    return ns


def rlimits(host: HostConfig, host_nofile_hard: int) -> list[dict[str, Any]]:
    nofile = min(DEFAULT_NOFILE, host_nofile_hard)
    limits: dict[str, dict[str, Any]] = {
        "RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile},
    }
    for u in host.ulimits:
        name = RLIMITS.get(u.name.lower())
        if name is None:
            raise InvalidArgument(f"invalid ulimit type: {u.name}")
        if u.soft > u.hard and u.hard >= 0:
            raise InvalidArgument(f"ulimit {u.name}: soft limit {u.soft} exceeds hard limit {u.hard}")
        limits[name] = {"type": name, "hard": u.hard, "soft": u.soft}
    return list(limits.values())


def resources(host: HostConfig, swap_supported: bool = True) -> dict[str, Any]:
    """``linux.resources`` from the HostConfig resource fields (Docker's conversions)."""
    res: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if host.cpu_realtime_period or host.cpu_realtime_runtime:
        rt = {"realtimePeriod": host.cpu_realtime_period, "realtimeRuntime": host.cpu_realtime_runtime}
        res["cpu"] = {k: v for k, v in rt.items() if v}
    if host.memory:
        if host.memory < 6 * 1024 * 1024:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        memory["limit"] = host.memory
        if swap_supported:
            if host.memory_swap == -1:
                memory["swap"] = -1
            elif host.memory_swap:
                if host.memory_swap < host.memory:
                    raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit")
                memory["swap"] = host.memory_swap
            else:
                memory["swap"] = 2 * host.memory
    elif host.memory_swap and host.memory_swap != -1:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
    if host.memory_reservation:
        memory["reservation"] = host.memory_reservation
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = dict(res.pop("cpu", {}))
    if host.nano_cpus and (host.cpu_quota or host.cpu_period):
        raise InvalidArgument("NanoCPUs and CPUPeriod/CPUQuota cannot both be set")
    if host.cpu_shares:
        cpu["shares"] = host.cpu_shares
    if host.nano_cpus:
        cpu["period"] = 100000
        cpu["quota"] = host.nano_cpus * 100000 // 1_000_000_000
    if host.cpu_period:
        cpu["period"] = host.cpu_period
    if host.cpu_quota:
        cpu["quota"] = host.cpu_quota
    if host.cpuset_cpus:
        cpu["cpus"] = host.cpuset_cpus
    if host.cpuset_mems:
        cpu["mems"] = host.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    if host.pids_limit:
        res["pids"] = {"limit": host.pids_limit if host.pids_limit > 0 else -1}
    if host.blkio_weight:
        if not 10 <= host.blkio_weight <= 1000:
            raise InvalidArgument("blkio weight must be between 10 and 1000")
        res["blockIO"] = {"weight": host.blkio_weight}
    return res


def _rule(type_: str, major: int | None, minor: int | None, access: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": type_, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


def device_rules(privileged: bool, devices: list[dict[str, Any]] | None = None,
                 extra: list[str] | None = None) -> list[dict[str, Any]]:
    """The device cgroup: Docker's defaults, each ``--device``'s and ``--device-cgroup-rule``
    (``c 1:3 rwm``, ``a *:* m``)."""
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for type_, major, minor, access in DEFAULT_DEVICE_RULES:
        rules.append(_rule(type_, major, minor, access))
    for dev in devices or []:
        rules.append(_rule(dev["type"], dev["major"], dev["minor"], dev.get("access", "rwm")))
    for text in extra or []:
        parts = text.split()
        if len(parts) != 3 or ":" not in parts[1]:
            raise InvalidArgument(f"invalid device cgroup rule format: '{text}'")
        major, _, minor = parts[1].partition(":")
        rules.append(_rule(parts[0], None if major == "*" else int(major), None if minor == "*" else int(minor),
                           parts[2]))
    return rules


def _device(host_path: str, container_path: str, access: str = "rwm") -> dict[str, Any] | None:
    try:
        st = os.stat(host_path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        type_ = "c"
    elif stat.S_ISBLK(st.st_mode):
        type_ = "b"
    else:
        return None
    return {"path": container_path, "type": type_, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "access": access}


def user_devices(host: HostConfig) -> list[dict[str, Any]]:
    """``--device HOST[:CONTAINER[:PERMS]]``: a node, or every node under a directory."""
    out = []
    for d in host.devices:
        if os.path.isdir(d.path_on_host):
            for dirpath, _dirs, files in os.walk(d.path_on_host):
                for f in sorted(files):
                    src = os.path.join(dirpath, f)
                    dst = posixpath.join(d.path_in_container, os.path.relpath(src, d.path_on_host))
                    dev = _device(src, dst, d.cgroup_permissions)
                    if dev is not None:
                        out.append(dev)
            continue
        dev = _device(d.path_on_host, d.path_in_container or d.path_on_host, d.cgroup_permissions)
        if dev is None:
            raise InvalidArgument(f"error gathering device information while adding custom device "
                                  f"\"{d.path_on_host}\": not a device node")
        out.append(dev)
    return out


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every device node of the host's /dev, for ``--privileged`` (moby ``HostDevices``)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in HOST_DEVICE_SKIP]
        for f in sorted(files):
            if f in HOST_DEVICE_SKIP:
                continue
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                continue
            dev = _device(path, path)
            if dev is not None:
                out.append(dev)
    return out


def exec_user(user: str, rootfs: str) -> ExecUser:
    return resolve_user(user, rootfs)


def _process_user(u: ExecUser) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": u.uid, "gid": u.gid}
    if u.additional_gids:
        out["additionalGids"] = list(u.additional_gids)
    return out


def _with_defaults(env: list[str], home: str, hostname: str, tty: bool) -> list[str]:
    keys = {e.split("=", 1)[0] for e in env}
    extra = []
    if "PATH" not in keys:
        extra.append(f"PATH={DEFAULT_PATH}")
    if hostname and "HOSTNAME" not in keys:
        extra.append(f"HOSTNAME={hostname}")
    if tty and "TERM" not in keys:
        extra.append("TERM=xterm")
    if "HOME" not in keys:
        extra.append(f"HOME={home}")
    return [*extra, *env]


def build_spec(request: RuntimeCreateRequest, options: SpecOptions) -> dict[str, Any]:
    """The OCI runtime spec for ``request``. Raises InvalidArgument for a bad request."""
    container, image = request.container, request.image
    cfg, host = container.config, container.host_config
    if not request.rootfs:
        raise InvalidArgument("the request has no rootfs")
    security = parse_security_opt(host.security_opt)
    caps = capabilities(host, options.cap_last_cap, options.host_capabilities)
    if not options.device_cgroup and not host.privileged:
        if "CAP_MKNOD" not in {normalize_capability(c) for c in host.cap_add}:
            caps = [c for c in caps if c != "CAP_MKNOD"]
    user = resolve_user(cfg.user or image.config.user, request.rootfs, list(host.group_add))
    hostname = cfg.hostname or container.id[:12]
    cwd = cfg.working_dir or image.config.working_dir or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory {cwd!r} is invalid: it needs to be absolute")
    args = process_args(container, image)
    host_network = request.netns_path == "host"

    mounts = default_mounts(host, host_network)
    taken_mounts = user_mounts(request)
    taken = {m["destination"] for m in taken_mounts}
    mounts = [m for m in mounts if m["destination"] not in taken]
    mounts += etc_mounts(request, taken)
    mounts += taken_mounts
    if host.init:
        if not options.init_path:
            raise InvalidArgument("--init needs catatonit or tini on the host; none was found")
        mounts.append(_mount(INIT_DESTINATION, "bind", options.init_path, ["rbind", "ro", "rprivate"]))
        args = [INIT_DESTINATION, "--", *args]

    process: dict[str, Any] = {
        "terminal": bool(cfg.tty),
        "user": _process_user(user),
        "args": args,
        "env": _with_defaults(merge_env(image.config.env, [*request.extra_env, *cfg.env]), user.home,
                              hostname, cfg.tty),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits(host, options.host_nofile_hard),
        "noNewPrivileges": security.no_new_privileges,
    }
    if host.oom_score_adj:
        process["oomScoreAdj"] = host.oom_score_adj
    if cfg.tty and len(host.console_size) == 2 and all(host.console_size):
        process["consoleSize"] = {"height": host.console_size[0], "width": host.console_size[1]}

    linux: dict[str, Any] = {
        "namespaces": namespaces(request.netns_path, host, request.namespaces),
        "resources": resources(host, options.swap_supported),
        "cgroupsPath": cgroups_path(options.owner, container.id, options.cgroup_parent),
    }
    devices = host_devices() if host.privileged else user_devices(host)
    if devices:
        linux["devices"] = [{k: v for k, v in d.items() if k != "access"} for d in devices]
    if options.device_cgroup:
        linux["resources"]["devices"] = device_rules(host.privileged, devices, list(host.device_cgroup_rules))
    if host.sysctls:
        linux["sysctl"] = dict(host.sysctls)
    if not host.privileged and not security.unmask_system_paths:
        linux["maskedPaths"] = list(MASKED_PATHS)
        if options.proc_readonly_binds:
            linux["readonlyPaths"] = [p for p in READONLY_PATHS if p not in PROC_READONLY_DIRS]
            mounts[1:1] = [m for m in proc_readonly_mounts() if m["destination"] not in taken]
        else:
            linux["readonlyPaths"] = list(READONLY_PATHS)
    if not host.privileged:
        if security.seccomp == "default":
            linux["seccomp"] = seccomp.default_profile(caps, options.machine)
        elif security.seccomp != "unconfined":
            linux["seccomp"] = json.loads(security.seccomp)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": request.rootfs, "readonly": bool(host.read_only_rootfs)},
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            "io.dockyard.owner": options.owner,
            "io.dockyard.container.id": container.id,
            "io.dockyard.container.name": container.name,
            **options.annotations,
        },
    }
    if host.uts_mode != "host":  # the host's UTS namespace keeps the host's names
        spec["hostname"] = hostname
        if cfg.domainname:
            spec["domainname"] = cfg.domainname
    if cfg.stop_signal:
        spec["annotations"]["org.opencontainers.image.stopSignal"] = cfg.stop_signal
    return spec


def exec_process(base: dict[str, Any], request: ExecRequest, rootfs: str,
                 cap_last_cap: int = 40, held: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``process`` object for ``runtime exec --process``, derived from the container's."""
    if not request.cmd:
        raise InvalidArgument("no exec command specified")
    proc = json.loads(json.dumps(base))
    proc["args"] = list(request.cmd)
    proc["terminal"] = bool(request.tty)
    proc.pop("consoleSize", None)
    if request.user:
        u = resolve_user(request.user, rootfs)
        proc["user"] = _process_user(u)
        proc["env"] = [e for e in proc.get("env", []) if not e.startswith("HOME=")] + [f"HOME={u.home}"]
    proc["env"] = merge_env(proc.get("env", []), request.env)
    if request.tty and not any(e.startswith("TERM=") for e in proc["env"]):
        proc["env"].append("TERM=xterm")
    if request.working_dir:
        if not request.working_dir.startswith("/"):
            raise InvalidArgument("the exec working directory must be absolute")
        proc["cwd"] = request.working_dir
    if request.privileged:
        caps = supported_capabilities(cap_last_cap, held)
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    return proc
