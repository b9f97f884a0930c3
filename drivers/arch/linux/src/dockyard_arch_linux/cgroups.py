"""cgroup v1 / v2 detection, a container's cgroup directories, and reading them.

* **v2** (unified): ``/sys/fs/cgroup`` is a cgroup2 mount; one directory per container.
* **v1** (legacy) and **hybrid** (v1 controllers plus a cgroup2 mount at ``unified``, like this
  host): resources live in per-controller directories; hybrid is treated as v1 for resources.

Mount points are taken from ``/proc/self/mountinfo``, so a cgroup2-only mount somewhere else
(a private mount namespace in the tests) works when passed as ``root``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices", "hugetlb",
                  "net_cls", "net_prio", "perf_event", "rdma", "misc")
UNLIMITED_V1 = 0x7FFFFFFFFFFFF000  # what memory.limit_in_bytes reads when unset


@dataclass(frozen=True)
class Layout:
    """Where the hierarchies are mounted. ``version`` is 1 for legacy and hybrid, 2 for unified."""

    version: int
    unified: str = ""  # cgroup2 mount point ("" if none)
    controllers: dict[str, str] = field(default_factory=dict)  # v1 controller -> mount point

    @property
    def hybrid(self) -> bool:
        return self.version == 1 and bool(self.unified)

    @property
    def name(self) -> str:
        return "v2" if self.version == 2 else ("hybrid" if self.hybrid else "v1")


def parse_mountinfo(text: str) -> tuple[str, dict[str, str]]:
    """(cgroup2 mount point, {v1 controller: mount point}) from mountinfo text."""
    unified, controllers = "", {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mountpoint, fstype, superopts = fields[4], rfields[0], rfields[2]
        if fstype == "cgroup2" and not unified:
            unified = mountpoint
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    controllers.setdefault(opt, mountpoint)
    return unified, controllers


def detect(root: str = "/sys/fs/cgroup", mountinfo: str | None = None) -> Layout:
    """The layout of this host (v2 when ``root`` itself is cgroup2)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    unified, controllers = parse_mountinfo(mountinfo)
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return Layout(version=2, unified=root)
    return Layout(version=1, unified=unified, controllers=controllers)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def freeze_v1(directory: str, tries: int = 1000, step: float = 0.0005) -> bool:
    """Freeze a v1 freezer cgroup and wait until it reads FROZEN: True then; False when it never
    does (left as it is: the caller thaws or resumes) or the cgroup is gone.

    A v1 freezer can stay FREEZING while its tasks keep forking, or until they are scheduled
    (on a loaded host, not within microseconds), and only another write of FROZEN moves it on.
    As runc's ``FreezerGroup.Set``: write FROZEN and read back, up to ``tries`` times, and every
    50th try thaw and sleep 10 ms, which lets a forking task finish its fork (runc measured
    that this, not sleeping between tries, is what helps). Unlike runc we also wait ``step``
    between the write and the read, releasing the CPU to the tasks being frozen: without it
    all 1000 tries fit in a few ms and a busy 2-core host failed ``pause`` (CI, 2026-12-07)."""
    state = os.path.join(directory, "freezer.state")
    try:
        if _read(state).strip() == "FROZEN":
            return True
        for i in range(tries):
            if i % 50 == 49:
                _write(state, "THAWED")
                time.sleep(0.01)
            _write(state, "FROZEN")
            time.sleep(step)
            if _read(state).strip() == "FROZEN":
                return True
    except OSError:
        return False
    return False


#: v1 hierarchies tried, in order, for :func:`own_procs_file` (plain resource controllers first)
PRIME_CONTROLLERS = ("pids", "cpu", "cpuacct", "memory", "blkio", "devices", "freezer")


def own_procs_file(layout: Layout, proc_cgroup: str | None = None) -> str:
    """The ``cgroup.procs`` file of the cgroup this process is in, in one v1 hierarchy ("" on
    v2, or when none is mounted). ``proc_cgroup`` is ``/proc/self/cgroup``'s text (tests)."""
    if layout.version != 1:
        return ""
    if proc_cgroup is None:
        try:
            proc_cgroup = _read("/proc/self/cgroup")
        except OSError:
            return ""
    ours: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        for ctrl in ctrls.split(","):
            ours[ctrl] = path
    for ctrl in PRIME_CONTROLLERS:
        mount = layout.controllers.get(ctrl)
        if mount and ctrl in ours:
            return os.path.join(mount + ours[ctrl].rstrip("/"), "cgroup.procs")
    return ""


