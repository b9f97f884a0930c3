"""The ``qemu`` provision driver: a host is a Debian 12 virtual machine (Docker Machine's
VirtualBox role), its engine installed over SSH by the :class:`EngineInstaller` another plugin
provides (``dockyard-provision-ssh``).

A host is

* a qcow2 overlay (``<data_dir>/<key>/disk.qcow2``, option ``qemu-disk-size``) on the driver's
  cached Debian image (:mod:`dockyard_provision_qemu.image`), booted by qemu with KVM or TCG
  (:mod:`dockyard_provision_qemu.vm`), ``qemu-memory`` MB and ``qemu-cpus`` vCPUs;
* user-mode networking with ``restrict=on`` (the guest reaches no address) and two forwards on
  127.0.0.1: a port for the guest's SSH and one for its engine's 2376;
* an SSH key pair for root and an SSH host key, both made here and handed to the guest through
  qemu fw_cfg at every boot, so the first connection already checks a pinned host key;
* an engine (``dockyardd -H tcp://0.0.0.0:2376 --tlsverify``) installed and supervised in the
  guest by the installer; this machine reaches it at ``tcp://127.0.0.1:<port>``, so the engine's
  certificate names 127.0.0.1 (``prepare`` reports it).

The driver's record of a host (``<data_dir>/hosts/<id>.json``) is written at ``prepare``, before
anything is made, and names every path, port and the qemu process, so ``remove`` cleans a
half-created or broken host; ``Host.extra`` carries the same for a caller that outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.jsonfile import RecordDir
from dockyard.model import Host
from dockyard.specs import DriverInfo, Provisioner
from dockyard.specs.provision import (
    EngineInstall,
    EngineInstaller,
    EngineTLS,
    HostRequest,
    HostState,
    SshTarget,
)
from dockyard_provision_qemu import image, vm

log = logging.getLogger("dockyard.provision.qemu")

HOST_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,39}$")
#: Per-host options (``--driver-opt``; Docker Machine's ``--virtualbox-memory`` and so on),
#: which the driver's own options (``provision-opts``) give defaults for.
HOST_OPTIONS = ("qemu-memory", "qemu-cpus", "qemu-disk-size", "qemu-accel")
DRIVER_OPTIONS = (*HOST_OPTIONS, "image-cache", "image-sources", "image-packages", "boot-timeout")
DEFAULT_MEMORY_MB = 1024
DEFAULT_CPUS = 2
DEFAULT_DISK_MB = 20000  # Docker Machine's default disk
MIN_DISK_MB = 2048  # the image's file system; the overlay cannot be smaller
BOOT_TIMEOUT = 180.0  # TCG on a busy 2-core CI machine: ~14 s alone, ~30 s with two VMs at once
KVM_BOOT_TIMEOUT = 60.0  # longer than this under KVM: boot again with TCG
ENGINE_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
GUEST_LISTEN = "tcp://0.0.0.0:2376"
#: Longest driver run directory: a host's QMP socket is ``<run_dir>/<key>/qmp.sock``.
MAX_RUN_DIR = 80
INSTALLER_HINT = "the qemu driver installs the engine over SSH with dockyard-provision-ssh: pip install dockyard-provision-ssh"


@dataclass
class Record:
    """What the driver made (or will make) for one host: enough to find and remove it all."""

    id: str
    name: str
    key: str
    qemu_name: str
    dir: str  # <data_dir>/<key>: disk, keys, known_hosts, console log, TLS CA
    run: str  # <run_dir>/<key>: QMP socket, pidfile
    ssh_port: int
    engine_port: int
    memory_mb: int
    cpus: int
    disk_mb: int
    accel_wanted: str = "auto"
    state: str = "prepared"  # prepared | running | stopped (what was asked for last)
    pid: int = 0
    pid_start: int = 0
    accel: str = ""
    accel_warning: str = ""
    image: str = ""
    installed: bool = False
    tls_pending: bool = False  # update_tls wrote new files: the next start installs them
    boot_seconds: float = 0.0  # the last boot: qemu started -> the guest's SSH answers
    install_seconds: float = 0.0  # the create's engine install (the installer's whole run)
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def engine_url(self) -> str:
        return f"tcp://127.0.0.1:{self.engine_port}"

    def target(self) -> SshTarget:
        return SshTarget(address="127.0.0.1", port=self.ssh_port, user="root",
                         key_path=str(self.path / "id_ed25519"), known_hosts=str(self.path / "known_hosts"))

    def extra(self) -> dict[str, Any]:
        return {
            "qemu_name": self.qemu_name, "pid": self.pid, "pid_start": self.pid_start, "dir": self.dir,
            "run": self.run, "ssh_hostname": "127.0.0.1", "ssh_port": self.ssh_port, "ssh_user": "root",
            "ssh_key_path": str(self.path / "id_ed25519"), "known_hosts": str(self.path / "known_hosts"),
            "engine_port": self.engine_port, "memory": self.memory_mb, "cpu": self.cpus, "disk_size": self.disk_mb,
            "accel": self.accel, "accel_warning": self.accel_warning, "image": self.image,
            "boot_seconds": self.boot_seconds, "install_seconds": self.install_seconds,
        }


def _size_mb(value: str, what: str) -> int:
    """``2048``, ``2048M``, ``2G`` -> MB (a bare number is MB, as Docker Machine's flags)."""
    m = re.fullmatch(r"\s*(\d+)\s*([MmGg]?)[Bb]?\s*", value)
    if not m:
        raise InvalidArgument(f"{what} {value!r} is not a size in MB (e.g. 2048, 2048M or 2G)")
    return int(m.group(1)) * (1024 if m.group(2).lower() == "g" else 1)


class QemuProvisioner(Provisioner):
    """Hosts that are Debian 12 virtual machines under qemu (see the module doc)."""

    info = DriverInfo(
        name="qemu", kind="provision",
        description="a Debian 12 virtual machine per host (qemu, KVM or TCG), its engine installed over SSH",
        capabilities=frozenset({"engine", "tls-rotation"}),
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        opts = dict(context.options)
        self.cache = Path(opts.get("image-cache") or image.DEFAULT_CACHE)
        sources = opts.get("image-sources")
        extra = tuple(p for p in str(opts.get("image-packages") or "").replace(" ", ",").split(",") if p)
        self.recipe = image.Recipe(sources=Path(sources) if sources else image.default_sources(),
                                   extra_packages=extra)
        self.defaults = self._host_options(opts, {})
        try:
            self.boot_timeout = float(opts.get("boot-timeout") or BOOT_TIMEOUT)
        except ValueError:
            raise InvalidArgument(f"provision qemu: boot-timeout {opts.get('boot-timeout')!r} is not a number "
                                  "of seconds") from None
        self._lock = asyncio.Lock()  # records: names and ports handed out
        self._held: dict[str, list[socket.socket]] = {}  # host id -> its reserved ports, until qemu binds them

    # ------------------------------------------------------------------ options
    @staticmethod
    def _host_options(opts: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
        def get(key: str, default: Any) -> Any:
            value = opts.get(key)
            return default if value in (None, "") else value

        try:
            memory = int(get("qemu-memory", defaults.get("memory_mb", DEFAULT_MEMORY_MB)))
            cpus = int(get("qemu-cpus", defaults.get("cpus", DEFAULT_CPUS)))
        except ValueError as exc:
            raise InvalidArgument(f"qemu-memory (MB) and qemu-cpus must be whole numbers: {exc}") from None
        disk = get("qemu-disk-size", defaults.get("disk_mb", DEFAULT_DISK_MB))
        disk_mb = disk if isinstance(disk, int) else _size_mb(str(disk), "qemu-disk-size")
        accel = str(get("qemu-accel", defaults.get("accel", "auto")))
        if memory < 256:
            raise InvalidArgument(f"qemu-memory {memory}: at least 256 MB")
        if not 1 <= cpus <= 64:
            raise InvalidArgument(f"qemu-cpus {cpus}: between 1 and 64")
        if disk_mb < MIN_DISK_MB:
            raise InvalidArgument(f"qemu-disk-size {disk_mb} MB: at least {MIN_DISK_MB} MB (the image's size)")
        if accel not in ("auto", "kvm", "tcg"):
            raise InvalidArgument(f"qemu-accel {accel!r}: one of auto, kvm, tcg")
        return {"memory_mb": memory, "cpus": cpus, "disk_mb": disk_mb, "accel": accel}

    # ------------------------------------------------------------------ set-up
    @property
    def _hosts_dir(self) -> Path:
        return self.context.data_dir / "hosts"

    @property
    def _name_prefix(self) -> str:
        return f"{self.context.owner}q-"

    async def setup(self) -> None:
        unknown = set(self.context.options) - set(DRIVER_OPTIONS)
        if unknown:
            raise InvalidArgument(f"provision qemu: unknown option(s) {', '.join(sorted(unknown))}; "
                                  f"known: {', '.join(DRIVER_OPTIONS)}")
        if len(str(self.context.run_dir)) > MAX_RUN_DIR:
            raise InvalidArgument(f"provision qemu: the run directory {self.context.run_dir} is longer than "
                                  f"{MAX_RUN_DIR} characters; a VM's QMP socket would not fit in sun_path")
        await asyncio.to_thread(self._hosts_dir.mkdir, parents=True, exist_ok=True)
        await self._reconcile()

    async def _reconcile(self) -> None:
        """End qemu processes named after this driver that no record explains (a record deleted
        by hand, a data directory wiped under running VMs)."""
        records = await asyncio.to_thread(self._records)
        known = {r.qemu_name for r in records}
        for pid, name in await asyncio.to_thread(vm.find_processes, self._name_prefix):
            if name not in known:
                start = vm.start_time(pid)
                if start is not None:
                    log.warning("qemu: ending VM %s (pid %d): no record of this driver names it", name, pid)
                    await vm.kill(pid, start)

    async def close(self) -> None:
        """VMs keep running (like containers at daemon shutdown); reserved ports are released."""
        for held in self._held.values():
            for s in held:
                s.close()
        self._held.clear()

    def status(self) -> list[tuple[str, str]]:
        accel = vm.choose_accel(self.defaults["accel"]) if self.defaults["accel"] != "kvm" else vm.Accel("kvm")
        count = self._hosts().count()
        return [("Accelerator", accel.name + (" (software emulation)" if accel.name == "tcg" else "")),
                ("Image cache", str(self.cache)), ("Hosts", str(count))]

    # ------------------------------------------------------------------ records
    def _hosts(self) -> RecordDir[Record]:
        return RecordDir(self._hosts_dir, Record, lenient=True)

    def _records(self) -> list[Record]:
        return self._hosts().all()

    def _load(self, host: Host) -> Record | None:
        return self._hosts().load(host.id)

    def _save(self, rec: Record) -> None:
        self._hosts().save(rec)

    def _record_from_host(self, host: Host) -> Record | None:
        """A host whose record is gone but whose ``extra`` names what was made (remove only)."""
        x = host.extra or {}
        name = str(x.get("qemu_name") or "")
        if not name.startswith(self._name_prefix):
            return None
        try:
            return Record(id=host.id, name=host.name, key="", qemu_name=name, dir=str(x.get("dir") or ""),
                          run=str(x.get("run") or ""), ssh_port=int(x.get("ssh_port") or 0),
                          engine_port=int(x.get("engine_port") or 0), memory_mb=0, cpus=0, disk_mb=0,
                          state="running", pid=int(x.get("pid") or 0), pid_start=int(x.get("pid_start") or 0))
        except (TypeError, ValueError):
            return None

    def _host(self, rec: Record, state: str = "none") -> Host:
        return Host(id=rec.id, name=rec.name, driver=self.info.name, state=state, engine_url=rec.engine_url,
                    addresses=["127.0.0.1"], labels=dict(rec.labels), extra=rec.extra())

    def _installer(self) -> EngineInstaller:
        return self.context.need(EngineInstaller, INSTALLER_HINT)

    # ------------------------------------------------------------------ Provisioner
    async def prepare(self, request: HostRequest) -> Host:
        if not HOST_NAME.match(request.name or ""):
            raise InvalidArgument(f"invalid host name {request.name!r}: letters, digits, '.' and '-', "
                                  "starting with a letter or digit, at most 40 characters")
        unknown = set(request.options) - set(HOST_OPTIONS)
        if unknown:
            raise InvalidArgument(f"the qemu driver's per-host options are {', '.join(HOST_OPTIONS)} "
                                  f"(got {', '.join(sorted(unknown))})")
        opts = self._host_options(dict(request.options), self.defaults)
        self._installer()  # before anything is made: without an installer no host can be finished
        missing = [f"{tool} (Debian package {pkg})" for tool, pkg in
                   (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                    ("ssh-keygen", "openssh-client")) if shutil.which(tool) is None]
        if missing:
            raise Unavailable(f"the qemu driver needs {', '.join(missing)}: "
                              "apt-get install qemu-system-x86 qemu-utils openssh-client")
        async with self._lock:
            records = await asyncio.to_thread(self._records)
            if any(r.name == request.name for r in records):
                raise Conflict(f"a qemu host named {request.name} exists")
            keys = {r.key for r in records}
            host_id = uuid.uuid4().hex
            while host_id[:12] in keys:
                host_id = uuid.uuid4().hex
            key = host_id[:12]
            taken = {p for r in records for p in (r.ssh_port, r.engine_port)}
            held = await asyncio.to_thread(vm.reserve_ports, 2, taken)
            rec = Record(id=host_id, name=request.name, key=key, qemu_name=self._name_prefix + request.name,
                         dir=str(self.context.data_dir / key), run=str(self.context.run_dir / key),
                         ssh_port=held[0].getsockname()[1], engine_port=held[1].getsockname()[1],
                         memory_mb=opts["memory_mb"], cpus=opts["cpus"], disk_mb=opts["disk_mb"],
                         accel_wanted=opts["accel"], labels=dict(request.labels),
                         env={str(k): str(v) for k, v in request.engine_env.items()})
            try:
                await asyncio.to_thread(self._save, rec)
            except BaseException:
                for s in held:
                    s.close()
                raise
            self._held[host_id] = held
        return self._host(rec)

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"qemu host {host.name} ({host.id}) was not prepared")
        if rec.state != "prepared":
            raise Conflict(f"qemu host {host.name} is already created ({rec.state})")
        installer = self._installer()
        try:
            ca_pem = tls.pem("ca_cert")
        except OSError as exc:
            raise InvalidArgument(f"cannot read the engine's TLS material: {exc}") from exc
        t0 = time.monotonic()
        img = await image.ensure(self.cache, self.recipe)
        rec.state, rec.image, rec.flags = "running", str(img.dir), list(engine_flags)
        await asyncio.to_thread(self._save, rec)
        await asyncio.to_thread(self._make_files, rec, img, ca_pem)
        await self._boot(rec, img)
        log.info("qemu host %s: SSH answers on 127.0.0.1:%d (%.1f s, %s); installing the engine", rec.name,
                 rec.ssh_port, time.monotonic() - t0, rec.accel)
        t1 = time.monotonic()
        await installer.install(rec.target(), self._spec(rec, tls),
                                progress=lambda line: log.info("qemu host %s: %s", rec.name, line))
        rec.installed, rec.install_seconds = True, round(time.monotonic() - t1, 2)
        await asyncio.to_thread(self._save, rec)
        log.info("qemu host %s: engine answers at %s (%.1f s after create)", rec.name, rec.engine_url,
                 time.monotonic() - t0)
        return self._host(rec, "running")

    def _spec(self, rec: Record, tls: EngineTLS) -> EngineInstall:
        return EngineInstall(name=rec.name, listen=(GUEST_LISTEN,), engine_url=rec.engine_url, tls=tls,
                             engine_flags=tuple(rec.flags), engine_env=tuple(sorted(rec.env.items())))

    def _make_files(self, rec: Record, img: image.Image, ca_pem: bytes) -> None:
        d = rec.path
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        Path(rec.run).mkdir(parents=True, exist_ok=True)
        (d / "tls").mkdir(exist_ok=True)
        (d / "tls" / "ca.pem").write_bytes(ca_pem)
        for key, comment in (("id_ed25519", f"dockyard@{rec.qemu_name}"), ("ssh_host_ed25519_key", f"root@{rec.name}")):
            if not (d / key).exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(d / key)])
        self._write_known_hosts(rec)
        if not (d / "disk.qcow2").exists():
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(img.base), "-F", "raw",
                  str(d / "disk.qcow2"), f"{rec.disk_mb}M"])

    def _write_known_hosts(self, rec: Record) -> None:
        pub = (rec.path / "ssh_host_ed25519_key.pub").read_text().split()
        (rec.path / "known_hosts").write_text(f"[127.0.0.1]:{rec.ssh_port} {pub[0]} {pub[1]}\n")

    def _machine(self, rec: Record, img: image.Image, accel: vm.Accel) -> vm.Machine:
        d, run = rec.path, Path(rec.run)
        return vm.Machine(name=rec.qemu_name, hostname=rec.name, accel=accel, memory_mb=rec.memory_mb, cpus=rec.cpus,
                          kernel=img.kernel, initrd=img.initrd, disk=d / "disk.qcow2", ssh_port=rec.ssh_port,
                          engine_port=rec.engine_port, authorized_keys=d / "id_ed25519.pub",
                          host_key=d / "ssh_host_ed25519_key", qmp=run / "qmp.sock", pidfile=run / "qemu.pid",
                          console=d / "console.log")

    async def _boot(self, rec: Record, img: image.Image) -> None:
        """Start the VM and wait until its SSH answers. A forward whose port was taken since it
        was picked gets a new port (the certificate names 127.0.0.1, not a port). KVM that
        fails to start, or boots no further than the KVM boot timeout, is retried with TCG."""
        accel = vm.choose_accel(rec.accel_wanted)
        for attempt in range(4):
            rec.accel, rec.accel_warning = accel.name, accel.warning
            if accel.warning:
                log.warning("qemu host %s: %s", rec.name, accel.warning)
            await asyncio.to_thread(self._save, rec)
            for s in self._held.pop(rec.id, []):
                s.close()
            t0 = time.monotonic()
            try:
                rec.pid, rec.pid_start = await vm.launch(self._machine(rec, img, accel))
            except vm.PortTaken as exc:
                if attempt == 3:
                    raise
                log.warning("qemu host %s: %s; picking other ports (the engine's URL changes)", rec.name, exc)
                await self._repick_ports(rec)
                continue
            except Unavailable as exc:
                if accel.name == "kvm" and rec.accel_wanted == "auto":
                    accel = vm.Accel("tcg", f"KVM failed to start the VM ({exc}): {vm.TCG_COST}")
                    continue
                raise
            await asyncio.to_thread(self._save, rec)
            timeout = KVM_BOOT_TIMEOUT if accel.name == "kvm" and rec.accel_wanted == "auto" else self.boot_timeout
            try:
                await self._wait_ssh(rec, time.monotonic() + timeout)
            except Unavailable as exc:
                if accel.name == "kvm" and rec.accel_wanted == "auto" and vm.alive(rec.pid, rec.pid_start):
                    await vm.kill(rec.pid, rec.pid_start)
                    accel = vm.Accel("tcg", f"KVM did not boot the VM to SSH within {timeout:.0f} s ({exc}): "
                                            f"{vm.TCG_COST}")
                    continue
                raise
            rec.boot_seconds = round(time.monotonic() - t0, 2)
            await asyncio.to_thread(self._save, rec)
            return
        raise Unavailable(f"qemu host {rec.name}: the VM could not be started")

    async def _repick_ports(self, rec: Record) -> None:
        async with self._lock:
            records = await asyncio.to_thread(self._records)
            taken = {p for r in records if r.id != rec.id for p in (r.ssh_port, r.engine_port)}
            taken |= {rec.ssh_port, rec.engine_port}
            held = await asyncio.to_thread(vm.reserve_ports, 2, taken)
            rec.ssh_port, rec.engine_port = held[0].getsockname()[1], held[1].getsockname()[1]
            self._held[rec.id] = held
            await asyncio.to_thread(self._save, rec)
        await asyncio.to_thread(self._write_known_hosts, rec)

    async def _wait_ssh(self, rec: Record, deadline: float) -> None:
        console = rec.path / "console.log"
        await vm.wait_until(lambda: vm.ssh_answers(rec.ssh_port), deadline,
                            f"the VM's SSH on 127.0.0.1:{rec.ssh_port}",
                            lambda: vm.alive(rec.pid, rec.pid_start), lambda: vm.console_tail(console))

    async def _wait_engine(self, rec: Record, deadline: float) -> None:
        ca = rec.path / "tls" / "ca.pem"
        await vm.wait_until(lambda: asyncio.to_thread(vm.engine_presents, rec.engine_port, ca), deadline,
                            f"the engine on {rec.engine_url}", lambda: vm.alive(rec.pid, rec.pid_start),
                            lambda: vm.console_tail(rec.path / "console.log"))

    def _running(self, rec: Record) -> bool:
        return vm.alive(rec.pid, rec.pid_start)

    async def state(self, host: Host) -> HostState:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            return HostState("none")
        if not self._running(rec):
            if rec.state == "stopped":
                return HostState("stopped")
            if not rec.pid:
                return HostState("error", "the host was not finished: its VM was never started")
            return HostState("error", f"the VM's qemu (pid {rec.pid}) exited; "
                                      f"{vm.console_tail(rec.path / 'console.log')}")
        if await asyncio.to_thread(vm.engine_presents, rec.engine_port, rec.path / "tls" / "ca.pem"):
            return HostState("running", f"the VM runs under {vm.TCG_COST}" if rec.accel == "tcg" else "")
        if rec.state == "stopped":  # powering off
            return HostState("stopped")
        if not rec.installed:
            return HostState("error", "the VM runs but its engine was never installed (the create failed)")
        return HostState("error", f"the VM runs but its engine does not answer on {rec.engine_url}"
                                  + await self._engine_reason(rec))

    async def _engine_reason(self, rec: Record) -> str:
        """What the installer says about the engine, when it can say it quickly."""
        try:
            installer = self._installer()
            st = await asyncio.wait_for(installer.engine_state(rec.target(), rec.name), 20)
        except (DockyardError, TimeoutError, OSError) as exc:
            return f" (and its state could not be read over SSH: {exc})"
        return f": {st.state}" + (f", {st.reason}" if st.reason else "")

    async def start(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        installer = self._installer()
        img = image.Image(Path(rec.image), "")
        if not img.base.exists():
            raise Unavailable(f"qemu host {rec.name}: its image {rec.image} is gone (the overlay needs its "
                              "backing file); remove the host and create it again")
        rec.state = "running"
        await asyncio.to_thread(self._save, rec)
        if not self._running(rec):
            await self._boot(rec, img)  # the same ports, unless one was taken meanwhile
        else:
            await self._wait_ssh(rec, time.monotonic() + self.boot_timeout)
        if rec.tls_pending:  # update_tls: the installer puts the new certificate in place
            pending = rec.path / "tls-pending"
            tls = EngineTLS(*(pending / f for f in ("ca.pem", "server-cert.pem", "server-key.pem")))
            await installer.install(rec.target(), self._spec(rec, tls),
                                    progress=lambda line: log.info("qemu host %s: %s", rec.name, line))
            await asyncio.to_thread(os.replace, pending / "ca.pem", rec.path / "tls" / "ca.pem")
            await asyncio.to_thread(shutil.rmtree, pending, True)
            rec.tls_pending = False
            await asyncio.to_thread(self._save, rec)
        else:
            await installer.start_engine(rec.target(), rec.name)
        await self._wait_engine(rec, time.monotonic() + ENGINE_TIMEOUT)

    async def stop(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        rec.state = "stopped"
        await asyncio.to_thread(self._save, rec)
        await self._power_off(rec, clean=True)

    async def _power_off(self, rec: Record, clean: bool) -> None:
        """``clean``: ACPI power-off (the guest's systemd stops the engine), else QMP ``quit``;
        SIGTERM/SIGKILL by pid when QMP does not answer or the guest does not go down."""
        if not self._running(rec):
            return
        qmp = Path(rec.run) / "qmp.sock"
        command = {"execute": "system_powerdown"} if clean else {"execute": "quit"}
        try:
            await vm.qmp(qmp, command)
        except (OSError, TimeoutError, Unavailable, ValueError) as exc:
            log.info("qemu host %s: QMP %s failed (%s); killing pid %d", rec.name, command["execute"], exc, rec.pid)
        else:
            if await vm.wait_exit(rec.pid, rec.pid_start, STOP_TIMEOUT if clean else 10.0):
                return
            log.warning("qemu host %s: the VM did not power off within %.0f s; killing pid %d", rec.name,
                        STOP_TIMEOUT, rec.pid)
        await vm.kill(rec.pid, rec.pid_start)

    async def remove(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host) or self._record_from_host(host)
        if rec is None:
            return
        problems: list[str] = []
        for s in self._held.pop(rec.id, []):
            s.close()
        try:
            await self._power_off(rec, clean=False)
            # a VM launched but not yet recorded (a create interrupted meanwhile) is found by name
            for pid, name in await asyncio.to_thread(vm.find_processes, rec.qemu_name):
                start = vm.start_time(pid)
                if name == rec.qemu_name and start is not None:
                    await vm.kill(pid, start, grace=2.0)
        except Unavailable as exc:
            problems.append(str(exc))
        for d in (rec.dir, rec.run):
            if d:
                await asyncio.to_thread(shutil.rmtree, d, True)
                if os.path.exists(d):
                    problems.append(f"directory {d} could not be removed")
        await asyncio.to_thread(self._hosts().remove, rec.id)
        if problems:
            raise Unavailable(f"qemu host {rec.name} removed, but some of it is left: {'; '.join(problems)}")

    async def update_tls(self, host: Host, tls: EngineTLS) -> None:
        """Keep the new server material (``tls-pending/``); the next :meth:`start` has the
        installer put it in place (a running engine keeps presenting the old one until then)."""
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        try:
            material = [("ca.pem", tls.pem("ca_cert"), 0o644), ("server-cert.pem", tls.pem("cert"), 0o644),
                        ("server-key.pem", tls.pem("key"), 0o600)]
        except OSError as exc:
            raise InvalidArgument(f"cannot read the engine's TLS material: {exc}") from exc
        await asyncio.to_thread(_write_files, rec.path / "tls-pending", material)
        rec.tls_pending = True
        await asyncio.to_thread(self._save, rec)

    async def engine_url(self, host: Host) -> str:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        return rec.engine_url

    async def upgrade(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> None:
        """Boot the VM if it is off, then install this machine's dockyard in it again and
        restart the engine (containers keep running)."""
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        if not self._running(rec):
            await self.start(host)
            rec = await asyncio.to_thread(self._load, host) or rec
        rec.flags = list(engine_flags)
        await asyncio.to_thread(self._save, rec)
        await self._installer().install(rec.target(), self._spec(rec, tls),
                                        progress=lambda line: log.info("qemu host %s: %s", rec.name, line))
        await self._wait_engine(rec, time.monotonic() + ENGINE_TIMEOUT)

    async def ssh_target(self, host: Host) -> SshTarget | None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"qemu host {host.name} ({host.id}) does not exist")
        return rec.target


def _write_files(directory: Path, material: list[tuple[str, bytes, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data, mode in material:
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, directory / name)


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise Unavailable(f"{argv[0]} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")


__all__ = ["QemuProvisioner"]
