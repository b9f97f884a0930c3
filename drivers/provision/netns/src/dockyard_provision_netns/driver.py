"""The ``netns`` provision driver: a test host is a network namespace running its own dockyardd.

A host (see the README for the picture) is

* a named network namespace ``<tag>m-<name>``, joined to the driver's bridge ``<tag>mbr`` by a
  veth pair (``<tag>m<key>`` on the machine, ``eth0`` inside) with an address of the driver's
  range (option ``subnet``, default ``10.247.0.0/24``; the bridge has the first address);
* an engine, ``python -m dockyard.daemon``, started inside that namespace with its own data
  root, exec root, unix socket, cgroup parent and a TCP listener with mutual TLS on
  ``ADDR:2376``; its containers' namespaces are made by it, inside the host, and their bridge
  lives in the host's namespace;
* a cgroup ``<tag>m-<name>`` holding the engine and everything it starts, so stopping or
  removing a host kills all of it in one go.

The driver's record of each host (``<data_dir>/hosts/<id>.json``) is written before anything is
made and lists every name and path, so ``remove`` cleans a half-created or broken host;
``Host.extra`` carries the same names for a caller that outlives the record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.config import Config
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.jsonfile import RecordDir
from dockyard.model import Host
from dockyard.mounts import read_mounts, umount
from dockyard.specs import DriverInfo, Provisioner
from dockyard.specs.provision import EngineTLS, HostRequest, HostState
from dockyard_provision_netns import cgroups, engine, names, net

DEFAULT_SUBNET = "10.247.0.0/24"
#: Longest driver run directory: a host's exec root is ``<run_dir>/<key>``, and the engine's
#: deepest unix socket (``arch/linux/a/<12>/attach``) must stay within sun_path's 108 bytes.
MAX_RUN_DIR = 60
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _merge_config_file(flags: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Take ``--config-file PATH`` (or ``--config-file=PATH``) out of an engine's flags and
    return the flags left and that file's settings (empty when none was given)."""
    rest: list[str] = []
    path = ""
    it = iter(flags)
    for flag in it:
        if flag == "--config-file":
            path = next(it, "")
        elif flag.startswith("--config-file="):
            path = flag.split("=", 1)[1]
        else:
            rest.append(flag)
    if not path:
        return rest, {}
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"engine option --config-file {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidArgument(f"engine option --config-file {path}: not a JSON object")
    opts = config.get("arch-opts", [])
    if not isinstance(opts, list):
        raise InvalidArgument(f"engine option --config-file {path}: arch-opts is not a list")
    return rest, config


@dataclass
class Record:
    """What the driver made (or will make) for one host: enough to find and remove it all."""

    id: str
    name: str
    key: str
    address: str  # CIDR, e.g. 10.247.0.2/24
    netns: str
    veth: str
    cgroup: str
    root: str  # <data_dir>/<key>: the engine's data root (data/), TLS files, config, log
    run: str  # <run_dir>/<key>: the engine's exec root and socket
    state: str = "prepared"  # prepared | running | stopped (what was asked for last)
    pid: int = 0
    pid_start: int = 0
    exit_status: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to the engine's environment

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def socket(self) -> Path:
        return Path(self.run) / "dockyard.sock"

    @property
    def log(self) -> Path:
        return Path(self.root) / "daemon.log"

    @property
    def tls_dir(self) -> Path:
        return Path(self.root) / "tls"

    @property
    def engine_owner(self) -> str:
        """The owner token the host's engine names its kernel objects with (its data root's):
        a container cgroup outside the host's, an nft table, a mount. A leak check that records
        it sees what the engine left on the machine."""
        return Config(values={"data-root": str(Path(self.root) / "data")}).owner if self.root else ""

    def extra(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("netns", "veth", "cgroup", "address", "root", "run", "pid",
                                              "pid_start")} | {"socket": str(self.socket), "key": self.key,
                                                               "engine_owner": self.engine_owner}