def prime_attach(procs_file: str) -> float:
    """Write this process's PID to ``procs_file``, the cgroup it is already in (a move that
    changes nothing); returns the seconds it took, -1.0 when the write failed.

    Why: on cgroup v1 every write to a ``cgroup.procs`` file takes the kernel's global
    ``cgroup_threadgroup_rwsem`` for writing, and the first writer after a quiet spell waits
    for an RCU grace period (its ``rcu_sync`` is idle): 7-15 ms on this 2-core host, while the
    next writers within about one more grace period pass at once (0.1 ms). ``crun create``
    writes the new container's PID into each of its cgroups, so that wait used to sit in every
    container start; a write of ours begun when the create begins (in a thread) waits for the
    grace period while the bundle, conmon and the runtime's own start-up run, and the
    runtime's write then finds the lock warm (measured: crun's first write 7-14 ms cold,
    0.1-0.13 ms after a prime). cgroup v2 needs none of this: crun starts the process in its
    cgroup with ``clone3(CLONE_INTO_CGROUP)``, which does not take the lock for writing."""
    started = time.monotonic()
    try:
        fd = os.open(procs_file, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return -1.0
    try:
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        return -1.0
    finally:
        os.close(fd)
    return time.monotonic() - started


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read_int(path: str, default: int = 0) -> int:
    try:
        text = _read(path).strip()
    except OSError:
        return default
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def host_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds, as Docker computes ``system_cpu_usage``."""
    first = _read("/proc/stat").splitlines()[0].split()
    ticks = sum(int(v) for v in first[1:8])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass
class Cgroup:
    """One container's cgroup: a directory per v1 controller, or one v2 directory."""

    layout: Layout
    relpath: str  # e.g. /dockyard-<owner>-<id>

    @classmethod
    def of_pid(cls, pid: int, layout: Layout) -> Cgroup | None:
        """The cgroup of a live process (by its memory/pids controller, or the unified line)."""
        try:
            text = _read(f"/proc/{pid}/cgroup")
        except OSError:
            return None
        rel = ""
        for line in text.splitlines():
            hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
            if layout.version == 2 and hid == "0":
                rel = path
            elif layout.version == 1 and ("memory" in ctrls.split(",") or "pids" in ctrls.split(",")):
                rel = path
                break
        return cls(layout, rel) if rel else None

    # ------------------------------------------------------------------ paths
    def dir(self, controller: str) -> str:
        """The directory holding ``controller``'s files ("" if the controller is not mounted)."""
        if self.layout.version == 2:
            return self.layout.unified + self.relpath
        mount = self.layout.controllers.get(controller)
        return mount + self.relpath if mount else ""

    def dirs(self) -> list[str]:
        """Every directory of this cgroup that exists (all hierarchies, incl. hybrid's unified)."""
        if self.layout.version == 2:
            candidates = [self.layout.unified + self.relpath]
        else:
            candidates = sorted({m + self.relpath for m in self.layout.controllers.values()})
            if self.layout.unified:
                candidates.append(self.layout.unified + self.relpath)
        return [d for d in candidates if os.path.isdir(d)]

    def exists(self) -> bool:
        return bool(self.dirs())

    def remove(self) -> list[str]:
        """rmdir every directory left (children first); returns those that could not go."""
        left = []
        for d in self.dirs():
            for sub, _dirs, _files in sorted(os.walk(d, topdown=False), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(sub)
                except OSError:
                    left.append(sub)
        return left

    # ------------------------------------------------------------------ reading
    def procs(self) -> list[int]:
        d = self.dir("pids") or self.dir("memory") if self.layout.version == 1 else self.dir("")
        if not d:
            return []
        try:
            return sorted({int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()})
        except OSError:
            return []

    def memory_limit(self) -> int:
        """The memory limit in bytes, -1 when unlimited."""
        if self.layout.version == 2:
            return _read_int(os.path.join(self.dir("memory"), "memory.max"), -1)
        value = _read_int(os.path.join(self.dir("memory"), "memory.limit_in_bytes"), -1)
        return -1 if value >= UNLIMITED_V1 else value

    def frozen(self) -> bool:
        if self.layout.version == 2:
            return _read_int(os.path.join(self.dir(""), "cgroup.freeze")) == 1
        try:
            return _read(os.path.join(self.dir("freezer"), "freezer.state")).strip() == "FROZEN"
        except OSError:
            return False

    def settle_freeze(self, tries: int = 1000) -> bool:
        """After a freeze was asked for: True once the v1 freezer reads FROZEN (v2: at once).

        crun 1.8 writes FROZEN once and returns; a v1 freezer can stay FREEZING when a task forks
        meanwhile (a shell looping over ``sleep``), and only another write moves it on, while
        crun's ``state`` says paused only when it reads FROZEN (seen as ``resume`` refused with
        "running, not paused" under load). So we freeze again until it reads FROZEN, as runc
        does (:func:`freeze_v1`). False when it never settles or the cgroup is gone."""
        if self.layout.version == 2:
            return True
        return freeze_v1(self.dir("freezer"), tries)

    def stats(self) -> dict[str, Any]:
        """cpu_stats, memory_stats, pids_stats and blkio_stats in the Docker stats shape."""
        return self._stats_v2() if self.layout.version == 2 else self._stats_v1()

    def _stats_v1(self) -> dict[str, Any]:
        acct = self.dir("cpuacct")
        percpu = []
        try:
            percpu = [int(x) for x in _read(os.path.join(acct, "cpuacct.usage_percpu")).split()]
        except (OSError, ValueError):
            pass
        ticks = _read_kv(os.path.join(acct, "cpuacct.stat"))
        hz = os.sysconf("SC_CLK_TCK")
        throttle = _read_kv(os.path.join(self.dir("cpu"), "cpu.stat"))
        mem = self.dir("memory")
        mstat = _read_kv(os.path.join(mem, "memory.stat"))
        limit = self.memory_limit()
        blk = self.dir("blkio")
        return {
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": _read_int(os.path.join(acct, "cpuacct.usage")),
                    "percpu_usage": percpu,
                    "usage_in_kernelmode": ticks.get("system", 0) * 1_000_000_000 // hz,
                    "usage_in_usermode": ticks.get("user", 0) * 1_000_000_000 // hz,
                },
                "system_cpu_usage": system_cpu_usage(),
                "online_cpus": os.cpu_count() or 1,
                "throttling_data": {
                    "periods": throttle.get("nr_periods", 0),
                    "throttled_periods": throttle.get("nr_throttled", 0),
                    "throttled_time": throttle.get("throttled_time", 0),
                },
            },
            "memory_stats": {
                "usage": _read_int(os.path.join(mem, "memory.usage_in_bytes")),
                "max_usage": _read_int(os.path.join(mem, "memory.max_usage_in_bytes")),
                "failcnt": _read_int(os.path.join(mem, "memory.failcnt")),
                "limit": limit if limit > 0 else host_memory(),
                "stats": mstat,
            },
            "pids_stats": self._pids(),
            "blkio_stats": {
                "io_service_bytes_recursive": _blkio_v1(os.path.join(blk, "blkio.throttle.io_service_bytes_recursive")),
                "io_serviced_recursive": _blkio_v1(os.path.join(blk, "blkio.throttle.io_serviced_recursive")),
                "io_queue_recursive": None, "io_service_time_recursive": None,
                "io_wait_time_recursive": None, "io_merged_recursive": None,
                "io_time_recursive": None, "sectors_recursive": None,
            },
        }

    def _stats_v2(self) -> dict[str, Any]:
        d = self.dir("")
        cpu = _read_kv(os.path.join(d, "cpu.stat"))
        mstat = _read_kv(os.path.join(d, "memory.stat"))
        limit = self.memory_limit()
        return {
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": cpu.get("usage_usec", 0) * 1000,
                    "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                    "usage_in_usermode": cpu.get("user_usec", 0) * 1000,
                },
                "system_cpu_usage": system_cpu_usage(),
                "online_cpus": os.cpu_count() or 1,
                "throttling_data": {
                    "periods": cpu.get("nr_periods", 0),
                    "throttled_periods": cpu.get("nr_throttled", 0),
                    "throttled_time": cpu.get("throttled_usec", 0) * 1000,
                },
            },
            "memory_stats": {
                "usage": _read_int(os.path.join(d, "memory.current")),
                "limit": limit if limit > 0 else host_memory(),
                "stats": mstat,
            },
            "pids_stats": self._pids(),
            "blkio_stats": {
                "io_service_bytes_recursive": _io_stat_v2(os.path.join(d, "io.stat"), ("rbytes", "wbytes")),
                "io_serviced_recursive": _io_stat_v2(os.path.join(d, "io.stat"), ("rios", "wios")),
                "io_queue_recursive": None, "io_service_time_recursive": None,
                "io_wait_time_recursive": None, "io_merged_recursive": None,
                "io_time_recursive": None, "sectors_recursive": None,
            },
        }

    def _pids(self) -> dict[str, int]:
        d = self.dir("pids") if self.layout.version == 1 else self.dir("")
        out = {"current": _read_int(os.path.join(d, "pids.current"))} if d else {"current": 0}
        limit = _read_int(os.path.join(d, "pids.max"), -1) if d else -1
        if limit > 0:
            out["limit"] = limit
        return out


def _blkio_v1(path: str) -> list[dict[str, Any]]:
    out = []
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def _io_stat_v2(path: str, keys: tuple[str, str]) -> list[dict[str, Any]]:
    out = []
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":")
        values = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op in zip(keys, ("read", "write"), strict=True):
            out.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values.get(key, 0))})
    return out
