"""Checkpoint and restore through the OCI runtime and CRIU (capability ``checkpoint``).

``runc checkpoint`` dumps the container's tree with CRIU into an image directory; a restore
is conmon started with ``--restore IMAGES``, which runs ``runc restore --detach`` in place of
``runc create`` and then monitors the restored process as it monitors a created one (its
stdio, log, attach socket and exit file), so nothing else in the driver changes.

CRIU must be 4.x: bookworm's 3.17 fails on recent kernels (``vdso: Failed to fill self vdso
symtable``) and runc would pick it from ``PATH``, so every runc call here names the CRIU found
by :func:`find_criu` with ``--criu``. crun checkpoints only when built with CRIU (``+CRIU`` in
``crun --version``; bookworm's 1.8 is not). Measured here (CRIU 4.2.1, runc 1.1.5, busybox):
checkpoint 90-210 ms, restore 120-240 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidArgument, Unavailable
from dockyard.specs.arch import (
    CheckpointDriver,
    CheckpointRequest,
    CheckpointResult,
    RuntimeCreateRequest,
    RuntimeState,
)
from dockyard_arch_linux import monitor
from dockyard_arch_linux.cgroups import freeze_v1

#: where ``make install`` (tools/build-criu.sh) puts CRIU; looked at before ``PATH``
DEFAULT_CRIU = "/opt/criu/sbin/criu"
MIN_CRIU = (4, 0)
FIX = "run `make install` (or tools/build-criu.sh) to build CRIU 4.x under /opt/criu"
#: CRIU's cache of what it probed of the kernel. CRIU reads it wherever it is, but writes it only
#: when /run is a tmpfs (so that a reboot drops it); where /run is not, every CRIU run probes
#: again: 35-70 ms each here (load 5), and a restore runs CRIU twice (runc's feature check, the
#: restore) plus the lazy-pages daemon, all while the container is frozen
KDAT = Path("/run/criu.kdat")


@dataclass(frozen=True)
class Criu:
    """The CRIU binary checkpoints use: ``path`` and ``version``, or ``problem`` (why there is
    none that works, naming the fix)."""

    path: str = ""
    version: str = ""
    problem: str = ""


def _version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return ""


def _tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def find_criu(configured: str = "") -> Criu:
    """The CRIU to use: ``configured`` (the driver option ``criu``), else /opt/criu's, else the
    first on ``PATH``; refused when it does not run or is older than 4.0. Blocking (~3 ms)."""
    candidates = [configured] if configured else [DEFAULT_CRIU, shutil.which("criu") or ""]
    seen = []
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        version = _version(path)
        if version and _tuple(version) >= MIN_CRIU:
            return Criu(path=path, version=version)
        seen.append(f"{path} ({'CRIU ' + version if version else 'does not run'})")
    if seen:
        return Criu(problem=f"no CRIU 4.x found: {', '.join(seen)} cannot checkpoint on this kernel; {FIX}")
    return Criu(problem=f"CRIU is not installed; {FIX}")


def boot_time() -> float:
    """When this host booted (``btime`` of /proc/stat), 0 when unknown."""
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


def kdat_fresh(path: Path = KDAT) -> bool:
    """CRIU's kernel cache is there and was written since this boot."""
    try:
        return path.stat().st_mtime >= boot_time() > 0
    except OSError:
        return False


