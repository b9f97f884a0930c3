"""The container service: the container state machine, composed from the drivers.

``create`` merges the image config into the request and prepares the read-write layer;
``start`` mounts the rootfs and volumes, makes the network namespace and endpoints (through
the network service), writes /etc/hosts, /etc/resolv.conf and /etc/hostname, and asks the
runtime driver to create and start the process (the ``dockyard_runtime_spec`` hook amends the
OCI spec on the way). One monitor task per running container waits for the exit, records it,
releases what start took, applies the restart policy and ``AutoRemove``. Healthchecks run as
tasks of their own (:mod:`dockyard_engine.health`).

Collaborators, asked by name through the kernel: the ``images`` service (resolving image
references; the store is read directly when it is not installed), the ``volumes`` service
(named and anonymous volumes; the ``volume`` driver directly when it is not installed), the
``networks`` service, the ``storage`` driver (rootfs layers keyed by container ID on the image's
top layer, whose key is the layer's chain ID) and the ``arch`` driver.

Live-restore: :meth:`start` (the service's) re-reads the runtime's state for every container
the store says is running: those still running keep running and get a monitor again; those
that exited meanwhile get their real exit code and their restart policy applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import re
import shutil
import signal as _signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.errors import Conflict, DockyardError, Forbidden, InvalidArgument, NotFound, NotModified
from dockyard.model import (
    ZERO_TIME,
    Container,
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    EndpointSettings,
    Health,
    Healthcheck,
    HealthLogEntry,
    Image,
    Mount,
    new_id,
    now_iso,
)
from dockyard.services import Service
from dockyard.services.containers import ContainerCreate, ExecSession, LogOptions, PathStat
from dockyard.specs.arch import AttachStream, ExecRequest, RuntimeCreateRequest, RuntimeDriver
from dockyard_engine import container_fs as cfs
from dockyard_engine import health as healthmod
from dockyard_engine import restart as policy

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_STOP_TIMEOUT = 10
#: files the runtime bind-mounts over (dockerd keeps them in a hidden init layer)
INIT_PATHS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv", "/dev", "/proc", "/sys",
              "/dev/shm", "/dev/pts", "/dev/console")
RUNNING_STATES = (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING)

_LEFT = ("admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly",
         "keen", "loving", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "serene",
         "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous")
_RIGHT = ("albattani", "babbage", "curie", "darwin", "euclid", "fermi", "galileo", "hopper", "hypatia",
          "joliot", "kepler", "lovelace", "mayer", "noether", "pasteur", "ritchie", "shannon", "tesla",
          "turing", "volta", "wozniak", "yonath", "zhukovsky")

SIGNALS = {s.name: int(s) for s in _signal.Signals}


def parse_signal(value: str | int | None, default: int = _signal.SIGKILL) -> int:
    """``KILL``, ``SIGKILL``, ``9`` -> 9 (dockerd accepts all three)."""
    if value is None or value == "":
        return default
    if isinstance(value, int):
        sig = value
    else:
        text = value.strip().upper()
        if text.isdigit():
            sig = int(text)
        else:
            sig = SIGNALS.get(text if text.startswith("SIG") else "SIG" + text, 0)
            if not sig:
                raise InvalidArgument(f"Invalid signal: {value}")
    if not 0 < sig < 65:
        raise InvalidArgument(f"Invalid signal: {value}")
    return sig


def random_name(taken: Callable[[str], bool]) -> str:
    for i in range(100):
        name = f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
        if i > 5:
            name += str(random.randint(0, 99))
        if not taken(name):
            return name
    return "c_" + new_id()[:12]



def merge_env(base: list[str], extra: list[str]) -> list[str]:
    order: list[str] = []
    values: dict[str, str] = {}
    for item in list(base) + list(extra):
        key = item.split("=", 1)[0]
        if key not in values:
            order.append(key)
        values[key] = item
    return [values[k] for k in order]








class _Watch:
    """Futures that ``wait`` conditions await for one container."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.next_exit: asyncio.Future[int] = loop.create_future()
        self.removed: asyncio.Future[int] = loop.create_future()

    def exited(self, code: int) -> None:
        if not self.next_exit.done():
            self.next_exit.set_result(code)
        self.next_exit = asyncio.get_running_loop().create_future()


