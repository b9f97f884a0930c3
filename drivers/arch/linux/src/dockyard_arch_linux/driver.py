"""``LinuxRuntime``: the ``arch`` driver for the host's Linux platform.

Layout (``<data>`` = ``context.data_dir``, ``<run>`` = ``context.run_dir``)::

    <data>/containers/<id>/meta.json     what the driver needs to find the container again
    <run>/bundles/<id>/exit, oom         written by conmon (--persist-dir; not in the data root:
                                         a full data root must not lose an exit code)
    <data>/containers/<id>/ctr.log       k8s-file log, unless the request names a log_path
    <run>/bundles/<id>/config.json       the OCI bundle (rootfs is the request's path)
    <run>/bundles/<id>/{pidfile,conmon.pid,ctl,winsz,attach}
    <run>/bundles/<id>/execs/<exec-id>/  one exec session: process.json, log, exit file, fifos
    <run>/a/<cuuid> -> bundle            conmon's attach-socket symlinks (short socket paths)
    <run>/<runtime>/                     the OCI runtime's --root (crun, runc, ...)
    <run>/netns/<owner>-<id>             the container's network sandbox (a bound netns)

Nothing else on the host is touched, except cgroups named ``dockyard-<owner>-<id>`` and the
network namespaces bound in ``<run>/netns``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import signal as _signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.model import Container
from dockyard.specs import DriverInfo
from dockyard.specs.arch import (
    AttachStream,
    ExecRequest,
    Platform,
    RuntimeCreateRequest,
    RuntimeState,
)
from dockyard_arch_linux import binfmt, cgroups, logs, monitor, sandbox
from dockyard_arch_linux.checkpoint import Checkpointing
from dockyard_arch_linux.logs import LogLines, LogRecord, LogRecords, follow_lines, parse_line
from dockyard_arch_linux.sealed import SealedRuntimes
from dockyard_arch_linux.spec import SpecOptions, build_spec, exec_process

KNOWN_RUNTIMES = ("crun", "runc")
INIT_CANDIDATES = ("catatonit", "tini-static", "tini", "docker-init")
MACHINES = {"x86_64": ("amd64", ""), "aarch64": ("arm64", ""), "armv7l": ("arm", "v7"),
            "armv6l": ("arm", "v6"), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
            "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}
UNKNOWN_EXIT = 255  # conmon vanished without writing an exit file
#: seconds an exec's conmon may take to exit after reporting that its command could not start
EXEC_MONITOR_EXIT = 5.0
#: seconds between sweeps for runtime processes adopted from a container's PID namespace
#: (monitor.reap_orphans(foreign_only=True)), made by the wait loops of running containers
FOREIGN_SWEEP_EVERY = 5.0
log = logging.getLogger("dockyard.arch.linux")

SpecAmender = Callable[[Container, dict[str, Any]], None]


class RuntimeCommandError(Unavailable):
    """The OCI runtime refused a command; carries its stderr."""


def _iso(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class SeccompBpfCache:
    """Compiled seccomp filters, reused through crun's ``run.oci.seccomp_bpf_data`` annotation.

    crun compiles the profile with libseccomp on every ``create`` (~15-20 ms of its ~35 ms
    here), and every container with the default profile and the same capabilities has the same
    one. The first such container is created as usual; its ``seccomp.bpf``, which crun leaves
    in its state directory, is read before the container starts and handed to the next ones
    as the annotation, which crun loads instead of compiling. Keyed by the profile's JSON and
    the runtime binary; only crun has the annotation, so other runtimes are left alone.
    """

    ANNOTATION = "run.oci.seccomp_bpf_data"
    MAX_ENTRIES = 64

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def apply(self, spec: dict[str, Any], runtime_path: str) -> str:
        """Add the annotation when the filter is known; the key to :meth:`learn` it when it is
        not ("" when there is nothing to cache)."""
        profile = spec.get("linux", {}).get("seccomp")
        annotations = spec.setdefault("annotations", {})
        if not profile or os.path.basename(runtime_path) != "crun" or self.ANNOTATION in annotations:
            return ""
        digest = hashlib.sha256(json.dumps([runtime_path, profile], sort_keys=True).encode()).hexdigest()
        data = self._data.get(digest)
        if data is None:
            return digest
        annotations[self.ANNOTATION] = data
        return ""

    def learn(self, key: str, bpf_path: Path) -> None:
        try:
            raw = bpf_path.read_bytes()
        except OSError:
            return  # a crun that keeps no copy: every create compiles
        if raw and len(raw) % 8 == 0 and len(self._data) < self.MAX_ENTRIES:  # whole sock_filter entries
            self._data[key] = base64.b64encode(raw).decode()


class LinuxRuntime(Checkpointing):
    """OCI spec -> conmon -> crun (default) or runc, with live-restore through conmon."""

    info = DriverInfo(
        name="linux", kind="arch",
        description="Linux containers: OCI spec, conmon monitor, crun or runc",
        capabilities=frozenset({"pause", "exec", "update", "stats", "top", "logs", "tty", "attach",
                                "live-restore", "init", "seccomp", "sandbox", "checkpoint", "emulation"}),
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        #: Called as ``spec_amender(container, spec)`` after the spec is generated and before
        #: it is written; the container service sets it to run the ``dockyard_runtime_spec``
        #: hook. May raise a DockyardError to refuse the container.
        self.spec_amender: SpecAmender | None = None
        opts, cfg = context.options, context.daemon_config
        self.default_runtime = str(opts.get("runtime") or cfg.get("default-runtime") or "crun")
        self.runtimes: dict[str, Any] = dict(cfg.get("runtimes") or {})
        self.conmon = str(opts.get("conmon") or shutil.which("conmon") or "conmon")
        self.cgroup_parent = str(opts.get("cgroup-parent") or cfg.get("cgroup-parent") or "")
        self.layout: cgroups.Layout | None = None
        self.spec_options: SpecOptions | None = None
        self._emulated: list[tuple[str, str]] = []
        self._emulated_at = -10.0
        self.subreaper = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._bpf = SeccompBpfCache()
        #: cgroup v1: our own ``cgroup.procs`` for :meth:`_prime_cgroup_lock` ("" = off)
        self._procs_file = ""
        self._priming: asyncio.Future[float] | None = None
        #: whether this conmon takes --no-sync-log (asked at the first AutoRemove container)
        self._no_sync_log: bool | None = None
        #: sealed copies of crun it runs without copying itself first (``seal-runtime=false``: off)
        self._sealed: SealedRuntimes | None = None
        if str(opts.get("seal-runtime", "true")).lower() not in ("0", "false", "no"):
            self._sealed = SealedRuntimes(context.run_dir / "sealed")

    # ------------------------------------------------------------------ paths
    @property
    def _containers(self) -> Path:
        return self.context.data_dir / "containers"

    def _cdir(self, cid: str) -> Path:
        return self._containers / cid

    def _bundle(self, cid: str) -> Path:
        return self.context.run_dir / "bundles" / cid

    @property
    def _socket_dir(self) -> Path:
        return self.context.run_dir / "a"

    def _cuuid(self, ident: str) -> str:
        full = str(self._socket_dir / ident / "attach")
        return ident if len(full) <= monitor.SUN_PATH_MAX else ident[:12]

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        for d in (self._containers, self.context.run_dir / "bundles", self._socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        if str(self.context.options.get("subreaper", "true")).lower() not in ("0", "false", "no"):
            self.subreaper = monitor.become_subreaper()
        self.layout = await asyncio.to_thread(cgroups.detect)
        if str(self.context.options.get("cgroup-prime", "true")).lower() not in ("0", "false", "no"):
            self._procs_file = cgroups.own_procs_file(self.layout)
        self.spec_options = self._measure()
        self._exe(self._runtime_path(self.default_runtime))  # fail early on a bad default; its sealed copy
        self._check_emulation()
        # live-restore: collect monitors that exited while nobody was watching
        for cid in await self.list():
            meta = self._meta(cid)
            monitor.reap_later(int(meta.get("conmon_pid") or 0))
            if not monitor.alive(int(meta.get("conmon_pid") or 0), cid):
                monitor.reap_later(int(meta.get("pid") or 0))  # orphaned when its monitor died

    def _measure(self) -> SpecOptions:
        layout = self.layout or cgroups.detect()
        try:
            last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        except (OSError, ValueError):
            last = 40
        if layout.version == 2:
            swap = "memory" in Path(layout.unified, "cgroup.controllers").read_text().split()
        else:
            mem = layout.controllers.get("memory", "")
            swap = bool(mem) and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
        init = str(self.context.options.get("init-path") or "")
        if not init:
            init = next((p for p in (shutil.which(c) for c in INIT_CANDIDATES) if p), "") or ""
        return SpecOptions(
            host_capabilities=held_capabilities(),
            owner=self.context.owner, machine=platform.machine(), cap_last_cap=min(last, 40),
            host_nofile_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1], swap_supported=swap,
            cgroup_v2=layout.version == 2, init_path=init, cgroup_parent=self.cgroup_parent)

    def status(self) -> list[tuple[str, str]]:
        layout = self.layout.name if self.layout else "unknown"
        return [("Default Runtime", self.default_runtime), ("Cgroup Layout", layout),
                ("Monitor", self.conmon), ("Init", self.spec_options.init_path if self.spec_options else ""),
                ("Emulated", ", ".join(str(p) for p in self.platforms() if p.emulated) or "none")]

    def platforms(self) -> list[Platform]:
        """The host's platform, then every foreign one a usable binfmt_misc handler (enabled,
        ``F``) covers, ``emulated`` (read live: a registration made after start counts)."""
        arch, variant = MACHINES.get(platform.machine(), (platform.machine(), ""))
        out = [Platform(os="linux", architecture=arch, variant=variant)]
        if str(self.context.options.get("emulation", "true")).lower() in ("0", "false", "no"):
            return out
        now = time.monotonic()
        if now - self._emulated_at > 1.0:  # a create and its start ask in a row: read binfmt_misc once
            self._emulated = binfmt.emulated_platforms()
            self._emulated_at = now
        for plat, _entry in self._emulated:
            os_, a, *v = plat.split("/")
            out.append(Platform(os=os_, architecture=a, variant=v[0] if v else "", emulated=True))
        return out

    def _check_emulation(self) -> None:
        """At start: say which foreign platforms run emulated, and how to enable them."""
        if str(self.context.options.get("emulation", "true")).lower() in ("0", "false", "no"):
            log.info("emulation: off (arch-opts emulation=false)")
            return
        try:
            rows = binfmt.status()
        except OSError as exc:  # noqa: BLE001 - a report, never fatal
            log.warning("binfmt_misc: cannot read: %s", exc)
            return
        usable = [f"{st.platform} ({st.usable.name})" for st in rows if st.usable is not None]
        if usable:
            log.info("emulation: %s", ", ".join(usable))
        elif any(st.interpreter_installed for st in rows):
            log.info("emulation: qemu-user-static is installed but no handler is registered: "
                     "`dockyard system binfmt install` runs arm64/arm containers")
        for st in rows:
            if st.entries and st.usable is None:
                log.warning("emulation of %s: %s", st.platform, st.why_not())

    # ------------------------------------------------------------------ runtimes
    def runtime_names(self) -> list[str]:
        names = set(self.runtimes) | {n for n in KNOWN_RUNTIMES if shutil.which(n)}
        return sorted(names)

    def resolve_runtime(self, name: str = "") -> str:
        """``name``, or the default runtime when "" (what inspect's ``Runtime`` shows)."""
        name = name or self.default_runtime
        self._runtime_path(name)
        return name

    def _runtime_path(self, name: str) -> str:
        entry = self.runtimes.get(name)
        if isinstance(entry, dict):
            entry = entry.get("path") or entry.get("Path")
        path = str(entry) if entry else (shutil.which(name) if name in KNOWN_RUNTIMES else None)
        if not path:
            raise InvalidArgument(f"unknown or unavailable OCI runtime {name!r}; known: {self.runtime_names()}")
        return path

    def _exe(self, runtime_path: str) -> str:
        """The path to run the runtime at ``runtime_path`` by (:mod:`dockyard_arch_linux.sealed`)."""
        return self._sealed.path(runtime_path) if self._sealed is not None else runtime_path

    async def close(self) -> None:
        if self._sealed is not None:
            self._sealed.close()

    async def _run(self, meta: dict[str, Any], *args: str, timeout: float = 30.0) -> bytes:
        argv = [self._exe(meta["runtime_path"]), "--root", meta["runtime_root"], *args]
        code, out, err = await monitor.run_command(argv, timeout)
        if code is None:
            raise RuntimeCommandError(f"{meta['runtime']} {args[0]} timed out after {timeout}s")
        if code != 0:
            text = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
            raise RuntimeCommandError(f"{meta['runtime']} {args[0]} failed: {text}")
        return out

    async def _runtime_state(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        try:
            out = await self._run(meta, "state", meta["id"], timeout=10)
        except RuntimeCommandError:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    # ------------------------------------------------------------------ records
    def _meta(self, cid: str) -> dict[str, Any]:
        try:
            return json.loads((self._cdir(cid) / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no such container in the runtime: {cid}") from None

    def _save(self, meta: dict[str, Any]) -> None:
        path = self._cdir(meta["id"]) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)

    def _exit(self, meta: dict[str, Any]) -> RuntimeState | None:
        """The recorded exit: conmon writes it in the bundle, under the exec root
        (``--persist-dir``), which a full data root does not stop (conmon gives up at the
        first file it cannot write); containers started by earlier versions have it in the
        data root."""
        cdir = self._cdir(meta["id"])
        path = Path(meta["bundle"]) / "exit"
        code = _read_int(path)
        if code is None:
            path = cdir / "exit"
            code = _read_int(path)
        if code is None:
            return None
        oom = (cdir / "oom").exists() or (Path(meta["bundle"]) / "oom").exists()
        monitor.reap_later(int(meta.get("conmon_pid") or 0))  # conmon exits right after writing
        return RuntimeState(status="stopped", pid=0, exit_code=code, oom_killed=oom,
                            finished_at=_iso(path.stat().st_mtime_ns))

    # ------------------------------------------------------------------ spec
    def build_spec(self, request: RuntimeCreateRequest, runtime: str = "") -> dict[str, Any]:
        """The OCI spec this driver would hand to ``runtime`` (before ``spec_amender``)."""
        opts = self.spec_options or self._measure()
        runtime = runtime or request.runtime or request.container.host_config.runtime or self.default_runtime
        crun = os.path.basename(self._runtime_path(runtime)) == "crun"
        if opts.cgroup_v2 and crun and "CAP_SYS_RESOURCE" not in opts.host_capabilities:
            opts = dataclasses.replace(opts, device_cgroup=False)
        if crun:
            opts = dataclasses.replace(opts, proc_readonly_binds=True)
        return build_spec(request, opts)

    # ------------------------------------------------------------------ RuntimeDriver
    async def create(self, request: RuntimeCreateRequest) -> RuntimeState:
        return await self._create_with(request, [])

    async def _create_with(self, request: RuntimeCreateRequest, conmon_extra: list[str]) -> RuntimeState:
        """create(), or with conmon's ``--restore`` in ``conmon_extra`` a restore (the
        process then runs when this returns)."""
        cid = request.container.id
        self._prime_cgroup_lock()
        async with self._lock(cid):
            if (self._cdir(cid) / "meta.json").exists():
                raise Conflict(f"container {cid} already exists in the runtime")
            name = request.runtime or request.container.host_config.runtime or self.default_runtime
            runtime_path = self._runtime_path(name)
            spec = await asyncio.to_thread(self.build_spec, request, name)
            amender = request.spec_amender or self.spec_amender
            if amender is not None:
                amender(request.container, spec)
            bpf_key = self._bpf.apply(spec, runtime_path)
            bundle, cdir = self._bundle(cid), self._cdir(cid)
            cfg = request.container.config
            meta: dict[str, Any] = {
                "id": cid, "name": request.container.name, "runtime": name, "runtime_path": runtime_path,
                "runtime_root": str(self.context.run_dir / name), "bundle": str(bundle),
                "rootfs": request.rootfs, "cgroups_path": spec["linux"].get("cgroupsPath", ""),
                "log_path": request.log_path or str(cdir / "ctr.log"), "own_log": not request.log_path,
                "tty": bool(cfg.tty), "stdin": bool(cfg.open_stdin), "cuuid": self._cuuid(cid),
                "log_size_max": _size_bytes(request.container.host_config.log_config.config.get("max-size", "")),
                "log_max_files": _max_files(request.container.host_config.log_config.config.get("max-file", "")),
                "conmon_pid": 0, "pid": 0,
                # an AutoRemove container's log goes with it right after the exit: conmon's
                # fsync of it there (1.1-1.5 ms between the exit and its report, measured)
                # would save nothing worth waiting for
                "sync_log": not (request.container.host_config.auto_remove and await self._can_skip_log_sync()),
            }

            def prepare() -> None:
                bundle.mkdir(parents=True)
                cdir.mkdir(parents=True, exist_ok=True)  # a restore's mount stand-ins may be there
                Path(meta["runtime_root"]).mkdir(parents=True, exist_ok=True)
                (bundle / "config.json").write_text(json.dumps(spec))  # compact: the C encoder (0.08 vs 0.30 ms)
                self._save(meta)

            try:
                await asyncio.to_thread(prepare)
                cmd = self._conmon_command(meta, cfg.stdin_once)
                cmd.extra = list(conmon_extra)
                conmon_pid, pid = await asyncio.to_thread(monitor.spawn, cmd)
            except BaseException:
                await self._cleanup(meta)
                await asyncio.sleep(0.05)  # a failed init may still be exiting
                monitor.reap_orphans()
                raise
            meta.update(conmon_pid=conmon_pid, pid=pid)
            self._save(meta)
            if bpf_key and not conmon_extra:  # created, not started: the filter crun compiled is its own output yet
                await asyncio.to_thread(self._bpf.learn, bpf_key, Path(meta["runtime_root"]) / cid / "seccomp.bpf")
            return RuntimeState(status="created", pid=pid)

    async def expect_start(self) -> None:
        """A create: its start likely follows; the cgroup lock is warmed from now on."""
        self._prime_cgroup_lock()

    def _prime_cgroup_lock(self) -> None:
        """On cgroup v1, begin :func:`cgroups.prime_attach` in a thread (one at a time), so
        the RCU grace period the runtime's cgroup write would wait for passes while the bundle,
        conmon and the runtime start (see there; the driver option ``cgroup-prime=false``
        turns it off)."""
        if not self._procs_file or (self._priming is not None and not self._priming.done()):
            return
        self._priming = asyncio.get_running_loop().run_in_executor(None, cgroups.prime_attach, self._procs_file)

    async def _can_skip_log_sync(self) -> bool:
        if self._no_sync_log is None:
            self._no_sync_log = await asyncio.to_thread(monitor.has_option, self.conmon, "--no-sync-log")
        return self._no_sync_log

    def _conmon_command(self, meta: dict[str, Any], stdin_once: bool) -> monitor.ConmonCommand:
        bundle = meta["bundle"]
        return monitor.ConmonCommand(
            conmon=self.conmon, runtime_path=self._exe(meta["runtime_path"]), runtime_root=meta["runtime_root"],
            cid=meta["id"], cuuid=meta["cuuid"], name=meta["name"] or meta["id"][:12], bundle=bundle,
            container_pidfile=os.path.join(bundle, "pidfile"),
            conmon_pidfile=os.path.join(bundle, "conmon.pid"), log_path=meta["log_path"],
            socket_dir=str(self._socket_dir), persist_dir=bundle,
            terminal=meta["tty"], stdin=meta["stdin"],
            # conmon closes stdin when any attach socket ends unless told to leave it open. As in
            # dockerd (CopyStreams: CloseStdin && !TTY), only a StdinOnce container without a TTY
            # loses its stdin with its attach; a terminal keeps its input for the next attach
            leave_stdin_open=meta["stdin"] and (meta["tty"] or not stdin_once),
            # with max-file, wait() rotates the log; conmon's own limit would only truncate it
            log_size_max=0 if self._rotation(meta) else
            int(meta.get("log_size_max") or self.context.options.get("log-size-max", 0) or 0),
            sync_log=bool(meta.get("sync_log", True)))

    @staticmethod
    def _rotation(meta: dict[str, Any]) -> tuple[int, int] | None:
        """(max-size, max-file) when the log is rotated into several files, else None."""
        size, files = int(meta.get("log_size_max") or 0), int(meta.get("log_max_files") or 1)
        return (size, files) if size > 0 and files > 1 else None

    async def start(self, container_id: str) -> RuntimeState:
        meta = self._meta(container_id)
        try:
            await self._run(meta, "start", container_id)
        except RuntimeCommandError:
            st = await self.state(container_id)
            if st.status != "created":
                raise Conflict(f"container {container_id} is {st.status}, not created") from None
            raise
        # the runtime execs the user process before `start` returns: it runs (or already ran)
        return self._exit(meta) or RuntimeState(status="running", pid=int(meta.get("pid") or 0))

    async def kill(self, container_id: str, signal: int) -> None:
        meta = self._meta(container_id)
        if self._signal_init(meta, signal):
            return
        st = await self.state(container_id)
        if st.status not in ("running", "paused", "created"):
            raise Conflict(f"container {container_id} is not running")
        try:
            await self._run(meta, "kill", container_id, str(int(signal)))
        except RuntimeCommandError:
            if self._exit(meta) is None and (await self.state(container_id)).status != "stopped":
                raise
        if st.status == "paused" and signal == _signal.SIGKILL:
            try:
                await self._run(meta, "resume", container_id)
            except RuntimeCommandError:
                pass

    def _signal_init(self, meta: dict[str, Any], signo: int) -> bool:
        """Signal the container's init directly, as ``<runtime> kill`` would, without spawning two
        runtime commands (``state``, ``kill``) on the event loop; False leaves the case to them:
        no exit recorded yet, the process still conmon's child (checked through a pidfd, so a
        recycled PID cannot be hit) and not frozen (a paused container's SIGKILL needs a resume)."""
        pid, conmon_pid = int(meta.get("pid") or 0), int(meta.get("conmon_pid") or 0)
        if pid <= 0 or conmon_pid <= 0 or not hasattr(_signal, "pidfd_send_signal"):
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        try:
            if monitor.parent_of(pid) != conmon_pid or self._exit(meta) is not None:
                return False
            if self.layout is None or not meta.get("cgroups_path"):
                return False  # cannot tell whether it is paused
            if cgroups.Cgroup(self.layout, meta["cgroups_path"]).frozen():
                return False
            _signal.pidfd_send_signal(fd, signo)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    async def state(self, container_id: str) -> RuntimeState:
        meta = self._meta(container_id)
        done = self._exit(meta)
        if done is not None:
            monitor.reap_later(int(meta.get("conmon_pid") or 0))
            return done
        rs = await self._runtime_state(meta)
        conmon_alive = monitor.alive(int(meta.get("conmon_pid") or 0), container_id)
        if rs is None or rs.get("status") == "stopped":
            # conmon writes the exit file once it has reaped the process and drained its output
            for _ in range(100):
                if not conmon_alive:
                    break
                await asyncio.sleep(0.02)
                done = self._exit(meta)
                if done is not None:
                    return done
                conmon_alive = monitor.alive(int(meta.get("conmon_pid") or 0), container_id)
            done = self._exit(meta)
            if done is not None:
                return done
            if rs is None and not meta.get("conmon_pid"):
                return RuntimeState(status="unknown")
            monitor.reap(int(meta.get("conmon_pid") or 0))
            return RuntimeState(status="stopped", exit_code=UNKNOWN_EXIT)
        status = str(rs.get("status"))
        if status not in ("created", "running", "paused"):
            status = "unknown"
        return RuntimeState(status=status, pid=int(rs.get("pid") or 0))

    async def wait(self, container_id: str) -> RuntimeState:
        meta = self._meta(container_id)
        conmon_pid = int(meta.get("conmon_pid") or 0)
        # conmon writes the exit file and then exits: a pidfd wakes us at once (polling stays
        # as the fallback and for a conmon that was replaced)
        pidfd = _pidfd(conmon_pid)
        delay = 0.01
        rotation = self._rotation(meta)
        try:
            while True:
                if rotation is not None and await asyncio.to_thread(logs.rotate, meta["log_path"], *rotation):
                    monitor.reopen_log(meta["bundle"])
                done = self._exit(meta)
                if done is not None:
                    monitor.reap_later(conmon_pid)
                    return done
                if not monitor.alive(conmon_pid, container_id):
                    st = await self.state(container_id)
                    if st.status in ("stopped", "unknown"):
                        return st
                # a safety net behind the exec's own reaping: an adopted process of the
                # container's namespace left a zombie would keep its init from exiting
                monitor.sweep_foreign(FOREIGN_SWEEP_EVERY)
                # a rotated log is looked at every 0.1 s: it outgrows max-size by that much at most
                delay = await _pause(pidfd, delay, 1.0 if rotation is None else 0.1)
                if not (self._cdir(container_id) / "meta.json").exists():
                    raise NotFound(f"container {container_id} was deleted while waiting")
        finally:
            if pidfd is not None:
                os.close(pidfd)

    async def delete(self, container_id: str, force: bool = False) -> None:
        async with self._lock(container_id):
            meta = self._meta(container_id)
            st = await self.state(container_id)
            if st.status in ("running", "paused"):
                if not force:
                    raise Conflict(f"container {container_id} is {st.status}: stop it or force the removal")
                await self.kill(container_id, _signal.SIGKILL)
                try:
                    await asyncio.wait_for(self.wait(container_id), 10)
                except TimeoutError:
                    pass
            await self._cleanup(meta)
        self._locks.pop(container_id, None)

    async def _cleanup(self, meta: dict[str, Any]) -> None:
        """Remove every trace of a container: runtime record, monitors, cgroup, files."""
        cid = meta["id"]
        bundle = Path(meta["bundle"])
        for edir in sorted((bundle / "execs").glob("*")) if (bundle / "execs").exists() else []:
            await asyncio.to_thread(monitor.terminate, monitor.read_pidfile(str(edir / "conmon.pid")), cid)
            # a monitor that had to be killed leaves its process to us (we are its subreaper)
            monitor.reap_later(monitor.read_pidfile(str(edir / "pid")))
        try:
            await self._run(meta, "delete", "--force", cid, timeout=15)
        except RuntimeCommandError:
            pass
        conmon_pid = int(meta.get("conmon_pid") or monitor.read_pidfile(str(bundle / "conmon.pid")) or 0)
        for _ in range(250):
            if not monitor.alive(conmon_pid):
                break
            await asyncio.sleep(0.02)
        await asyncio.to_thread(monitor.terminate, conmon_pid, cid)
        monitor.reap_later(int(meta.get("pid") or 0) or monitor.read_pidfile(str(bundle / "pidfile")))
        monitor.reap_orphans()
        if self.layout is not None and meta.get("cgroups_path"):
            await asyncio.to_thread(cgroups.Cgroup(self.layout, meta["cgroups_path"]).remove)

        def remove_files() -> None:
            for ident in {meta.get("cuuid", ""), cid}:
                if ident:
                    link = self._socket_dir / ident
                    if link.is_symlink():
                        link.unlink()
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.rmtree(self._cdir(cid), ignore_errors=True)

        await asyncio.to_thread(remove_files)

    async def list(self) -> list[str]:
        if not self._containers.exists():
            return []
        return sorted(p.parent.name for p in self._containers.glob("*/meta.json"))

    # ------------------------------------------------------------------ network sandboxes
    async def create_sandbox(self, container_id: str) -> str:
        """A network namespace bound at ``<run>/netns/<owner>-<id>``, loopback up."""
        self._prime_cgroup_lock()  # the first step of a start: the runtime's create follows
        path = sandbox.sandbox_path(self.context.run_dir, self.context.owner, container_id)
        await asyncio.to_thread(sandbox.create, path)
        return str(path)

    async def remove_sandbox(self, container_id: str, sandbox_key: str) -> None:
        """Detach the namespace at ``sandbox_key`` (this driver's path, or where dockyard 0.1's
        engine bound one) and delete its file."""
        path = Path(sandbox_key) if sandbox_key else sandbox.sandbox_path(
            self.context.run_dir, self.context.owner, container_id)
        await asyncio.to_thread(sandbox.remove, path)

    async def pause(self, container_id: str) -> None:
        meta = self._meta(container_id)
        st = await self.state(container_id)
        if st.status != "running":
            raise Conflict(f"container {container_id} is {st.status}, not running")
        await self._run(meta, "pause", container_id)
        # up to ~2 s (3000 tries): a task that joined the cgroup in the middle of something,
        # a failing exec's runtime process say, can hold a v1 freezer FREEZING for a while
        if not await asyncio.to_thread(self._cgroup(meta, st.pid).settle_freeze, 3000):
            await self._run(meta, "resume", container_id)  # never leave it half frozen (runc's way)
            raise RuntimeCommandError(f"{meta['runtime']} pause: the freezer of {container_id} stayed FREEZING")

    async def resume(self, container_id: str) -> None:
        meta = self._meta(container_id)
        st = await self.state(container_id)
        if st.status != "paused":
            raise Conflict(f"container {container_id} is {st.status}, not paused")
        await self._run(meta, "resume", container_id)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        from dockyard.model import HostConfig
        from dockyard_arch_linux.spec import resources as to_oci

        meta = self._meta(container_id)
        st = await self.state(container_id)
        if st.status not in ("created", "running", "paused"):
            raise Conflict(f"container {container_id} is not running")
        fields = {_snake(k): v for k, v in resources.items()}
        unknown = set(fields) - set(RESOURCE_FIELDS)
        if unknown:
            raise InvalidArgument(f"cannot update {sorted(unknown)}")
        host = HostConfig(**{k: v for k, v in fields.items()})
        res = to_oci(host, self.spec_options.swap_supported if self.spec_options else True)
        if not res:
            return
        path = Path(meta["bundle"]) / "update.json"
        path.write_text(json.dumps(res))
        try:
            await self._run(meta, "update", "--resources", str(path), container_id)
        finally:
            path.unlink(missing_ok=True)

    def _cgroup(self, meta: dict[str, Any], pid: int) -> cgroups.Cgroup:
        layout = self.layout or cgroups.detect()
        return cgroups.Cgroup.of_pid(pid, layout) or cgroups.Cgroup(layout, meta["cgroups_path"])

    async def cgroup(self, container_id: str) -> cgroups.Cgroup:
        """The container's cgroup (directories per controller, or the v2 directory)."""
        meta = self._meta(container_id)
        st = await self.state(container_id)
        return self._cgroup(meta, st.pid)

    async def stats(self, container_id: str) -> dict[str, Any]:
        meta = self._meta(container_id)
        st = await self.state(container_id)
        out: dict[str, Any] = {"id": container_id, "name": "/" + (meta.get("name") or ""),
                               "read": _iso(_now_ns()), "preread": "0001-01-01T00:00:00Z",
                               "num_procs": 0, "storage_stats": {},
                               "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}}
        if st.status in ("running", "paused", "created"):
            out.update(await asyncio.to_thread(self._cgroup(meta, st.pid).stats))
        else:
            out.update({"cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                        "memory_stats": {}, "pids_stats": {}, "blkio_stats": {}})
        return out

    async def top(self, container_id: str) -> list[int]:
        meta = self._meta(container_id)
        st = await self.state(container_id)
        if st.status not in ("running", "paused"):
            raise Conflict(f"container {container_id} is not running")
        return await asyncio.to_thread(self._cgroup(meta, st.pid).procs)

    # ------------------------------------------------------------------ logs and attach
    def log_lines(self, container_id: str, follow: bool = False, tail: int | None = None) -> LogLines:
        """The raw ``k8s-file`` lines conmon wrote (see :func:`parse_line`). The log is opened
        by this call (NotFound for an unknown container): removing the container afterwards
        takes nothing from the reader. ``tail``: the last lines only, read from the end."""
        meta = self._meta(container_id)
        older = logs.rotated(meta["log_path"], int(meta.get("log_max_files") or 1)) if self._rotation(meta) else ()
        return follow_lines(meta["log_path"], follow, lambda: self._exit(meta) is not None
                            or not (self._cdir(container_id) / "meta.json").exists(), tail=tail, older=older)

    def logs(self, container_id: str, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogRecord]:
        """Parsed log records ``(stream, timestamp, data)``; ``follow`` ends when the container
        exits. The log is opened by this call, as :meth:`log_lines` says."""
        return LogRecords(self.log_lines(container_id, follow, tail))

    log_records = logs  # the name the first services used

    async def attach(self, container_id: str, exec_id: str | None = None) -> AttachStream:
        """A container's stdio through conmon's attach socket; an exec session's output from
        its log (complete from its start) and its stdin through its attach socket."""
        if exec_id is None:
            sock = await asyncio.to_thread(self.connect_attach, container_id)
            return _SocketAttach(sock)
        path = self.exec_attach_socket_path(exec_id)
        sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            sock = None  # the process already ended (or could not start): output only
        return _ExecAttach(self.exec_logs(exec_id, follow=True), sock)

    def attach_socket_path(self, container_id: str) -> str:
        """conmon's attach socket (SOCK_SEQPACKET). Reads give ``<stream byte><data>`` with
        stream 2 = stdout, 3 = stderr; writes are stdin; the socket's end (``shutdown(SHUT_WR)``
        or ``close()``) closes stdin only for a ``stdin_once`` container without a TTY."""
        meta = self._meta(container_id)
        return str(self._socket_dir / meta["cuuid"] / "attach")

    def connect_attach(self, container_id: str) -> socket.socket:
        """A connected attach socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(self.attach_socket_path(container_id))
        except OSError:
            sock.close()
            raise
        return sock

    async def resize(self, container_id: str, height: int, width: int, exec_id: str | None = None) -> None:
        """Resize the container's pty (TTY containers), or an exec session's."""
        if exec_id is not None:
            return await self.exec_resize(exec_id, height, width)
        meta = self._meta(container_id)
        if not meta.get("tty"):
            raise Conflict(f"container {container_id} has no terminal")
        await asyncio.to_thread(monitor.resize, meta["bundle"], height, width)

    # ------------------------------------------------------------------ exec
    def _exec_dir(self, exec_id: str) -> Path:
        for d in (self.context.run_dir / "bundles").glob(f"*/execs/{exec_id}"):
            return d
        raise NotFound(f"no such exec session: {exec_id}")

    async def exec(self, request: ExecRequest) -> RuntimeState:
        meta = self._meta(request.container_id)
        st = await self.state(request.container_id)
        if st.status != "running":
            raise Conflict(f"container {request.container_id} is {st.status}, not running")
        base = json.loads((Path(meta["bundle"]) / "config.json").read_text())["process"]
        opts = self.spec_options or self._measure()
        proc = await asyncio.to_thread(exec_process, base, request, meta["rootfs"], opts.cap_last_cap,
                                       opts.host_capabilities)
        edir = Path(meta["bundle"]) / "execs" / request.exec_id
        if edir.exists():
            raise Conflict(f"exec session {request.exec_id} already exists")
        edir.mkdir(parents=True)
        (edir / "process.json").write_text(json.dumps(proc))
        emeta = {"id": request.exec_id, "container_id": request.container_id, "tty": request.tty,
                 "cuuid": self._cuuid(request.exec_id), "conmon_pid": 0, "pid": 0}
        (edir / "meta.json").write_text(json.dumps(emeta))
        cmd = monitor.ConmonCommand(
            conmon=self.conmon, runtime_path=self._exe(meta["runtime_path"]), runtime_root=meta["runtime_root"],
            cid=request.container_id, cuuid=emeta["cuuid"], name=meta["name"] or request.container_id[:12],
            bundle=str(edir), container_pidfile=str(edir / "pid"), conmon_pidfile=str(edir / "conmon.pid"),
            log_path=str(edir / "exec.log"), socket_dir=str(self._socket_dir), exit_dir=str(edir),
            terminal=request.tty, stdin=request.stdin, exec_process_spec=str(edir / "process.json"))
        try:
            conmon_pid, pid = await asyncio.to_thread(monitor.spawn, cmd)
        except monitor.MonitorError as exc:
            # Docker reports a command that cannot start as exit code 126 (127: not found)
            text = str(exc)
            code = 127 if ("not found" in text or "No such file" in text) else 126
            (edir / "error").write_text(text)
            (edir / request.container_id).write_text(str(code))
            # the runtime's process that joined the container to start the command may outlive
            # conmon (under load): adopted by us once conmon is gone, it must be reaped, or the
            # container's init never exits (monitor.reap_orphans). conmon exits right after its report.
            conmon_pid = monitor.read_pidfile(str(edir / "conmon.pid"))
            pidfd = _pidfd(conmon_pid)
            if pidfd is not None:
                try:
                    if monitor.alive(conmon_pid):
                        await _readable(pidfd, EXEC_MONITOR_EXIT)
                finally:
                    os.close(pidfd)
            monitor.reap_later(conmon_pid)
            monitor.reap_orphans()
            return RuntimeState(status="stopped", exit_code=code, error=text)
        emeta.update(conmon_pid=conmon_pid, pid=pid)
        (edir / "meta.json").write_text(json.dumps(emeta))
        return RuntimeState(status="running", pid=pid)

    async def exec_state(self, exec_id: str) -> RuntimeState:
        """State of an exec session; ``exit_code`` once its process has exited."""
        edir = self._exec_dir(exec_id)
        emeta = json.loads((edir / "meta.json").read_text())
        exit_file = edir / emeta["container_id"]
        code = _read_int(exit_file)
        if code is not None:
            monitor.reap_later(int(emeta.get("conmon_pid") or 0))
            error_file = edir / "error"
            error = error_file.read_text() if error_file.exists() else ""
            return RuntimeState(status="stopped", exit_code=code, finished_at=_iso(exit_file.stat().st_mtime_ns),
                                error=error)
        if monitor.alive(int(emeta.get("conmon_pid") or 0), emeta["container_id"]):
            return RuntimeState(status="running", pid=int(emeta.get("pid") or 0))
        code = _read_int(exit_file)  # written just before conmon exited
        if code is not None:
            return RuntimeState(status="stopped", exit_code=code)
        monitor.reap(int(emeta.get("conmon_pid") or 0))
        return RuntimeState(status="stopped", exit_code=UNKNOWN_EXIT)

    async def exec_wait(self, exec_id: str) -> RuntimeState:
        emeta = json.loads((self._exec_dir(exec_id) / "meta.json").read_text())
        pidfd = _pidfd(int(emeta.get("conmon_pid") or 0))  # wakes when the session's conmon exits
        delay = 0.01
        try:
            while True:
                st = await self.exec_state(exec_id)
                if st.status == "stopped":
                    return st
                delay = await _pause(pidfd, delay)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def exec_error(self, exec_id: str) -> str:
        """The runtime's message when the exec'd command could not be started ("" otherwise)."""
        path = self._exec_dir(exec_id) / "error"
        return path.read_text() if path.exists() else ""

    async def exec_logs(self, exec_id: str, follow: bool = False) -> AsyncIterator[LogRecord]:
        """The exec session's output (k8s-file records), following until it exits."""
        edir = self._exec_dir(exec_id)
        emeta = json.loads((edir / "meta.json").read_text())
        done = lambda: (edir / emeta["container_id"]).exists() or not edir.exists()  # noqa: E731
        async for line in follow_lines(str(edir / "exec.log"), follow, done):
            rec = parse_line(line)
            if rec is not None:
                yield rec

    exec_log_records = exec_logs  # the name the first services used

    def exec_attach_socket_path(self, exec_id: str) -> str:
        emeta = json.loads((self._exec_dir(exec_id) / "meta.json").read_text())
        return str(self._socket_dir / emeta["cuuid"] / "attach")

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await asyncio.to_thread(monitor.resize, str(self._exec_dir(exec_id)), height, width)

    async def exec_delete(self, exec_id: str) -> None:
        """Forget an exec session (kills its monitor if it still runs)."""
        edir = self._exec_dir(exec_id)
        emeta = json.loads((edir / "meta.json").read_text())
        await asyncio.to_thread(monitor.terminate, int(emeta.get("conmon_pid") or 0), emeta["container_id"])
        monitor.reap_later(int(emeta.get("pid") or 0))
        link = self._socket_dir / emeta["cuuid"]
        if link.is_symlink():
            link.unlink()
        await asyncio.to_thread(shutil.rmtree, edir, True)


def _size_bytes(text: str) -> int:
    """``--log-opt max-size`` (``10m``, ``1g``, ``512k``, bytes) -> bytes; 0 when unset."""
    t = str(text or "").strip().lower().removesuffix("b")
    if not t:
        return 0
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(t)
    except ValueError as exc:
        raise InvalidArgument(f"invalid max-size log option {text!r}") from exc


def _max_files(text: str) -> int:
    """``--log-opt max-file`` -> how many files the log keeps (1 when unset)."""
    t = str(text or "").strip()
    try:
        n = int(t) if t else 1
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for max-file: {text!r}") from exc
    if n < 1:
        raise InvalidArgument(f"max-file cannot be less than 1: {text!r}")
    return n


def _pidfd(pid: int) -> int | None:
    if pid <= 0 or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


async def _pause(pidfd: int | None, delay: float, longest: float = 1.0) -> float:
    """Wait for the monitor to exit (its pidfd turns readable, or at most ``longest``) or for
    ``delay`` without a pidfd; returns the next, longer delay (at most 0.1 s)."""
    if pidfd is not None:
        await _readable(pidfd, min(delay * 10, longest))
    else:
        await asyncio.sleep(delay)
    return min(delay * 1.5, 0.1)


async def _readable(fd: int, timeout: float) -> None:
    """Return when ``fd`` is readable (a pidfd: the process ended) or after ``timeout``."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


class _SocketAttach(AttachStream):
    """conmon's SOCK_SEQPACKET attach socket: reads are ``<2|3><data>``, writes are stdin."""

    STREAMS = {2: "stdout", 3: "stderr"}

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        if sock is not None:
            sock.setblocking(False)

    async def read(self) -> tuple[str, bytes] | None:
        loop = asyncio.get_running_loop()
        while self.sock is not None:
            try:
                data = await loop.sock_recv(self.sock, 65536)
            except OSError:
                return None
            if not data:
                return None
            stream = self.STREAMS.get(data[0])
            if stream is not None and len(data) > 1:
                return stream, data[1:]
        return None

    async def write(self, data: bytes) -> None:
        if self.sock is None or not data:
            return
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), 8192):  # conmon reads stdin in chunks of this size
            try:
                await loop.sock_sendall(self.sock, data[i:i + 8192])
            except OSError:
                return

    async def close_stdin(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _ExecAttach(_SocketAttach):
    """An exec session: output from its log records (nothing is missed between start and
    connect), stdin through its attach socket."""

    def __init__(self, records: AsyncIterator[LogRecord], sock: socket.socket | None) -> None:
        super().__init__(sock)
        self.records = records

    async def read(self) -> tuple[str, bytes] | None:
        async for rec in self.records:
            if rec.data:
                return rec.stream, rec.data
        return None

    def close(self) -> None:
        super().close()
        aclose = getattr(self.records, "aclose", None)
        if aclose is not None:
            try:
                asyncio.get_running_loop().create_task(aclose())
            except RuntimeError:
                pass


RESOURCE_FIELDS = ("memory", "memory_swap", "memory_reservation", "nano_cpus", "cpu_shares", "cpu_period",
                   "cpu_quota", "cpuset_cpus", "cpuset_mems", "pids_limit", "blkio_weight")
_PASCAL = {"Memory": "memory", "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation",
           "NanoCpus": "nano_cpus", "NanoCPUs": "nano_cpus", "CpuShares": "cpu_shares",
           "CpuPeriod": "cpu_period", "CpuQuota": "cpu_quota", "CpusetCpus": "cpuset_cpus",
           "CpusetMems": "cpuset_mems", "PidsLimit": "pids_limit", "BlkioWeight": "blkio_weight"}


def held_capabilities() -> frozenset[str]:
    """The names of the capabilities in this process's bounding set."""
    from dockyard_arch_linux.spec import ALL_CAPABILITIES

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return frozenset(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)
    except (OSError, ValueError):
        pass
    return frozenset()


def _snake(key: str) -> str:
    return _PASCAL.get(key, key)


def _now_ns() -> int:
    import time

    return time.time_ns()