def make_kdat(criu: str, path: Path = KDAT) -> str:
    """Write CRIU's kernel cache where /run is no tmpfs: ``criu check`` in a mount namespace of
    its own whose /run is a tmpfs writes it there, and it is copied to ``path`` (atomically). A
    cache from an earlier boot is replaced (:func:`kdat_fresh`). Returns "" or why it could not
    (then CRIU simply probes on every run, as before). Blocking, ~100 ms; root only."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return "needs root and unshare(1)"
    script = 'mount -t tmpfs -o size=1m tmpfs /run && "$0" check >/dev/null 2>&1; exec cat /run/criu.kdat'
    try:
        done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script, criu],
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode != 0 or not done.stdout:
        return done.stderr.decode(errors="replace").strip() or f"criu check wrote no cache ({done.returncode})"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(done.stdout)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return str(exc)
    return ""


def freeze_for_dump(cg: Any) -> bool:
    """Freeze a v1 freezer cgroup and wait until it reads FROZEN (``cgroups.freeze_v1``: runc's
    way, in 0.5 ms steps). True when frozen; False (and thawed) otherwise, or on cgroup v2.

    Why: CRIU freezes the cgroup itself, writes FROZEN, reads the state at once and, when the
    tasks have not all stopped yet (FREEZING: they must be scheduled first, which on a loaded
    host they are not within microseconds), sleeps a fixed 100 ms step before it reads again.
    Measured here (256 MiB, lazy, load 2.7-3): the dump took 121-134 ms when CRIU's first read
    said FROZEN and 249-258 ms when it waited its step, in half the runs. A cgroup frozen before
    runc starts is one CRIU seizes as it is (it thaws it once its tasks are seized), so the
    container is frozen ~15-25 ms earlier (runc's and CRIU's start) but never 100 ms longer."""
    if cg.layout.version == 2:
        return False
    d = cg.dir("freezer")
    if not d:
        return False
    if freeze_v1(d):
        return True
    thaw(cg)
    return False


def thaw(cg: Any) -> None:
    """Thaw a v1 freezer cgroup (a dump that failed after :func:`freeze_for_dump`: CRIU
    leaves a cgroup it found frozen frozen)."""
    d = cg.dir("freezer") if cg.layout.version != 2 else ""
    if d:
        try:
            with open(os.path.join(d, "freezer.state"), "w") as fh:
                fh.write("THAWED")
        except OSError:
            pass


def _told(task: asyncio.Future[str]) -> None:
    if not task.cancelled() and task.exception() is None and task.result():
        import logging

        logging.getLogger(__name__).info("CRIU's kernel cache %s not written (%s): every CRIU run probes the kernel",
                                         KDAT, task.result())


def runtime_problem(runtime: str, runtime_path: str) -> str:
    """Why OCI runtime ``runtime`` cannot checkpoint ("" when it can). Blocking (~2 ms)."""
    base = os.path.basename(runtime_path)
    if base == "runc":
        return ""
    if base == "crun":
        try:
            out = subprocess.run([runtime_path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if "+CRIU" in out:
            return ""
        version = out.split("\n", 1)[0].strip() or "crun"
        return (f"the container's OCI runtime {runtime!r} ({version}) was built without CRIU and cannot "
                "checkpoint: create the container with `--runtime runc` (or start the daemon with "
                "`--default-runtime runc`)")
    return (f"OCI runtime {runtime!r} is not known to checkpoint: create the container with "
            "`--runtime runc`")


def image_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def last_error(log: Path, lines: int = 6) -> str:
    """The last error lines of a CRIU log (what runc's message leaves out)."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in text if "Error" in ln or "error" in ln]
    return "; ".join(errors[-lines:])


def root_mode_wanted(log: Path) -> int | None:
    """The root directory mode a failed restore expected (CRIU: ``File . has bad mode 040755
    (expect 040555)``), or None when it failed for another reason."""
    import re

    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"File \. has bad mode 0?(\d+) \(expect 0?(\d+)\)", text)
    return int(m.group(2), 8) & 0o7777 if m else None