class ContainerService(Service):
    name = "containers"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._locks: dict[str, asyncio.Lock] = {}
        self._watches: dict[str, _Watch] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._health: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._backoff: dict[str, policy.Backoff] = {}
        self._started_mono: dict[str, float] = {}
        self._pending_attach: dict[str, list[asyncio.Future[AttachStream]]] = {}
        self.execs: dict[str, ExecSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ================================================================== helpers
    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _watch(self, cid: str) -> _Watch:
        w = self._watches.get(cid)
        if w is None:
            w = self._watches[cid] = _Watch()
        return w

    def _spawn(self, coro: Any, name: str = "") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def _cdir_root(self) -> Path:
        return self.kernel.config.data_root / "containers"

    def _cdir(self, cid: str) -> Path:
        return self._cdir_root / cid

    @property
    def _netns_dir(self) -> Path:
        return self.kernel.config.exec_root / "netns"

    async def runtime(self, c: Container | None = None) -> RuntimeDriver:
        return await self.kernel.driver_ready("arch", (c.runtime if c and c.runtime else None))

    async def storage(self) -> Any:
        return await self.kernel.driver_ready("storage")

    def _put(self, c: Container) -> None:
        with self.store.transaction() as tx:
            tx.put(c)

    def _emit(self, c: Container, action: str, **extra: Any) -> None:
        attrs = dict(c.config.labels)
        attrs.update(image=c.config.image or c.image_id, name=c.name)
        attrs.update({k: str(v) for k, v in extra.items()})
        self.kernel.emit("container", action, c.id, **attrs)

    # ================================================================== lookups
    def get(self, ref: str) -> Container:
        """By full ID, name (with or without ``/``) or unique ID prefix; NotFound otherwise."""
        ref = (ref or "").strip()
        if not ref:
            raise NotFound("No such container: ")
        name = ref.lstrip("/")
        try:
            return self.store.get(Container, ref)
        except NotFound:
            pass
        c = self.store.by_name(Container, name)
        if c is not None:
            return c
        if re.fullmatch(r"[0-9a-f]+", ref):
            found = self.store.by_prefix(Container, ref)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return self.store.list(Container)

    # ------------------------------------------------------------------ images
    @property
    def images(self) -> Any:
        return self.kernel.service("images")

    @property
    def volumes(self) -> Any:
        return self.kernel.service("volumes")

    def image(self, ref: str) -> Image:
        """Resolve an image reference or ID (NotFound: ``No such image: <ref>``)."""
        return self.images.resolve(ref)

    # ================================================================== create
    async def create(self, req: ContainerCreate) -> Container:
        name = req.name.lstrip("/") if req.name else ""
        if req.name and not NAME_RE.match(req.name):
            raise InvalidArgument(f"Invalid container name ({req.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if name:
            self._check_name(name)
        else:
            name = random_name(lambda n: self.store.by_name(Container, n) is not None)
        hc = req.host_config
        policy.validate(hc.restart_policy, hc.auto_remove)
        if not req.config.image:
            raise InvalidArgument("No image was specified")
        img = self.image(req.config.image)
        cfg = self._merge(req, img)
        cid = new_id()
        if not cfg.hostname:
            cfg.hostname = os.uname().nodename if hc.network_mode == "host" else cid[:12]
        self._check_network_mode(hc.network_mode)
        rt = await self.runtime()
        c = Container(id=cid, name=name, image_id=img.id, config=cfg, host_config=hc,
                      runtime=rt.info.name, platform=img.os or "linux")
        c.networks = self._initial_networks(c, req.networks)
        c.mounts = self._plan_mounts(c)
        drv = await self.storage()
        c.driver = drv.info.name
        await drv.prepare(cid, self.images.top_layer_key(img))
        try:
            self._cdir(cid).mkdir(parents=True, exist_ok=True)
            c.log_path = str(self._cdir(cid) / "ctr.log")
            await self._create_volumes(c)
            self._put(c)
        except BaseException:
            with contextlib.suppress(Exception):
                await drv.remove(cid)
            shutil.rmtree(self._cdir(cid), ignore_errors=True)
            raise
        self._emit(c, "create")
        return c

    def _check_name(self, name: str) -> None:
        other = self.store.by_name(Container, name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                           f'"{other.id}". You have to remove (or rename) that container to be able to '
                           "reuse that name.")

    def _check_network_mode(self, mode: str) -> None:
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])

    def _merge(self, req: ContainerCreate, img: Image) -> ContainerConfig:
        cfg = dataclasses.replace(req.config)
        ic = img.config
        if req.entrypoint is not None:
            cfg.entrypoint = [] if req.entrypoint in ([], [""]) else list(req.entrypoint)
            cfg.cmd = list(req.cmd or [])
        else:
            cfg.entrypoint = list(ic.entrypoint)
            cfg.cmd = list(req.cmd) if req.cmd else list(ic.cmd)
        if not cfg.entrypoint and not cfg.cmd:
            raise InvalidArgument("No command specified")
        cfg.env = merge_env(ic.env, cfg.env)
        if not any(e.startswith("PATH=") for e in cfg.env):
            cfg.env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        cfg.working_dir = cfg.working_dir or ic.working_dir
        cfg.user = cfg.user or ic.user
        cfg.labels = {**ic.labels, **cfg.labels}
        cfg.exposed_ports = sorted(set(ic.exposed_ports) | set(cfg.exposed_ports)
                                   | set(req.host_config.port_bindings))
        cfg.volumes = sorted(set(ic.volumes) | set(cfg.volumes))
        cfg.stop_signal = cfg.stop_signal or ic.stop_signal
        if ic.healthcheck is not None:
            if cfg.healthcheck is None:
                cfg.healthcheck = dataclasses.replace(ic.healthcheck)
            else:
                mine, base = cfg.healthcheck, ic.healthcheck
                cfg.healthcheck = Healthcheck(test=mine.test or base.test,
                                              interval=mine.interval or base.interval,
                                              timeout=mine.timeout or base.timeout,
                                              start_period=mine.start_period or base.start_period,
                                              retries=mine.retries or base.retries)
        if cfg.healthcheck is not None and healthmod.command_of(cfg.healthcheck) is None:
            cfg.healthcheck = cfg.healthcheck if cfg.healthcheck.test else None
        return cfg

    def _initial_networks(self, c: Container, requested: dict[str, EndpointSettings]) -> dict[str, EndpointSettings]:
        mode = c.host_config.network_mode or "default"
        if mode.startswith("container:"):
            return {}
        if mode == "none" and self.kernel.has_service("networks") \
                and self.kernel.service("networks").none_is_bare_namespace():
            return {}  # no null driver installed: the container's own namespace is "none"
        primary = "bridge" if mode in ("default", "") else mode
        nets: dict[str, EndpointSettings] = {}
        if self.kernel.has_service("networks"):
            svc = self.kernel.service("networks")
            net = svc.get(primary)
            primary = net.name
        nets[primary] = requested.get(primary) or requested.get(mode) or requested.get("default") or EndpointSettings()
        for name, ep in requested.items():
            if name in (mode, "default", primary):
                continue
            if self.kernel.has_service("networks"):
                name = self.kernel.service("networks").get(name).name
            nets[name] = ep
        for ep in nets.values():
            ep.network_id = ""
            ep.endpoint_id = ""
        return nets

    def _plan_mounts(self, c: Container) -> list[Mount]:
        """Binds, named and anonymous volumes, tmpfs, in the order the runtime mounts them."""
        mounts: list[Mount] = []
        for bind in c.host_config.binds:
            parts = bind.split(":")
            if len(parts) < 2:
                # "-v /data" arrives as a config volume, but tolerate it here
                mounts.append(Mount(type="volume", destination=parts[0], name=""))
                continue
            src, dst = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else ""
            opts = [o for o in mode.split(",") if o]
            ro = "ro" in opts
            if not dst.startswith("/"):
                raise InvalidArgument(f"invalid mount config: destination {dst!r} is not absolute")
            if src.startswith("/"):
                mounts.append(Mount(type="bind", source=src, destination=dst, read_only=ro,
                                    options=[o for o in opts if o not in ("ro", "rw")]))
            else:
                mounts.append(Mount(type="volume", name=src, destination=dst, read_only=ro, driver="local"))
        for m in c.host_config.mounts:
            mounts.append(dataclasses.replace(m))
        for dst, opts in c.host_config.tmpfs.items():
            mounts.append(Mount(type="tmpfs", destination=dst, options=[o for o in opts.split(",") if o]))
        covered = {m.destination.rstrip("/") for m in mounts}
        for dst in c.config.volumes:
            if dst.rstrip("/") not in covered:
                mounts.append(Mount(type="volume", destination=dst, name="", driver="local"))
        for m in mounts:
            if m.type == "bind" and m.source and not os.path.exists(m.source):
                os.makedirs(m.source, exist_ok=True)  # dockerd creates a missing bind source
        return mounts

    # ------------------------------------------------------------------ volumes
    async def _create_volumes(self, c: Container) -> None:
        for m in c.mounts:
            if m.type != "volume":
                continue
            vol = await self.volumes.create(m.name, m.driver or "local", anonymous=not m.name)
            m.name, m.driver = vol.name, vol.driver

    async def _mount_volumes(self, c: Container) -> list[Mount]:
        resolved: list[Mount] = []
        done: list[Mount] = []
        try:
            for m in c.mounts:
                r = dataclasses.replace(m)
                if m.type == "volume":
                    r.source = await self.volumes.mount(m.name, c.id, destination=m.destination,
                                                        read_only=m.read_only)
                    m.source = r.source
                    done.append(m)
                resolved.append(r)
        except BaseException:
            await self._unmount_volumes(c, done)
            raise
        return resolved

    async def _unmount_volumes(self, c: Container, mounts: list[Mount] | None = None) -> None:
        for m in (mounts if mounts is not None else c.mounts):
            if m.type != "volume" or not m.name:
                continue
            try:
                await self.volumes.unmount(m.name, c.id)
            except NotFound:
                pass
            except Exception:  # noqa: BLE001
                log.exception("could not release volume %s of %s", m.name, c.name)

    async def _remove_anonymous_volumes(self, c: Container) -> None:
        """dockerd's ``rm -v``: the container's anonymous volumes go, named ones stay."""
        for m in c.mounts:
            if m.type != "volume" or not m.name:
                continue
            try:
                if not self.volumes.get(m.name).anonymous:
                    continue
                await self.volumes.remove(m.name)
            except (Conflict, NotFound):
                pass
            except Exception:  # noqa: BLE001
                log.exception("could not remove volume %s", m.name)

    # ================================================================== start
    async def start(self) -> None:  # noqa: D401 - Service.start: live-restore
        """Reconcile at daemon start (live-restore)."""
        self._cdir_root.mkdir(parents=True, exist_ok=True)
        rt = await self.runtime()
        rt_ids = set(await rt.list())
        for c in self.list():
            try:
                await self._restore(c, rt, rt_ids)
            except Exception:  # noqa: BLE001 - one bad container must not stop the daemon
                log.exception("could not restore container %s", c.name)

    async def _restore(self, c: Container, rt: RuntimeDriver, rt_ids: set[str]) -> None:
        if c.state.status is ContainerStatus.REMOVING:
            await self._finish_remove(c, volumes=False)
            return
        if c.state.status not in RUNNING_STATES:
            return
        st = await rt.state(c.id) if c.id in rt_ids else None
        if st is not None and st.status in ("running", "paused"):
            # still running: take the references start took, watch it again
            drv = await self.storage()
            await drv.mount(c.id)
            await self._mount_volumes(c)
            c.state.status = ContainerStatus.PAUSED if st.status == "paused" else ContainerStatus.RUNNING
            c.state.pid = st.pid
            self._put(c)
            self._started_mono[c.id] = asyncio.get_running_loop().time()
            self._monitors[c.id] = self._spawn(self._monitor(c.id, c.extra.get("run", 0)), f"monitor-{c.id[:12]}")
            self._start_health(c)
            return
        code = st.exit_code if st is not None and st.exit_code is not None else 255
        oom = bool(st.oom_killed) if st is not None else False
        finished = (st.finished_at if st is not None and st.finished_at else now_iso())
        await self._record_exit(c.id, c.extra.get("run", 0), code, oom, finished,
                                restart_at_boot=policy.restart_at_daemon_start(
                                    c.host_config.restart_policy, bool(c.extra.get("manual_stop"))))

    async def stop(self) -> None:  # Service.stop: leave containers running
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ start a container
    async def start_container(self, ref: str) -> Container:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.store.get(Container, c.id)
            if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                raise NotModified(f"container {c.id} is already started")
            if c.state.status is ContainerStatus.REMOVING:
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            c.extra["manual_stop"] = False
            task = self._restarts.pop(c.id, None)
            if task is not None:
                task.cancel()
            try:
                await self._start_locked(c)
            except DockyardError:
                if c.host_config.auto_remove:  # dockerd removes an AutoRemove container that failed to start
                    self._spawn(self._auto_remove(c.id), f"autoremove-{c.id[:12]}")
                raise
        return self.store.get(Container, c.id)

    async def _start_locked(self, c: Container) -> None:
        rt = await self.runtime(c)
        drv = await self.storage()
        run = int(c.extra.get("run", 0)) + 1
        c.extra["run"] = run
        if c.id in await rt.list():
            await rt.delete(c.id, force=True)  # the previous run's record (kept for its logs)
        rootfs = await drv.mount(c.id)
        netns = ""
        undo: list[Callable[[], Any]] = [lambda: drv.unmount(c.id)]
        try:
            mounts = await self._mount_volumes(c)
            undo.append(lambda: self._unmount_volumes(c))
            netns_path, netns = await self._setup_network(c)
            undo.append(lambda: self._teardown_network(c, netns))
            if c.host_config.network_mode.startswith("container:"):
                # dockerd: the hostname, /etc/hosts and /etc/resolv.conf of the namespace's owner
                other = self.get(c.host_config.network_mode.split(":", 1)[1])
                c.config.hostname, c.config.domainname = other.config.hostname, other.config.domainname
                files = await asyncio.to_thread(self._write_etc_files, c)
                files["hosts_path"] = str(self._cdir(other.id) / "hosts")
                files["resolv_conf_path"] = str(self._cdir(other.id) / "resolv.conf")
            else:
                files = await asyncio.to_thread(self._write_etc_files, c)
            log_path = "/dev/null" if c.host_config.log_config.type == "none" else c.log_path
            req = RuntimeCreateRequest(container=c, image=self._image_or_stub(c), rootfs=rootfs, mounts=mounts,
                                       netns_path=netns_path, log_path=log_path, spec_amender=self._amend_spec,
                                       **files)
            await rt.create(req)
            undo.append(lambda: rt.delete(c.id, force=True))
            for fut in self._pending_attach.pop(c.id, []):
                if not fut.done():
                    try:
                        fut.set_result(await rt.attach(c.id))
                    except Exception as exc:  # noqa: BLE001
                        fut.set_exception(exc)
            st = await rt.start(c.id)
        except BaseException as exc:
            for fn in reversed(undo):
                with contextlib.suppress(Exception):
                    await fn()
            text = str(exc)
            c.state.error = text
            c.state.status = ContainerStatus.CREATED if c.state.started_at == ZERO_TIME else ContainerStatus.EXITED
            # dockerd: a command that cannot be found is 127, one that cannot be run 126
            c.state.exit_code = 127 if ("not found" in text or "No such file" in text) else 126
            c.extra["netns"] = ""
            self._put(c)
            for fut in self._pending_attach.pop(c.id, []):
                if not fut.done():
                    fut.set_exception(Conflict(f"container {c.id} failed to start: {exc}"))
            if isinstance(exc, (NotFound, Conflict, InvalidArgument, NotModified)):
                raise
            raise InvalidArgument(_start_error(c, text)) from exc
        c.extra["netns"] = netns
        c.state = ContainerState(status=ContainerStatus.RUNNING, pid=st.pid, started_at=now_iso(),
                                 finished_at=ZERO_TIME, restart_count=c.state.restart_count,
                                 health=Health() if self._health_command(c) else None)
        self._put(c)
        self._started_mono[c.id] = asyncio.get_running_loop().time()
        self._emit(c, "start")
        self._monitors[c.id] = self._spawn(self._monitor(c.id, run), f"monitor-{c.id[:12]}")
        self._start_health(c)

    def _image_or_stub(self, c: Container) -> Image:
        try:
            return self.image(c.image_id)
        except NotFound:
            return Image(id=c.image_id)

    def _amend_spec(self, container: Container, spec: dict[str, Any]) -> None:
        self.kernel.hook.dockyard_runtime_spec(kernel=self.kernel, container=container, spec=spec)

    # ------------------------------------------------------------------ network
    async def _setup_network(self, c: Container) -> tuple[str | None, str]:
        """(netns path for the runtime, netns file we own or "")."""
        mode = c.host_config.network_mode or "default"
        if mode == "host":
            await self._connect_all(c, "")
            return "host", ""
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if other.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            path = other.extra.get("netns") or f"/proc/{other.state.pid}/ns/net"
            if other.host_config.network_mode == "host":
                return "host", ""
            return path, ""
        path = self._netns_dir / c.id
        await asyncio.to_thread(cfs.create_netns, path)
        try:
            await self._connect_all(c, str(path))
        except BaseException:
            await asyncio.to_thread(cfs.remove_netns, path)
            raise
        return str(path), str(path)

    async def _connect_all(self, c: Container, netns: str) -> None:
        if not self.kernel.has_service("networks"):
            return
        svc = self.kernel.service("networks")
        from dockyard.specs.network import PortMapping

        ports = []
        for port_proto, bindings in c.host_config.port_bindings.items():
            port, _, proto = port_proto.partition("/")
            for b in bindings or [PortMappingStub()]:
                hp = str(b.host_port or "")
                lo, _, hi = hp.partition("-")
                ports.append(PortMapping(container_port=int(port), protocol=proto or "tcp", host_ip=b.host_ip,
                                         host_port=int(lo or 0), host_port_end=int(hi or 0)))
        if c.host_config.publish_all_ports:
            bound = {(p.container_port, p.protocol) for p in ports}
            for ep_ in c.config.exposed_ports:
                port, _, proto = ep_.partition("/")
                if (int(port), proto or "tcp") not in bound:
                    ports.append(PortMapping(container_port=int(port), protocol=proto or "tcp"))
        connected: list[str] = []
        try:
            first = True
            for name, ep in list(c.networks.items()):
                settings = await svc.connect(c, name, netns, aliases=list(ep.aliases),
                                             ipv4=ep.ipv4_address or None, ports=ports if first else None,
                                             dns_servers=list(c.host_config.dns) or None,
                                             driver_opts=dict(ep.driver_opts) or None)
                first = False
                connected.append(name)
                c.networks[name] = settings
        except BaseException:
            for name in connected:
                with contextlib.suppress(Exception):
                    await svc.disconnect(c, name, force=True)
            raise

    async def _teardown_network(self, c: Container, netns: str) -> None:
        if self.kernel.has_service("networks"):
            try:
                # a namespace of our own is removed just below: drivers may leave its
                # interfaces to the kernel (see EndpointRequest.sandbox_closing)
                await self.kernel.service("networks").disconnect_all(c, sandbox_closing=bool(netns))
            except Exception:  # noqa: BLE001
                log.exception("could not disconnect %s", c.name)
        for ep in c.networks.values():
            ep.endpoint_id = ""
            ep.ipv4_address = ""
            ep.gateway = ""
            ep.ip_prefix_len = 0
            ep.mac_address = ""
        if netns:
            await asyncio.to_thread(cfs.remove_netns, Path(netns))

    def _write_etc_files(self, c: Container) -> dict[str, str]:
        d = self._cdir(c.id)
        d.mkdir(parents=True, exist_ok=True)
        host_mode = c.host_config.network_mode == "host"
        hostname = c.config.hostname
        (d / "hostname").write_text(hostname + "\n")
        if host_mode:
            shutil.copyfile("/etc/hosts", d / "hosts")
        else:
            lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                     "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
                     "ff02::2\tip6-allrouters"]
            for entry in c.host_config.extra_hosts:
                host, _, ip = entry.partition(":")
                lines.append(f"{ip}\t{host}")
            for ep in c.networks.values():
                if ep.ipv4_address:
                    full = f"{hostname}.{c.config.domainname}" if c.config.domainname else hostname
                    lines.append(f"{ep.ipv4_address}\t{full}" + ("" if full == hostname else f" {hostname}"))
                    break
            (d / "hosts").write_text("\n".join(lines) + "\n")
        (d / "resolv.conf").write_text(self._resolv_conf(c))
        return {"hosts_path": str(d / "hosts"), "resolv_conf_path": str(d / "resolv.conf"),
                "hostname_path": str(d / "hostname")}

    def _resolv_conf(self, c: Container) -> str:
        embedded = False
        svc = self.kernel.service("networks") if self.kernel.has_service("networks") else None
        if svc is not None and c.host_config.network_mode != "host":
            for name in c.networks:
                with contextlib.suppress(Exception):
                    embedded = embedded or svc.uses_embedded_dns(name)
        if embedded:
            servers = ["127.0.0.11"]
        elif c.host_config.dns:
            servers = list(c.host_config.dns)
        else:
            from dockyard_engine.networks import host_nameservers

            servers = [s for s in host_nameservers() if not s.startswith("127.")] or ["8.8.8.8", "8.8.4.4"]
        lines = [f"nameserver {s}" for s in servers]
        if c.host_config.dns_search:
            lines.append("search " + " ".join(c.host_config.dns_search))
        opts = list(c.host_config.dns_options) + (["ndots:0"] if embedded else [])
        if opts:
            lines.append("options " + " ".join(opts))
        return "\n".join(lines) + "\n"

    # ================================================================== exits
    async def _monitor(self, cid: str, run: int) -> None:
        try:
            c = self.store.get(Container, cid)
            rt = await self.runtime(c)
            st = await rt.wait(cid)
        except NotFound:
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("monitor of %s failed", cid[:12])
            return
        await self._record_exit(cid, run, st.exit_code if st.exit_code is not None else 255,
                                st.oom_killed, st.finished_at or now_iso())

    async def _record_exit(self, cid: str, run: int, code: int, oom: bool, finished_at: str,
                           restart_at_boot: bool | None = None) -> None:
        async with self._lock(cid):
            try:
                c = self.store.get(Container, cid)
            except NotFound:
                return
            if int(c.extra.get("run", 0)) != run or c.state.status not in RUNNING_STATES:
                return
            self._stop_health(cid)
            uptime = asyncio.get_running_loop().time() - self._started_mono.pop(cid, asyncio.get_running_loop().time())
            netns = c.extra.get("netns", "")
            c.extra["netns"] = ""
            c.state.status = ContainerStatus.EXITED
            c.state.exit_code = code
            c.state.oom_killed = oom
            c.state.pid = 0
            c.state.finished_at = finished_at
            manual = bool(c.extra.get("manual_stop"))
            if restart_at_boot is None:
                restart = policy.should_restart(c.host_config.restart_policy, code, c.state.restart_count, manual)
            else:
                restart = restart_at_boot and not c.host_config.auto_remove
            if restart:
                c.state.status = ContainerStatus.RESTARTING
            self._put(c)
            self._monitors.pop(cid, None)
            # waiters learn the exit at once; what start took is released after, still under the
            # lock (a start or remove that follows waits for it)
            if oom:
                self._emit(c, "oom")
            self._emit(c, "die", exitCode=code)
            self._watch(cid).exited(code)
            await self._release(c, netns)
            self._put(c)
        if restart and not self._closing:
            delay = 0.0 if restart_at_boot else self._backoff.setdefault(cid, policy.Backoff()).next(uptime)
            self._restarts[cid] = self._spawn(self._restart_later(cid, delay), f"restart-{cid[:12]}")
        elif c.host_config.auto_remove:
            self._spawn(self._auto_remove(cid), f"autoremove-{cid[:12]}")

    async def _release(self, c: Container, netns: str, remove_layer: bool = False) -> None:
        """Give back what start took (rootfs mount, volumes, endpoints and namespace), in
        parallel; with ``remove_layer`` the read-write layer goes too."""
        drv = await self.storage()

        async def rootfs() -> None:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)
            if remove_layer:  # the images service also collects layers nothing uses any more
                with contextlib.suppress(NotFound):
                    await self.images.remove_rootfs(c.id)

        await asyncio.gather(rootfs(), self._unmount_volumes(c), self._teardown_network(c, netns))

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock(cid):
            try:
                c = self.store.get(Container, cid)
            except NotFound:
                return
            if c.state.status is not ContainerStatus.RESTARTING or c.extra.get("manual_stop"):
                return
            self._restarts.pop(cid, None)
            c.state.restart_count += 1
            try:
                await self._start_locked(c)
            except Exception as exc:  # noqa: BLE001
                log.error("restart of %s failed: %s", c.name, exc)
                c = self.store.get(Container, cid)
                c.state.status = ContainerStatus.EXITED
                self._put(c)

    async def _auto_remove(self, cid: str) -> None:
        try:
            await self.remove(cid, force=True, volumes=True)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001
            log.exception("auto-remove of %s failed", cid[:12])

    # ================================================================== stop / kill / restart
    async def stop_container(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        task = self._restarts.pop(c.id, None)
        if c.state.status is ContainerStatus.RESTARTING:
            c.extra["manual_stop"] = True
            if task is not None:
                task.cancel()
            async with self._lock(c.id):
                c = self.store.get(Container, c.id)
                c.extra["manual_stop"] = True
                if c.state.status is ContainerStatus.RESTARTING:
                    c.state.status = ContainerStatus.EXITED
                self._put(c)
            self._emit(c, "stop")
            return
        if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise NotModified(f"container {c.id} is not running")
        async with self._lock(c.id):
            c = self.store.get(Container, c.id)
            c.extra["manual_stop"] = True
            self._put(c)
        if timeout is None or timeout < -1:
            timeout = c.config.stop_timeout if c.config.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
        signo = parse_signal(sig or c.config.stop_signal or None, _signal.SIGTERM)
        fut = self._watch(c.id).next_exit
        if not await self._signal(c, signo):
            await self._await_exit(c.id, fut, None)
        elif not await self._await_exit(c.id, fut, None if timeout == -1 else float(timeout)):
            fut = self._watch(c.id).next_exit if fut.done() else fut
            await self._signal(c, _signal.SIGKILL)
            await self._await_exit(c.id, fut, None)
        self._emit(self.store.get(Container, c.id), "stop")

    async def _await_exit(self, cid: str, fut: asyncio.Future[int], timeout: float | None) -> bool:
        try:
            c = self.store.get(Container, cid)
        except NotFound:
            return True
        if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                return False
        async with self._lock(cid):  # the exit's resources are released under this lock
            pass
        return True

    async def _signal(self, c: Container, signo: int) -> bool:
        """Send a signal; False when the container was no longer running."""
        rt = await self.runtime(c)
        try:
            await rt.kill(c.id, signo)
        except (Conflict, NotFound):
            return False
        self._emit(c, "kill", signal=signo)
        if c.state.status is ContainerStatus.PAUSED and signo == _signal.SIGKILL:
            with contextlib.suppress(Exception):
                await rt.resume(c.id)
        return True

    async def kill(self, ref: str, sig: str | None = None) -> None:
        c = self.get(ref)
        signo = parse_signal(sig, _signal.SIGKILL)
        if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if not await self._signal(c, signo):
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if signo == _signal.SIGKILL:
            fut = self._watch(c.id).next_exit
            await self._await_exit(c.id, fut, 10.0)

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING):
            with contextlib.suppress(NotModified):
                await self.stop_container(c.id, timeout)
        await self.start_container(c.id)
        self._emit(self.store.get(Container, c.id), "restart")

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.store.get(Container, c.id)
            if c.state.status is ContainerStatus.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status is not ContainerStatus.RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            await (await self.runtime(c)).pause(c.id)
            c.state.status = ContainerStatus.PAUSED
            self._put(c)
        self._emit(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.store.get(Container, c.id)
            if c.state.status is not ContainerStatus.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await (await self.runtime(c)).resume(c.id)
            c.state.status = ContainerStatus.RUNNING
            self._put(c)
        self._emit(c, "unpause")

    # ================================================================== remove
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING):
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            task = self._restarts.pop(c.id, None)
            if task is not None:
                task.cancel()
            if c.state.status is not ContainerStatus.RESTARTING:
                c.extra["manual_stop"] = True
                async with self._lock(c.id):
                    cur = self.store.get(Container, c.id)
                    cur.extra["manual_stop"] = True
                    self._put(cur)
                fut = self._watch(c.id).next_exit
                if await self._signal(c, _signal.SIGKILL):
                    await self._await_exit(c.id, fut, 15.0)
        async with self._lock(c.id):
            try:
                c = self.store.get(Container, c.id)
            except NotFound:
                return
            if c.state.status is ContainerStatus.REMOVING:
                raise Conflict(f"removal of container {c.id} is already in progress")
            if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) and not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            c.state.status = ContainerStatus.REMOVING
            self._put(c)
            await self._finish_remove(c, volumes)
        self._locks.pop(c.id, None)

    async def _finish_remove(self, c: Container, volumes: bool) -> None:
        self._stop_health(c.id)
        mon = self._monitors.pop(c.id, None)
        if mon is not None:
            mon.cancel()
        rt = await self.runtime(c)
        for eid in list(c.exec_ids):
            self.execs.pop(eid, None)

        async def runtime_record() -> None:
            with contextlib.suppress(NotFound):
                await rt.delete(c.id, force=True)

        # the layer is unmounted and removed once the runtime let go of the process
        await asyncio.gather(runtime_record(), self._teardown_network(c, c.extra.get("netns", "")))
        await self._release(c, "", remove_layer=True)
        shutil.rmtree(self._cdir(c.id), ignore_errors=True)
        with self.store.transaction() as tx:
            with contextlib.suppress(NotFound):
                tx.delete(Container, c.id)
        if volumes:
            await self._remove_anonymous_volumes(c)
        self._emit(c, "destroy")
        w = self._watches.pop(c.id, None)
        if w is not None:
            w.exited(c.state.exit_code)
            if not w.removed.done():
                w.removed.set_result(c.state.exit_code)

    async def prune(self, until: float | None = None, labels: list[str] | None = None) -> tuple[list[str], int]:
        removed: list[str] = []
        from dockyard_engine.networks import _label_match  # the same k[=v] / k!=v rules

        for c in self.list():
            if c.state.status not in (ContainerStatus.EXITED, ContainerStatus.CREATED, ContainerStatus.DEAD):
                continue
            if until is not None and _created_ts(c.created) >= until:
                continue
            if labels and not all(_label_match(c.config.labels, expr) for expr in labels):
                continue
            with contextlib.suppress(NotFound, Conflict):
                await self.remove(c.id, volumes=False)
                removed.append(c.id)
        if removed:
            self.kernel.emit("container", "prune", "", reclaimed="0")
        return removed, 0

    # ================================================================== wait
    async def wait(self, ref: str, condition: str = "not-running") -> int:
        c = self.get(ref)
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        w = self._watch(c.id)
        if condition == "removed":
            return await asyncio.shield(w.removed)
        if condition == "not-running":
            if c.state.status in (ContainerStatus.CREATED, ContainerStatus.EXITED, ContainerStatus.DEAD):
                return c.state.exit_code
        return await asyncio.shield(w.next_exit)

    # ================================================================== rename / update
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name or not NAME_RE.match(new_name):
            raise InvalidArgument(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        if new_name == c.name:
            raise Conflict("Renaming a container with the same name as its current name")
        async with self._lock(c.id):
            self._check_name(new_name)
            c = self.store.get(Container, c.id)
            old = c.name
            c.name = new_name
            self._put(c)
            try:  # DNS names follow (the network service's records)
                await self.kernel.service("networks").container_renamed(c)
            except Exception:  # noqa: BLE001 - the rename stands; the records are refreshed at restart
                log.exception("could not update the DNS names of %s", c.name)
        self._emit(c, "rename", oldName="/" + old)

    async def update(self, ref: str, resources: dict[str, Any], restart_policy: Any = None) -> list[str]:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.store.get(Container, c.id)
            if resources:
                for k in resources:
                    if not hasattr(c.host_config, k):
                        raise InvalidArgument(f"cannot update {k}")
                if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                    await (await self.runtime(c)).update(c.id, resources)
                for k, v in resources.items():
                    setattr(c.host_config, k, v)
            if restart_policy is not None:
                policy.validate(restart_policy, c.host_config.auto_remove)
                c.host_config.restart_policy = restart_policy
            self._put(c)
        self._emit(c, "update")
        return []

    # ================================================================== inspect helpers
    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        c = self.get(ref)
        if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise Conflict(f"Container {c.id} is not running")
        pids = await (await self.runtime(c)).top(c.id)
        return await asyncio.to_thread(cfs.top, pids, ps_args)

    async def stats(self, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.get(ref)
        if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            return _empty_stats(c)
        try:
            st = await (await self.runtime(c)).stats(c.id)
        except (NotFound, Conflict):
            return _empty_stats(c)
        st["name"] = "/" + c.name
        st["id"] = c.id
        st.setdefault("networks", await asyncio.to_thread(_net_stats, c.state.pid))
        if previous is not None:
            st["precpu_stats"] = previous.get("cpu_stats", st.get("precpu_stats"))
            st["preread"] = previous.get("read", st.get("preread"))
        return st

    async def stats_stream(self, ref: str, stream: bool = True, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        prev = await self.stats(ref)
        if not stream:
            await asyncio.sleep(0.2)
            yield await self.stats(ref, prev)
            return
        yield prev
        while True:
            await asyncio.sleep(interval)
            cur = await self.stats(ref, prev)
            yield cur
            prev = cur

    # ================================================================== logs
    @staticmethod
    def check_logs_readable(c: Container) -> None:
        """InvalidArgument for a log driver that keeps nothing to read (``--log-driver none``)."""
        if c.host_config.log_config.type not in ("json-file", "local", "k8s-file", ""):
            raise InvalidArgument(f"configured logging driver does not support reading: "
                                  f"{c.host_config.log_config.type}")

    async def logs(self, ref: str, opts: LogOptions) -> AsyncIterator[tuple[str, bytes]]:
        """(stream, bytes) chunks, json-file semantics; ``timestamps`` prefixes each record."""
        c = self.get(ref)
        self.check_logs_readable(c)
        rt = await self.runtime(c)
        follow = opts.follow and c.state.status in RUNNING_STATES
        since_ns = int(opts.since * 1e9) if opts.since else 0
        until_ns = int(opts.until * 1e9) if opts.until else 0

        def wanted(rec: Any) -> bool:
            return (rec.stream == "stdout" and opts.stdout) or (rec.stream == "stderr" and opts.stderr)

        def render(rec: Any, ts: str) -> tuple[str, bytes]:
            return rec.stream, (ts.encode() + b" " + rec.data) if opts.timestamps else rec.data

        last_ns, at_last = -1, 0  # the newest record seen, and how many share its time
        records: list[tuple[Any, str]] = []
        try:
            async for rec in rt.logs(c.id, follow=False):
                ns, ts = cfs.parse_ts(rec.timestamp)
                if ns > last_ns:
                    last_ns, at_last = ns, 1
                elif ns == last_ns:
                    at_last += 1
                if (since_ns and ns < since_ns) or (until_ns and ns > until_ns) or not wanted(rec):
                    continue
                records.append((rec, ts))
        except NotFound:
            follow = False
        if opts.tail is not None and opts.tail >= 0:
            records = records[-opts.tail:] if opts.tail else []
        for rec, ts in records:
            yield render(rec, ts)
        if not follow:
            return
        # follow: skip what the first pass saw (by time, so a log truncated by max-size and
        # started over is still followed), then stream the new records
        try:
            seen_at_last = 0
            async for rec in rt.logs(c.id, follow=True):
                ns, ts = cfs.parse_ts(rec.timestamp)
                if ns < last_ns:
                    continue
                if ns == last_ns and seen_at_last < at_last:
                    seen_at_last += 1
                    continue
                if until_ns and ns > until_ns:
                    return
                if (since_ns and ns < since_ns) or not wanted(rec):
                    continue
                yield render(rec, ts)
        except NotFound:
            return

    # ================================================================== attach
    async def attach(self, ref: str) -> tuple[Container, AttachStream | asyncio.Future[AttachStream]]:
        """Connect to a container's stdio. For a created (or restarting) container the stream
        is handed over at its next start (a future); for a running one at once."""
        c = self.get(ref)
        self._emit(c, "attach")
        if c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            rt = await self.runtime(c)
            return c, await rt.attach(c.id)
        if c.state.status is ContainerStatus.REMOVING:
            raise Conflict(f"container {c.id} is being removed")
        fut: asyncio.Future[AttachStream] = asyncio.get_running_loop().create_future()
        self._pending_attach.setdefault(c.id, []).append(fut)
        return c, fut

    def cancel_attach(self, cid: str, fut: asyncio.Future[AttachStream]) -> None:
        lst = self._pending_attach.get(cid, [])
        if fut in lst:
            lst.remove(fut)
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            fut.result().close()
        else:
            fut.cancel()

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise Conflict(f"Container {c.id} is not running")
        await (await self.runtime(c)).resize(c.id, height, width)
        self._emit(c, "resize", height=height, width=width)

    # ================================================================== exec
    def exec_create(self, ref: str, cmd: list[str], *, tty: bool = False, attach_stdin: bool = False,
                    attach_stdout: bool = True, attach_stderr: bool = True, env: list[str] | None = None,
                    user: str = "", working_dir: str = "", privileged: bool = False, detach_keys: str = "",
                    internal: bool = False) -> ExecSession:
        c = self.get(ref)
        if c.state.status is ContainerStatus.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        sess = ExecSession(id=new_id(), container_id=c.id, cmd=list(cmd), tty=tty, attach_stdin=attach_stdin,
                           attach_stdout=attach_stdout, attach_stderr=attach_stderr, env=list(env or []),
                           user=user, working_dir=working_dir, privileged=privileged, detach_keys=detach_keys,
                           internal=internal)
        self.execs[sess.id] = sess
        if not internal:
            c.exec_ids.append(sess.id)
            self._put(c)
            self._emit(c, "exec_create: " + " ".join(cmd), execID=sess.id)
        return sess

    def exec_get(self, exec_id: str) -> ExecSession:
        sess = self.execs.get(exec_id)
        if sess is None:
            for s in self.execs.values():
                if s.id.startswith(exec_id) and len(exec_id) >= 4:
                    return s
            raise NotFound(f"No such exec instance: {exec_id}")
        return sess

    async def exec_start(self, exec_id: str, attach: bool = True) -> tuple[ExecSession, AttachStream | None]:
        """Start the exec'd process; returns the attach stream when ``attach``. The exit is
        recorded by a task (``exec_finished``), which the API calls after draining output."""
        sess = self.exec_get(exec_id)
        if sess.started:
            raise Conflict(f"Exec {exec_id} has already been started" if sess.running
                           else f"cannot start exec {exec_id}: it has already run")
        c = self.store.get(Container, sess.container_id)
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        sess.started = True
        rt = await self.runtime(c)
        env = list(sess.env)
        st = await rt.exec(ExecRequest(container_id=c.id, exec_id=sess.id, cmd=sess.cmd, env=env, user=sess.user,
                                       working_dir=sess.working_dir, tty=sess.tty, privileged=sess.privileged,
                                       stdin=sess.attach_stdin))
        sess.running = st.status == "running"
        sess.pid = st.pid
        if not sess.internal:
            self._emit(c, "exec_start: " + " ".join(sess.cmd), execID=sess.id)
        if st.status == "stopped":
            # dockerd: an exec that cannot start reports 126, whatever the runtime's reason
            sess.error = st.error
            await self._exec_done(sess, 126 if st.error else (st.exit_code if st.exit_code is not None else 126))
            return sess, None
        stream = await rt.attach(c.id, exec_id=sess.id) if attach else None
        self._spawn(self._exec_wait(sess), f"exec-{sess.id[:12]}")
        return sess, stream

    async def _exec_wait(self, sess: ExecSession) -> None:
        try:
            c = self.store.get(Container, sess.container_id)
            rt = await self.runtime(c)
            st = await rt.exec_wait(sess.id)
            code = st.exit_code if st.exit_code is not None else 126
        except NotFound:
            code = 137
        await self._exec_done(sess, code)

    async def _exec_done(self, sess: ExecSession, code: int) -> None:
        if sess.done.is_set():
            return
        sess.exit_code = code
        sess.running = False
        sess.done.set()
        try:
            c = self.store.get(Container, sess.container_id)
        except NotFound:
            return
        if not sess.internal:
            self._emit(c, "exec_die", execID=sess.id, exitCode=code)
        if sess.internal:
            with contextlib.suppress(Exception):
                await (await self.runtime(c)).exec_delete(sess.id)
            self.execs.pop(sess.id, None)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        sess = self.exec_get(exec_id)
        if not sess.running:
            raise Conflict(f"Exec {exec_id} is not running")
        c = self.store.get(Container, sess.container_id)
        await (await self.runtime(c)).resize(c.id, height, width, exec_id=sess.id)

    async def exec_run(self, ref: str, cmd: list[str], timeout: float | None = None,
                       internal: bool = False) -> tuple[int, str]:
        """Run a command to completion; (exit code, combined output). TimeoutError kills it."""
        sess = self.exec_create(ref, cmd, internal=internal)
        sess_, stream = await self.exec_start(sess.id, attach=True)
        out: list[bytes] = []
        if sess.error:
            return sess.exit_code or 126, sess.error

        async def drain() -> None:
            assert stream is not None
            while (item := await stream.read()) is not None:
                out.append(item[1])
            await sess.done.wait()

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            c = self.store.get(Container, sess.container_id)
            with contextlib.suppress(Exception):
                await (await self.runtime(c)).exec_delete(sess.id)
            await self._exec_done(sess, 137)
            raise
        finally:
            if stream is not None:
                stream.close()
        return sess.exit_code if sess.exit_code is not None else 126, b"".join(out).decode(errors="replace")

    # ================================================================== health
    def _health_command(self, c: Container) -> list[str] | None:
        return healthmod.command_of(c.config.healthcheck) if c.config.healthcheck else None

    def _start_health(self, c: Container) -> None:
        if self._health_command(c) is None or c.config.healthcheck is None:
            return
        self._stop_health(c.id)
        started = self._started_mono.get(c.id, asyncio.get_running_loop().time())
        self._health[c.id] = self._spawn(healthmod.run_checks(self, c.id, c.config.healthcheck, started),
                                         f"health-{c.id[:12]}")

    def _stop_health(self, cid: str) -> None:
        task = self._health.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def record_health(self, cid: str, entry: HealthLogEntry, ok: bool, retries: int, in_start_period: bool) -> None:
        try:
            c = self.store.get(Container, cid)
        except NotFound:
            return
        if c.state.status is not ContainerStatus.RUNNING:
            return
        health = c.state.health or Health()
        before = health.status
        healthmod.apply_result(health, entry, ok, retries, in_start_period)
        c.state.health = health
        self._put(c)
        if health.status != before:
            self._emit(c, f"health_status: {health.status}")

    # ================================================================== filesystem
    @contextlib.asynccontextmanager
    async def rootfs(self, ref: str) -> AsyncIterator[tuple[Container, str]]:
        """The container's root filesystem, mounted for the duration (archive, export)."""
        c = self.get(ref)
        drv = await self.storage()
        path = await drv.mount(c.id)
        try:
            yield c, path
        finally:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)

    def volume_paths(self, c: Container) -> list[tuple[str, str, bool]]:
        """(destination, host source, read-only) of mounts with a host source, for ``docker cp``."""
        out = []
        for m in c.mounts:
            src = m.source
            if m.type == "volume" and not src:
                with contextlib.suppress(NotFound):
                    src = self.volumes.get(m.name).mountpoint
            if src and m.type in ("bind", "volume"):
                out.append((m.destination, src, m.read_only))
        # the files the runtime binds over /etc (what the container sees there)
        for name in ("hostname", "hosts", "resolv.conf"):
            path = self._cdir(c.id) / name
            if path.exists():
                out.append((f"/etc/{name}", str(path), False))
        return sorted(out, key=lambda t: len(t[0]), reverse=True)

    def _root_for(self, c: Container, rootfs: str, path: str) -> tuple[str, str, bool]:
        """(root on the host, path inside it, read-only) of a container path for ``docker cp``:
        inside the source of the bind or volume mounted there, else inside the rootfs."""
        norm = "/" + path.strip("/")
        for dest, source, ro in self.volume_paths(c):
            d = dest.rstrip("/") or "/"
            if norm == d or norm.startswith(d + "/"):
                rest = norm[len(d):] or "/"
                return source, rest + ("/" if path.endswith("/") and rest != "/" else ""), ro
        return rootfs, path, False

    async def archive_stat(self, ref: str, path: str) -> PathStat:
        """``HEAD /containers/{id}/archive``: what ``path`` is in the container."""
        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, _ro = self._root_for(c, rootfs, path)
            _host, st = await asyncio.to_thread(cfs.path_stat, root, inner, ref)
        return _path_stat(st, path)

    async def archive_get(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        """``docker cp CONTAINER:path -``: ``path`` as a tar written to ``out`` (in a thread)."""
        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, _ro = self._root_for(c, rootfs, path)
            host, st = await asyncio.to_thread(cfs.path_stat, root, inner, ref)
            if path.endswith("/.") or path.endswith("/"):
                host = cfs.resolve_in(root, inner)
            arcname = os.path.basename(path.rstrip("/").removesuffix("/.")) or "."
            if path.endswith("/."):
                arcname = os.path.basename(path[:-2].rstrip("/")) or "."
            await asyncio.to_thread(cfs.write_tar, host, arcname, out)
        return _path_stat(st, path)

    async def archive_put(self, ref: str, path: str, tar_path: str) -> None:
        """``docker cp - CONTAINER:path``: extract a tar into the directory ``path`` (hostile
        members refused by :func:`dockyard.tarsafe.extract`; read-only targets refused)."""
        from dockyard.tarsafe import extract

        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, ro = self._root_for(c, rootfs, path)
            if ro or c.host_config.read_only_rootfs and root == rootfs:
                raise Forbidden("container rootfs is marked read-only" if root == rootfs
                                else f"mounted volume is marked read-only: {path}")
            target = cfs.resolve_in(root, inner)
            if not target.exists():
                raise NotFound(f"Could not find the file {path} in container {ref}")
            if not target.is_dir():
                raise InvalidArgument("extraction point is not a directory")
            await asyncio.to_thread(extract, tar_path, str(target))

    async def changes(self, ref: str) -> list[dict[str, Any]]:
        """``docker diff``: paths of the read-write layer, Kind 0 modified, 1 added, 2 deleted
        (decided against the image's layers)."""
        import tarfile
        import tempfile

        c = self.get(ref)
        drv = await self.storage()
        try:
            key = self.images.top_layer_key(self.images.get(c.image_id))
        except NotFound:
            key = None
        fd, tmp = tempfile.mkstemp(prefix="dockyard-diff-")
        os.close(fd)
        lower = await drv.mount(key) if key else None
        try:
            await drv.diff(c.id, tmp)

            def walk() -> list[dict[str, Any]]:
                out: dict[str, int] = {}
                with tarfile.open(tmp) as tf:
                    for m in tf:
                        name = m.name.strip("/").removeprefix("./")
                        parent, _, base = name.rpartition("/")
                        if base == ".wh..wh..opq":
                            continue
                        if base.startswith(".wh."):
                            out["/" + (f"{parent}/" if parent else "") + base[4:]] = 2
                            continue
                        exists = lower is not None and os.path.lexists(os.path.join(lower, name))
                        out["/" + name] = 0 if exists else 1
                # mount points the runtime made for its own files are not the container's changes
                for path in INIT_PATHS:
                    if out.get(path) == 1:
                        del out[path]
                return [{"Path": p, "Kind": k} for p, k in sorted(out.items())]

            return await asyncio.to_thread(walk)
        finally:
            if key:
                with contextlib.suppress(Exception):
                    await drv.unmount(key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def export(self, ref: str, out_path: str) -> None:
        async with self.rootfs(ref) as (c, root):
            await asyncio.to_thread(_tar_tree, root, out_path)
        self._emit(c, "export")

    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: list[str] | None = None, pause: bool = True, config: dict[str, Any] | None = None) -> str:
        """Commit the container's changes as a new image (the images service's commit)."""
        c = self.get(ref)
        paused = False
        if pause and c.state.status is ContainerStatus.RUNNING:
            with contextlib.suppress(Exception):
                await (await self.runtime(c)).pause(c.id)
                paused = True
        try:
            image = await self.images.commit(container=c, repo=repo, tag=tag, comment=comment, author=author,
                                             changes=list(changes or []), config=config)
        finally:
            if paused:
                with contextlib.suppress(Exception):
                    await (await self.runtime(c)).resume(c.id)
        self._emit(c, "commit", comment=comment)
        return image.id

    # ------------------------------------------------------------------ facts
    def counts(self) -> dict[str, int]:
        out = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.list():
            if c.state.status is ContainerStatus.RUNNING:
                out["running"] += 1
            elif c.state.status is ContainerStatus.PAUSED:
                out["paused"] += 1
            else:
                out["stopped"] += 1
        return out


class PortMappingStub:
    host_ip = ""
    host_port = ""


def _path_stat(st: dict[str, Any], path: str) -> PathStat:
    return PathStat(name=os.path.basename(path.rstrip("/")) or "/", size=st["size"], mode=st["mode"],
                    mtime=st["mtime"], link_target=st["linkTarget"])


def _start_error(c: Container, text: str) -> str:
    """dockerd's wording for a process that cannot start (the docker CLI maps "executable file
    not found" / "no such file or directory" to exit 127, "permission denied" to 126)."""
    text = text.replace("No such file or directory", "no such file or directory")
    text = text.replace("Permission denied", "permission denied")
    m = re.search(r"executable file `([^`]*)` not found in \$PATH", text)
    if m:
        text = f'exec: "{m.group(1)}": executable file not found in $PATH'
    return f"failed to create task for container {c.id[:12]}: OCI runtime create failed: {text}: unknown"


def _created_ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _empty_stats(c: Container) -> dict[str, Any]:
    zero = "0001-01-01T00:00:00Z"
    return {"id": c.id, "name": "/" + c.name, "read": zero, "preread": zero, "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                          "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                             "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory_stats": {}}


def _net_stats(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _tar_tree(root: str, out_path: str) -> None:
    import tarfile

    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(os.listdir(root)):
            tf.add(os.path.join(root, entry), arcname=entry, recursive=True)
