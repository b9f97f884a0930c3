"""Create-time checks: what dockerd refuses before it makes anything, with its messages.

dockerd verifies a container's settings before it creates it (``verifyContainerSettings``,
``verifyPlatformContainerResources``): a request it cannot honour is a 400 and nothing is
left behind. :func:`check_create` does the same for every setting the engine applies; settings
no part of dockyard applies are refused by the API front, never silently dropped.
"""

from __future__ import annotations

import os
import re
import stat

from dockyard.errors import InvalidArgument
from dockyard.model import HostConfig
from dockyard.services.containers import ContainerCreate

MIN_MEMORY = 6 * 1024 * 1024
#: log drivers the engine writes (``local`` is read and written as json-file; ``none`` keeps nothing)
LOG_DRIVERS = {"json-file": {"max-size", "max-file", "compress", "labels", "labels-regex", "env",
                             "env-regex", "tag", "mode", "max-buffer-size"},
               "local": {"max-size", "max-file", "compress", "mode", "max-buffer-size"},
               "none": set()}
#: sysctls with a namespace of their own (moby ``opts.ValidateSysctl``); the rest would change
#: the host's
NAMESPACED_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
IPC_SYSCTL_PREFIXES = ("fs.mqueue.",)
DEVICE_RULE_RE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
IPC_MODES = {"", "private", "shareable", "host", "none"}


def host_cpus() -> int:
    """The CPUs this process may run on (Go's ``runtime.NumCPU``, which dockerd reports)."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def cpu_realtime_supported() -> bool:
    """cgroup v1's ``cpu.rt_runtime_us`` (cgroup v2 has no real-time group scheduling)."""
    return os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us") or os.path.exists(
        "/sys/fs/cgroup/cpu,cpuacct/cpu.rt_runtime_us")


def check_resources(hc: HostConfig) -> None:
    if hc.memory != 0 and hc.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if hc.memory_swap < -1:
        raise InvalidArgument(f"Invalid value: {hc.memory_swap}, valid memory swap values are -1 (unlimited) "
                              "or a size above the memory limit")
    if hc.memory > 0 and hc.memory_swap > 0 and hc.memory_swap < hc.memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if hc.memory == 0 and hc.memory_swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if hc.memory_reservation < 0 or (hc.memory_reservation and hc.memory_reservation < MIN_MEMORY):
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if hc.memory > 0 and hc.memory_reservation > hc.memory:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    n = host_cpus()
    if hc.nano_cpus < 0 or hc.nano_cpus > n * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
    if hc.nano_cpus and (hc.cpu_period or hc.cpu_quota):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if hc.cpu_shares < 0:
        raise InvalidArgument(f"invalid CPU shares {hc.cpu_shares}: must not be negative")
    if hc.cpu_period and not 1000 <= hc.cpu_period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if hc.cpu_quota and 0 < hc.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if hc.blkio_weight and not 10 <= hc.blkio_weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if hc.cpu_realtime_period or hc.cpu_realtime_runtime:
        if not cpu_realtime_supported():
            raise InvalidArgument("Your kernel does not support CPU real-time scheduler")
        if hc.cpu_realtime_period and hc.cpu_realtime_runtime > hc.cpu_realtime_period:
            raise InvalidArgument("cpu-rt-runtime cannot be higher than cpu-rt-period")
    if not -1000 <= hc.oom_score_adj <= 1000:
        raise InvalidArgument(f"Invalid value {hc.oom_score_adj}, range for oom score adj is [-1000, 1000]")


def check_namespaces(hc: HostConfig, hostname: str) -> None:
    if hc.pid_mode not in ("", "host") and not hc.pid_mode.startswith("container:"):
        raise InvalidArgument(f"invalid PID mode: {hc.pid_mode}")
    if hc.uts_mode not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {hc.uts_mode}")
    if hc.uts_mode == "host" and hostname:
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    if hc.ipc_mode not in IPC_MODES and not hc.ipc_mode.startswith("container:"):
        raise InvalidArgument(f"invalid IPC mode: {hc.ipc_mode}")
    if hc.isolation not in ("", "default"):
        raise InvalidArgument(f"invalid isolation '{hc.isolation}' on linux")