class NetnsProvisioner(Provisioner):
    """Local test hosts: network namespaces with their own dockyardd (see the module doc)."""

    info = DriverInfo(
        name="netns", kind="provision",
        description="local test hosts: a network namespace running its own dockyardd, on a private bridge",
        capabilities=frozenset({"engine", "tls-rotation"}),
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        opts = context.options
        try:
            self.subnet = ipaddress.IPv4Network(str(opts.get("subnet") or DEFAULT_SUBNET))
        except ValueError as exc:
            raise InvalidArgument(f"provision netns: subnet {opts.get('subnet')!r} is not an IPv4 "
                                  f"network: {exc}") from None
        try:
            self.start_timeout = float(opts.get("start-timeout") or START_TIMEOUT)
        except ValueError:
            raise InvalidArgument(f"provision netns: start-timeout {opts.get('start-timeout')!r} is not "
                                  "a number of seconds") from None
        self.bridge = names.bridge(context.owner)
        self.gateway = ipaddress.IPv4Interface(f"{next(self.subnet.hosts(), self.subnet.network_address)}/"
                                               f"{self.subnet.prefixlen}")
        self._lock = asyncio.Lock()  # records: names, keys and addresses handed out
        self._bridge_lock = asyncio.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # host id -> our child engine
        self._cg: cgroups.Hierarchies | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def _hosts_dir(self) -> Path:
        return self.context.data_dir / "hosts"

    async def setup(self) -> None:
        unknown = set(self.context.options) - {"subnet", "start-timeout"}
        if unknown:
            raise InvalidArgument(f"provision netns: unknown option(s) {', '.join(sorted(unknown))}; "
                                  "known: subnet, start-timeout")
        if self.subnet.prefixlen > 29:
            raise InvalidArgument(f"provision netns: subnet {self.subnet} is too small (at most /29)")
        if len(str(self.context.run_dir)) > MAX_RUN_DIR:
            raise InvalidArgument(f"provision netns: the run directory {self.context.run_dir} is longer than "
                                  f"{MAX_RUN_DIR} characters; a host's unix sockets would not fit in "
                                  "sun_path (choose a shorter exec root)")
        clash = await asyncio.to_thread(net.overlaps, self.subnet, self.bridge)
        if clash:
            raise InvalidArgument(
                f"provision netns: subnet {self.subnet} overlaps what this machine already routes "
                f"({'; '.join(clash)}); choose a free private range with the driver option "
                f"subnet=... (provision-opts)")
        # The bridge claims the range: a second driver (another owner) asking for an
        # overlapping one is refused by the check above from now on.
        async with self._bridge_lock:
            await asyncio.to_thread(net.ensure_bridge, self.bridge, self.gateway)
        self._cg = await asyncio.to_thread(cgroups.hierarchies)
        await asyncio.to_thread(self._hosts_dir.mkdir, parents=True, exist_ok=True)
        await self._reconcile()

    async def close(self) -> None:
        """Hosts keep running (like containers at daemon shutdown). The bridge goes when no host
        is left, so a driver that removed its hosts leaves nothing on the machine."""
        if not await asyncio.to_thread(self._records):
            async with self._bridge_lock:
                await asyncio.to_thread(net.delete_link, self.bridge)

    async def _reconcile(self) -> None:
        """Remove namespaces, veths and cgroups named after this driver that no record explains
        (records are written before anything is made, so this is what a record deleted by hand
        or a data directory wiped under running hosts leaves)."""
        records = await asyncio.to_thread(self._records)
        owner = self.context.owner
        known_ns = {r.netns for r in records}
        known_veth = {r.veth for r in records}
        known_cg = {r.cgroup for r in records}
        for ns in await asyncio.to_thread(net.list_netns):
            if names.is_host_object(owner, ns) and ns not in known_ns:
                await asyncio.to_thread(net.remove_netns, ns)
        for link in await asyncio.to_thread(net.link_names):
            if names.is_veth(owner, link) and link not in known_veth:
                await asyncio.to_thread(net.delete_link, link)
        assert self._cg is not None
        for cg in await asyncio.to_thread(cgroups.names, self._cg, names.prefix(owner) + "-"):
            if cg not in known_cg:
                await asyncio.to_thread(cgroups.kill_all, self._cg, cg)
                await asyncio.to_thread(cgroups.remove, self._cg, cg)

    def status(self) -> list[tuple[str, str]]:
        count = self._hosts().count()
        return [("Subnet", str(self.subnet)), ("Bridge", self.bridge), ("Hosts", str(count))]

    # ------------------------------------------------------------------ records
    def _hosts(self) -> RecordDir[Record]:
        return RecordDir(self._hosts_dir, Record)

    def _records(self) -> list[Record]:
        return self._hosts().all()

    def _load(self, host: Host) -> Record | None:
        return self._hosts().load(host.id)

    def _save(self, rec: Record) -> None:
        self._hosts().save(rec)

    def _record_from_host(self, host: Host) -> Record | None:
        """A host whose record is gone but whose ``extra`` names what was made (remove only)."""
        x = host.extra or {}
        if not x.get("netns") or not names.is_host_object(self.context.owner, str(x["netns"])):
            return None
        try:
            return Record(id=host.id, name=host.name, key=str(x.get("key", "")), address=str(x.get("address", "")),
                          netns=str(x["netns"]), veth=str(x.get("veth", "")), cgroup=str(x.get("cgroup", "")),
                          root=str(x.get("root", "")), run=str(x.get("run", "")), state="running",
                          pid=int(x.get("pid") or 0), pid_start=int(x.get("pid_start") or 0))
        except (TypeError, ValueError):
            return None

    def _host(self, rec: Record, state: str = "none") -> Host:
        return Host(id=rec.id, name=rec.name, driver=self.info.name, state=state,
                    engine_url=f"tcp://{rec.ip}:{engine.ENGINE_PORT}", addresses=[rec.ip],
                    labels=dict(rec.labels), extra=rec.extra())

    # ------------------------------------------------------------------ Provisioner
    async def prepare(self, request: HostRequest) -> Host:
        if not names.HOST_NAME.match(request.name or ""):
            raise InvalidArgument(f"invalid host name {request.name!r}: letters, digits, '.' and '-', "
                                  "starting with a letter or digit, at most 40 characters")
        if request.options:
            raise InvalidArgument(f"the netns driver takes no per-host options (got {sorted(request.options)})")
        owner = self.context.owner
        async with self._lock:
            records = await asyncio.to_thread(self._records)
            if any(r.name == request.name for r in records):
                raise Conflict(f"a netns host named {request.name} exists")
            taken = {r.ip for r in records} | {str(self.gateway.ip)}
            address = next((a for a in self.subnet.hosts() if str(a) not in taken), None)
            if address is None:
                raise Unavailable(f"no address left in {self.subnet} for another netns host")
            keys = {r.key for r in records}
            host_id = uuid.uuid4().hex
            while host_id[:names.KEY_LEN] in keys:
                host_id = uuid.uuid4().hex
            key = host_id[:names.KEY_LEN]
            rec = Record(id=host_id, name=request.name, key=key, address=f"{address}/{self.subnet.prefixlen}",
                         netns=names.netns(owner, request.name), veth=names.veth(owner, key),
                         cgroup=names.cgroup(owner, request.name),
                         root=str(self.context.data_dir / key), run=str(self.context.run_dir / key),
                         labels=dict(request.labels), env={str(k): str(v) for k, v in request.engine_env.items()})
            await asyncio.to_thread(self._save, rec)
        return self._host(rec)

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"netns host {host.name} ({host.id}) was not prepared")
        if rec.state != "prepared":
            raise Conflict(f"netns host {host.name} is already created ({rec.state})")
        try:
            material = [("ca.pem", tls.pem("ca_cert"), 0o644), ("server-cert.pem", tls.pem("cert"), 0o644),
                        ("server-key.pem", tls.pem("key"), 0o600)]
        except OSError as exc:
            raise InvalidArgument(f"cannot read the engine's TLS material: {exc}") from exc
        rec.state = "running"  # asked for; from now on a failure shows as error, with its reason
        await asyncio.to_thread(self._save, rec)
        await asyncio.to_thread(self._make_dirs, rec, material, list(engine_flags))
        async with self._bridge_lock:
            await asyncio.to_thread(net.ensure_bridge, self.bridge, self.gateway)
        await asyncio.to_thread(net.create_netns, rec.netns)
        await asyncio.to_thread(net.connect_host, rec.netns, rec.veth, self.bridge, ipaddress.IPv4Interface(rec.address))
        await self._start_engine(rec)
        return self._host(rec, "running")

    def _make_dirs(self, rec: Record, material: list[tuple[str, bytes, int]], flags: list[str]) -> None:
        root = Path(rec.root)
        (root / "data").mkdir(parents=True, exist_ok=True)
        Path(rec.run).mkdir(parents=True, exist_ok=True)
        engine.write_files(rec.tls_dir, material)
        # The engine's containers go below the host's cgroup, in every hierarchy. An engine
        # option --config-file is merged into this file rather than passed on: a second
        # --config-file would replace it, and the containers would escape the host's cgroup
        # (and outlive the host's removal).
        flags, config = _merge_config_file(flags)
        config["arch-opts"] = [*config.get("arch-opts", []), f"cgroup-parent=/{rec.cgroup}"]
        (root / "daemon.json").write_text(json.dumps(config))
        (root / "engine-flags.json").write_text(json.dumps(flags))

    def _launch(self, rec: Record, leaf: Path | None) -> engine.Launch:
        root = Path(rec.root)
        flags = json.loads((root / "engine-flags.json").read_text())
        return engine.Launch(
            netns_path=net.netns_path(rec.netns), hostname=rec.name, cgroup_leaf=leaf,
            data_root=root / "data", exec_root=Path(rec.run), socket=rec.socket,
            config_file=root / "daemon.json", log=rec.log, address=rec.ip,
            ca=rec.tls_dir / "ca.pem", cert=rec.tls_dir / "server-cert.pem", key=rec.tls_dir / "server-key.pem",
            flags=tuple(flags), env=tuple(sorted(rec.env.items())))

    async def _start_engine(self, rec: Record) -> None:
        assert self._cg is not None
        leaf = await asyncio.to_thread(cgroups.engine_cgroup, self._cg, rec.cgroup)
        launch = self._launch(rec, leaf)
        try:
            proc = await asyncio.to_thread(engine.spawn, launch)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"the engine of host {rec.name} could not be started ({exc}); its log ends:\n"
                              f"{engine.log_tail(rec.log)}") from exc
        self._procs[rec.id] = proc
        rec.pid, rec.pid_start, rec.exit_status = proc.pid, engine.start_time(proc.pid) or 0, None
        rec.state = "running"
        await asyncio.to_thread(self._save, rec)

        def exited() -> int | None | bool:
            status = proc.poll()
            return False if status is None else status

        try:
            await engine.wait_ready(launch, exited, self.start_timeout)
        except Unavailable:
            rec.exit_status = proc.poll()
            await asyncio.to_thread(self._save, rec)
            raise

    def _exit_status(self, rec: Record) -> int | None | bool:
        """False while the engine runs; its exit status (None: unknown) once it has exited."""
        proc = self._procs.get(rec.id)
        if proc is not None and proc.pid == rec.pid:
            status = proc.poll()
            return False if status is None else status
        if rec.pid and engine.alive(rec.pid, rec.pid_start):
            return False
        return rec.exit_status

    async def state(self, host: Host) -> HostState:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            return HostState("none")
        if not await asyncio.to_thread(net.is_netns, rec.netns):
            return HostState("error", f"the host's network namespace {rec.netns} is gone")
        status = self._exit_status(rec)
        if status is False:
            if await engine.ping(rec.socket):
                return HostState("running")
            status = self._exit_status(rec)  # it may have died while the ping failed
            if status is False:
                return HostState("error", f"the engine (pid {rec.pid}) runs but does not answer on {rec.socket}")
        if rec.exit_status != status:
            rec.exit_status = status  # type: ignore[assignment]
            await asyncio.to_thread(self._save, rec)
        if rec.state == "stopped":
            return HostState("stopped")
        if not rec.pid:
            return HostState("error", "the host was not finished: its engine was never started")
        return HostState("error", f"the engine (pid {rec.pid}) {engine.describe_exit(status)}; "  # type: ignore[arg-type]
                                  f"its log ends:\n{engine.log_tail(rec.log)}")

    async def start(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"netns host {host.name} ({host.id}) does not exist")
        if self._exit_status(rec) is False:
            if await engine.ping(rec.socket):
                return
            await self._kill_engine(rec)  # wedged: start it afresh
        async with self._bridge_lock:
            await asyncio.to_thread(net.ensure_bridge, self.bridge, self.gateway)
        if not await asyncio.to_thread(net.is_netns, rec.netns):
            await asyncio.to_thread(net.remove_netns, rec.netns)
            await asyncio.to_thread(net.create_netns, rec.netns)
        await asyncio.to_thread(net.connect_host, rec.netns, rec.veth, self.bridge, ipaddress.IPv4Interface(rec.address))
        await self._start_engine(rec)

    async def stop(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"netns host {host.name} ({host.id}) does not exist")
        rec.state = "stopped"
        await asyncio.to_thread(self._save, rec)
        # A clean engine stop first (its state is written), then power-off: whatever the
        # engine left running (containers, their monitors) is killed with the cgroup.
        if engine.signal_process(rec.pid, rec.pid_start, signal.SIGTERM):
            if not await engine.wait_exit(rec.pid, rec.pid_start, STOP_TIMEOUT):
                engine.signal_process(rec.pid, rec.pid_start, signal.SIGKILL)
        await self._kill_engine(rec)

    async def _kill_engine(self, rec: Record) -> None:
        """SIGKILL the engine and everything in the host's cgroup; reap our child."""
        engine.signal_process(rec.pid, rec.pid_start, signal.SIGKILL)
        killed: list[int] = []
        if self._cg is not None and rec.cgroup:
            killed = await asyncio.to_thread(cgroups.kill_all, self._cg, rec.cgroup)
        proc = self._procs.pop(rec.id, None)
        if proc is not None:
            status = await asyncio.to_thread(proc.wait)
            if proc.pid == rec.pid:
                rec.exit_status = status
        else:
            await engine.wait_exit(rec.pid, rec.pid_start, STOP_TIMEOUT)
        await asyncio.to_thread(cgroups.reap_adopted, killed)
        await asyncio.to_thread(self._save_if_exists, rec)

    def _save_if_exists(self, rec: Record) -> None:
        if self._hosts().path(rec.id).exists():
            self._save(rec)

    async def remove(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host) or self._record_from_host(host)
        if rec is None:
            return
        problems: list[str] = []
        try:
            await self._kill_engine(rec)
        except TimeoutError as exc:  # reported; the rest is still taken apart
            problems.append(str(exc))
        problems += await asyncio.to_thread(self._dismantle, rec)
        await asyncio.to_thread(self._hosts().remove, rec.id)
        if problems:
            raise Unavailable(f"netns host {rec.name} removed, but some of it is left: {'; '.join(problems)}")

    def _dismantle(self, rec: Record) -> list[str]:
        """Everything but the processes (gone by now): mounts under the host's directories, its
        cgroups, veth, namespace and directories. Each step runs whatever the others did."""
        problems: list[str] = []
        roots = [r for r in (rec.root, rec.run) if r]
        for point in sorted({m.point for m in read_mounts()
                             if any(m.point == r or m.point.startswith(r + "/") for r in roots)},
                            key=lambda p: -p.count("/")):
            try:
                umount(point, detach=True)
            except DockyardError as exc:
                problems.append(str(exc))
        if self._cg is not None and rec.cgroup:
            problems += cgroups.remove(self._cg, rec.cgroup)
        if rec.veth:
            try:
                net.delete_link(rec.veth)
            except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
                problems.append(f"veth {rec.veth}: {exc}")
        try:
            net.remove_netns(rec.netns)
        except OSError as exc:
            problems.append(f"netns {rec.netns}: {exc.strerror or exc}")
        for d in roots:
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(d):
                problems.append(f"directory {d} could not be removed")
        return problems

    async def update_tls(self, host: Host, tls: EngineTLS) -> None:
        """Replace the engine's TLS files in the host's directory; the engine reads them at its
        next start."""
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"netns host {host.name} ({host.id}) does not exist")
        try:
            material = [("ca.pem", tls.pem("ca_cert"), 0o644), ("server-cert.pem", tls.pem("cert"), 0o644),
                        ("server-key.pem", tls.pem("key"), 0o600)]
        except OSError as exc:
            raise InvalidArgument(f"cannot read the engine's TLS material: {exc}") from exc
        await asyncio.to_thread(engine.write_files, rec.tls_dir, material)

    async def engine_url(self, host: Host) -> str:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"netns host {host.name} ({host.id}) does not exist")
        return f"tcp://{rec.ip}:{engine.ENGINE_PORT}"


__all__ = ["DEFAULT_SUBNET", "NetnsProvisioner"]