class Checkpointing(CheckpointDriver):
    """The ``checkpoint`` capability of :class:`~dockyard_arch_linux.driver.LinuxRuntime`
    (a base of it: it uses the driver's records, runtime paths and monitor)."""

    _criu: Criu | None = None
    _runtime_problems: dict[str, str]

    def criu(self) -> Criu:
        """The CRIU this driver uses (probed once)."""
        if self._criu is None:
            self._criu = find_criu(str(self.context.options.get("criu") or ""))
        return self._criu

    async def _kdat(self) -> None:
        """CRIU's kernel cache, made once per boot (:func:`make_kdat`) before the first
        checkpoint or restore needs it, so CRIU does not probe the kernel while a container is
        frozen."""
        task = self.__dict__.get("_kdat_task")
        if task is None:
            if kdat_fresh():
                return
            task = self.__dict__["_kdat_task"] = asyncio.ensure_future(asyncio.to_thread(make_kdat, self.criu().path))
            task.add_done_callback(_told)
        await asyncio.shield(task)  # once per driver: a failure is not tried again on every checkpoint

    def checkpoint_support(self, runtime: str = "") -> str:
        criu = self.criu()
        if criu.problem:
            return criu.problem
        name = runtime or self.default_runtime  # type: ignore[attr-defined]
        problems = self.__dict__.setdefault("_runtime_problems", {})
        if name not in problems:
            try:
                path = self._runtime_path(name)  # type: ignore[attr-defined]
            except InvalidArgument as exc:
                problems[name] = str(exc)
            else:
                problems[name] = runtime_problem(name, path)
        return problems[name]

    def _criu_args(self) -> list[str]:
        criu = self.criu()
        if criu.problem:
            raise InvalidArgument(f"cannot checkpoint: {criu.problem}")
        return ["--criu", criu.path]

    @staticmethod
    def _flags(req: CheckpointRequest, tty: bool) -> list[str]:
        flags = []
        if req.tcp_established:
            flags.append("--tcp-established")
        if req.ext_unix_sockets:
            flags.append("--ext-unix-sk")
        if req.file_locks:
            flags.append("--file-locks")
        if req.shell_job or tty:
            flags.append("--shell-job")
        if req.manage_cgroups_mode:
            flags.append(f"--manage-cgroups-mode={req.manage_cgroups_mode}")
        if req.lazy_pages:
            flags.append("--lazy-pages")
        return flags

    async def checkpoint(self, container_id: str, request: CheckpointRequest) -> CheckpointResult:
        meta: dict[str, Any] = self._meta(container_id)  # type: ignore[attr-defined]
        problem = self.checkpoint_support(meta["runtime"])
        if problem:
            raise InvalidArgument(f"cannot checkpoint container {container_id[:12]}: {problem}")
        st = await self.state(container_id)
        if st.status != "running":
            raise Conflict(f"container {container_id} is {st.status}, not running: only a running "
                           "container can be checkpointed")
        images = Path(request.image_dir)
        if images.exists() and any(images.iterdir()):
            raise Conflict(f"checkpoint directory {images} already holds a checkpoint")
        await self._kdat()
        work = Path(request.work_dir or request.image_dir)
        await asyncio.to_thread(images.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        argv = [meta["runtime_path"], "--root", meta["runtime_root"], *self._criu_args(), "checkpoint",
                "--image-path", str(images), "--work-path", str(work), *self._flags(request, bool(meta.get("tty")))]
        if request.leave_running:
            argv.append("--leave-running")
        if request.page_server:
            argv += ["--page-server", request.page_server]
        t0 = time.monotonic()
        cg = self._cgroup(meta, st.pid)  # type: ignore[attr-defined]
        prefrozen = not request.leave_running and await asyncio.to_thread(freeze_for_dump, cg)
        code, text = 1, "interrupted"
        try:
            if request.lazy_pages:
                code, text = await self._lazy_dump(container_id, argv)
            else:
                code, text = await _run([*argv, container_id], timeout=120)
        finally:
            if prefrozen and code != 0:
                await asyncio.to_thread(thaw, cg)
        frozen = (time.monotonic() - t0) * 1000
        if code != 0:
            detail = last_error(work / "dump.log")
            raise Unavailable(f"checkpoint of {container_id[:12]} failed: {text}"
                              + (f" (CRIU: {detail}; log {work / 'dump.log'})" if detail else ""))
        size = await asyncio.to_thread(image_size, str(images))
        return CheckpointResult(image_dir=str(images), size=size, frozen_ms=round(frozen, 1),
                                criu_version=self.criu().version)

    async def _lazy_dump(self, container_id: str, argv: list[str]) -> tuple[int, str]:
        """Post-copy: ``runc checkpoint --lazy-pages --page-server A:P --status-fd N`` dumps all
        but the memory, then serves the pages from a page server until the restoring side has
        pulled them all (the container's process ends only then). Returns once CRIU says the
        server is ready (a byte on the status pipe); the process goes on in the background."""
        r, w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(*argv, "--status-fd", str(w), container_id,
                                                        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, pass_fds=(w,))
        finally:
            os.close(w)
        monitor.in_flight.add(proc.pid)  # asyncio reaps it (monitor.own_command), whenever it ends
        ready = asyncio.ensure_future(asyncio.to_thread(os.read, r, 1))
        done = asyncio.ensure_future(proc.communicate())
        done.add_done_callback(lambda _: monitor.in_flight.discard(proc.pid))
        try:
            await asyncio.wait({ready, done}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not ready.done():
                pass  # the read ends when the process closes the pipe (exit)
        if ready.done() and ready.result() == b"\0":
            serving = getattr(self, "_lazy_servers", None)
            if serving is None:
                serving = self._lazy_servers = {}
            serving[container_id] = asyncio.ensure_future(self._serve_pages(proc, done, r, container_id))
            return 0, ""
        if not done.done():
            proc.kill()
        out, err = await done
        await ready
        os.close(r)
        return proc.returncode or 1, (err or out).decode(errors="replace").strip() or "lazy dump failed"

    async def _serve_pages(self, proc: Any, done: Any, r: int, container_id: str, timeout: float = 600) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            proc.kill()
            await done
        finally:
            os.close(r)
            getattr(self, "_lazy_servers", {}).pop(container_id, None)

    async def restore(self, create: RuntimeCreateRequest, request: CheckpointRequest) -> RuntimeState:
        name = create.runtime or create.container.host_config.runtime or self.default_runtime  # type: ignore[attr-defined]
        problem = self.checkpoint_support(name)
        if problem:
            raise InvalidArgument(f"cannot restore container {create.container.id[:12]}: {problem}")
        if not (Path(request.image_dir) / "inventory.img").exists():
            raise InvalidArgument(f"{request.image_dir} holds no CRIU checkpoint (no inventory.img)")
        await self._kdat()
        if request.netns_path:
            create.netns_path = request.netns_path
        if request.checkpointed_spec:
            create = _mirroring(create, request.checkpointed_spec,
                                self._cdir(create.container.id) / "stand-ins")  # type: ignore[attr-defined]
        # CRIU's restore.log where a failure leaves it (the bundle goes with a failed create)
        own_work = not request.work_dir
        work = Path(request.work_dir) if request.work_dir else \
            self.context.run_dir / "restore-logs" / create.container.id
        await asyncio.to_thread(shutil.rmtree, work, True)
        await asyncio.to_thread(work.mkdir, parents=True)
        flags = [*self._flags(request, bool(create.container.config.tty)), f"--work-path={work}"]
        opts = [opt for flag in flags for opt in ("--runtime-opt", flag)]
        extra = ["--runtime-arg", "--criu", "--runtime-arg", self.criu().path, "--restore", request.image_dir, *opts]
        lazy = await self._lazy_pages(request, work) if request.lazy_pages and request.page_server else None
        if lazy is not None:
            own_work = False  # the lazy-pages daemon works there until the last page came
        try:
            try:
                state = await self._create_with(create, extra)  # type: ignore[attr-defined]
            except DockyardError:
                # engines give a container's root different modes (podman 0555, Docker 0755) and
                # CRIU insists on the dumped one: take it, once
                mode = root_mode_wanted(work / "restore.log")
                if mode is None or not create.rootfs:
                    raise
                await asyncio.to_thread(os.chmod, create.rootfs, mode)
                state = await self._create_with(create, extra)  # type: ignore[attr-defined]
        except DockyardError as exc:
            if lazy is not None and lazy.returncode is None:
                lazy.kill()
            detail = last_error(work / "restore.log")
            if detail:
                raise Unavailable(f"restore of {create.container.id[:12]} failed: {exc} (CRIU: {detail}; "
                                  f"log {work / 'restore.log'})") from exc
            raise
        if own_work:  # kept only when it failed (the next restore of the container replaces it)
            await asyncio.to_thread(shutil.rmtree, work, True)
        return RuntimeState(status="running", pid=state.pid)

    async def _lazy_pages(self, request: CheckpointRequest, work: Path) -> Any:
        """``criu lazy-pages`` pulling from the source's page server, serving the restore's
        page faults through its socket in ``work`` (it must listen before the restore starts);
        it ends once every page came, and is reaped in the background."""
        addr, _, port = request.page_server.rpartition(":")
        argv = [self.criu().path, "lazy-pages", "--page-server", "--address", addr.strip("[]"), "--port", port,
                "-D", request.image_dir, "-W", str(work), "-o", "lazy-pages.log", "-v4"]
        if request.tcp_established:
            argv.append("--tcp-established")
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        sock = work / "lazy-pages.socket"
        end = time.monotonic() + 10
        while not sock.exists():
            if proc.returncode is not None or time.monotonic() > end:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
                raise Unavailable(f"criu lazy-pages did not start (log {work / 'lazy-pages.log'}: "
                                  f"{last_error(work / 'lazy-pages.log')})")
            await asyncio.sleep(0.005)

        async def reap() -> None:
            try:
                await asyncio.wait_for(proc.wait(), 600)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            if proc.returncode:
                import logging

                logging.getLogger(__name__).warning("criu lazy-pages exited with %s: %s", proc.returncode,
                                                    last_error(work / "lazy-pages.log", 12))
            await asyncio.to_thread(shutil.rmtree, work, True)

        task = asyncio.ensure_future(reap())
        reapers = self.__dict__.setdefault("_lazy_reapers", set())
        reapers.add(task)
        task.add_done_callback(reapers.discard)
        return proc

    def checkpoint_spec(self, container_id: str) -> dict[str, Any]:
        """The OCI spec the container last ran with (``spec.dump`` of a portable archive)."""
        meta = self._meta(container_id)  # type: ignore[attr-defined]
        return json.loads((Path(meta["bundle"]) / "config.json").read_text())


#: destinations that are files in every engine's containers (the others are made directories)
FILE_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv", "/.dockerenv")


def _is_bind(m: dict[str, Any]) -> bool:
    return m.get("type") == "bind" or any(o in ("bind", "rbind") for o in m.get("options") or [])


def mirror_mounts(spec: dict[str, Any], dumped: dict[str, Any], stand_ins: Path) -> None:
    """Give ``spec`` the mount points of ``dumped`` (the spec a checkpoint was taken with):
    CRIU restores the dumped mount tree, and runc maps each bind mount of the new spec onto it
    by destination. A bind mount we have no source for gets an empty stand-in (file or
    directory as the destination suggests); other kinds are copied; ours that the dump lacked
    are dropped."""
    mine = {m.get("destination"): m for m in spec.get("mounts") or []}
    out = []
    for m in dumped.get("mounts") or []:
        dest = m.get("destination")
        if not dest:
            continue
        have = mine.get(dest)
        if _is_bind(m):
            if have is not None and _is_bind(have):
                out.append(have)
                continue
            src = stand_ins / dest.strip("/").replace("/", "_")
            if not src.exists():
                src.parent.mkdir(parents=True, exist_ok=True)
                if dest in FILE_MOUNTS or (os.path.isfile(str(m.get("source") or "")) and dest != "/dev/shm"):
                    src.touch()
                else:
                    src.mkdir()
            out.append({**m, "source": str(src)})
        else:
            out.append(have if have is not None and have.get("type") == m.get("type") else m)
    spec["mounts"] = out
    # masked paths are bind mounts of /dev/null (or read-only tmpfs) runc maps by path too
    linux, was = spec.setdefault("linux", {}), dumped.get("linux") or {}
    for key in ("maskedPaths", "readonlyPaths"):
        if key in was:
            linux[key] = list(was[key] or [])
    # with a cgroup namespace runc restores /sys/fs/cgroup as a real mount, without one as
    # external binds per controller: follow the dump (podman on cgroup v1 has none)
    dumped_cgroupns = any(ns.get("type") == "cgroup" for ns in was.get("namespaces") or [])
    namespaces = [ns for ns in linux.get("namespaces") or [] if ns.get("type") != "cgroup"]
    if dumped_cgroupns:
        namespaces.append({"type": "cgroup"})
    linux["namespaces"] = namespaces


def _mirroring(create: RuntimeCreateRequest, dumped: dict[str, Any], stand_ins: Path) -> RuntimeCreateRequest:
    import dataclasses

    inner = create.spec_amender

    def amend(container: Any, spec: dict[str, Any]) -> None:
        if inner is not None:
            inner(container, spec)
        mirror_mounts(spec, dumped, stand_ins)

    return dataclasses.replace(create, spec_amender=amend)


async def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    code, out, err = await monitor.run_command(argv, timeout)
    if code is None:
        return 1, f"timed out after {timeout:.0f}s"
    return code, (err or out).decode(errors="replace").strip()