def check_sysctls(hc: HostConfig) -> None:
    for key in hc.sysctls:
        if key.startswith("net."):
            if hc.network_mode == "host":
                raise InvalidArgument(f"sysctl '{key}' is not allowed in host network namespace")
            if hc.network_mode.startswith("container:"):
                raise InvalidArgument(f"sysctl '{key}' is not allowed in a network namespace shared "
                                      "with another container")
        elif key in NAMESPACED_SYSCTLS or key.startswith(IPC_SYSCTL_PREFIXES):
            if hc.ipc_mode == "host" or hc.ipc_mode.startswith("container:"):
                raise InvalidArgument(f"sysctl '{key}' is not allowed while the IPC namespace is shared")
        else:
            raise InvalidArgument(f"sysctl '{key}' is not whitelisted")


def check_devices(hc: HostConfig) -> None:
    for dev in hc.devices:
        try:
            st = os.stat(dev.path_on_host)
        except OSError as exc:
            raise InvalidArgument(f"error gathering device information while adding custom device "
                                  f"\"{dev.path_on_host}\": {exc.strerror.lower()}") from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise InvalidArgument(f"error gathering device information while adding custom device "
                                  f"\"{dev.path_on_host}\": not a device node")
        if dev.path_in_container and not dev.path_in_container.startswith("/"):
            raise InvalidArgument(f"{dev.path_in_container} is not an absolute path")
        if not dev.cgroup_permissions or set(dev.cgroup_permissions) - set("rwm"):
            raise InvalidArgument(f"invalid device mode: {dev.cgroup_permissions}")
    for rule in hc.device_cgroup_rules:
        if not DEVICE_RULE_RE.match(rule):
            raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")


def check_log_config(hc: HostConfig) -> None:
    kind = hc.log_config.type or "json-file"
    if kind not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{kind}' is registered")
    for key in hc.log_config.config:
        if key not in LOG_DRIVERS[kind]:
            raise InvalidArgument(f"unknown log opt '{key}' for {kind} log driver")


def check_strings(req: ContainerCreate) -> None:
    """A NUL byte cannot reach a process's environment or arguments (execve stops at it): the
    runtime would cut the string short, so it is refused."""
    for entry in req.config.env:
        if "\x00" in entry:
            raise InvalidArgument(f"invalid environment variable {entry.split(chr(0))[0]!r}...: "
                                  "it contains a NUL byte")
        if entry.startswith("="):
            raise InvalidArgument(f"invalid environment variable: {entry}")
    for arg in [*(req.cmd or []), *(req.entrypoint or [])]:
        if "\x00" in arg:
            raise InvalidArgument("invalid command argument: it contains a NUL byte")


def check_mounts(hc: HostConfig) -> None:
    """``--mount type=bind`` needs its source (``-v`` makes a missing one, as dockerd)."""
    for m in hc.mounts:
        if m.type not in ("bind", "volume", "tmpfs"):
            raise InvalidArgument(f"invalid mount config: mount type unknown: {m.type!r}")
        if not m.destination:
            raise InvalidArgument("invalid mount config: Target must not be empty")
        if m.type == "bind":
            if not m.source:
                raise InvalidArgument("invalid mount config for type \"bind\": field Source must not be empty")
            if not os.path.isabs(m.source):
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: "
                                      f"'{m.source}' mount path must be absolute")
            if not os.path.exists(m.source):
                raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not "
                                      f"exist: {m.source}")


def check_create(req: ContainerCreate) -> None:
    """Everything dockerd refuses at create (400), before anything is made."""
    hc = req.host_config
    check_resources(hc)
    check_namespaces(hc, req.config.hostname)
    check_sysctls(hc)
    check_devices(hc)
    check_log_config(hc)
    check_strings(req)
    check_mounts(hc)
