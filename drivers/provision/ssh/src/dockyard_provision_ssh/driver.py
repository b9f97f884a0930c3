"""The ``ssh`` provision driver: Docker Machine's ``generic`` driver.

A host is a Debian machine that already exists and is reached over SSH. ``prepare`` records the
host (its address is the one SSH reaches, and the engine's certificate names it); ``create``
installs and starts ``dockyardd`` there through the :class:`EngineInstaller` a plugin provides
(this distribution's :class:`~dockyard_provision_ssh.installer.SshEngineInstaller`, offered to
every driver with ``dockyard_provides``, so the qemu driver installs the same way); ``stop`` and
``start`` stop and start that engine (its containers keep running: live-restore), ``remove``
uninstalls everything the install put there.

Per-host options (``HostRequest.options``, ``dockyard machine create -d ssh --driver-opt K=V``),
as Docker Machine's ``--generic-ssh-*`` flags:

==============================  ===========================================================
``ssh-address``                 the machine's address (required; the engine's certificate names it)
``ssh-user``                    ``root`` (the engine needs root; no sudo)
``ssh-key``                     private key file (default ``~/.ssh/id_ed25519``, ``id_ecdsa``, ``id_rsa``)
``ssh-port``                    ``22``
``ssh-host-key``                the machine's public host key (an OpenSSH ``.pub`` line or file): pinned
``ssh-known-hosts``             a known_hosts file that already pins it
``ssh-accept-new-host-key``     ``yes``: record the key the first connection sees (trust on first use)
``install-root``                ``/opt/dockyard``: the engine lives in ``<install-root>/<name>``
``engine-port``                 ``2376`` (the next free one for a second host on the same address)
==============================  ===========================================================

Host keys are never accepted silently. With ``ssh-host-key`` (or ``ssh-known-hosts``) the key
is given and checked on every connection. Without either, ``create`` refuses unless
``ssh-accept-new-host-key=yes`` asks for trust on first use: the key the first connection sees is
recorded in the host's own known_hosts file, its fingerprint is logged, and every later
connection must see the same key (OpenSSH's ``StrictHostKeyChecking=accept-new``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
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
from dockyard_provision_ssh.installer import DEFAULT_ROOT, SshEngineInstaller, SshError, _asyncssh

log = logging.getLogger("dockyard.provision.ssh")

ENGINE_PORT = 2376
HOST_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,39}$")
OPTIONS = ("ssh-address", "ssh-user", "ssh-key", "ssh-port", "ssh-host-key", "ssh-known-hosts",
           "ssh-accept-new-host-key", "install-root", "engine-port")
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
YES = ("1", "yes", "true", "on")


@dataclass
class Record:
    """The driver's record of one host (``<data_dir>/hosts/<id>.json``)."""

    id: str
    name: str
    address: str
    port: int
    user: str
    key: str
    known_hosts: str  # the file pinning the host key
    accept_new: bool
    install_root: str
    engine_port: int
    # prepared | created (an install was started) | unreached (the install never connected)
    state: str = "prepared"
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> SshTarget:
        return SshTarget(address=self.address, port=self.port, user=self.user, key_path=self.key,
                         known_hosts=self.known_hosts, install_root=self.install_root)

    @property
    def engine_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{host}:{self.engine_port}"

    def extra(self) -> dict[str, Any]:
        return {"address": self.address, "port": self.port, "user": self.user, "key": self.key,
                "known_hosts": self.known_hosts, "install_root": self.install_root,
                "home": f"{self.install_root.rstrip('/')}/{self.name}", "engine_port": self.engine_port}


def _port(value: str, what: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise InvalidArgument(f"{what} {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise InvalidArgument(f"{what} {port} is not a port number")
    return port


def known_hosts_line(address: str, port: int, key: str) -> str:
    """OpenSSH's known_hosts form of ``key`` (``type base64 [comment]``) for address:port."""
    host = address if port == 22 else f"[{address}]:{port}"
    kind, blob = key.split()[:2]
    return f"{host} {kind} {blob}\n"


class SshProvisioner(Provisioner):
    """Hosts that exist already, reached over SSH (see the module doc)."""

    info = DriverInfo(
        name="ssh", kind="provision",
        description="a Debian machine reached over SSH: dockyardd installed offline from this machine's wheels",
        capabilities=frozenset({"engine", "tls-rotation"}),
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._lock = asyncio.Lock()
        self._own_installer: SshEngineInstaller | None = None

    @property
    def _hosts_dir(self) -> Path:
        return self.context.data_dir / "hosts"

    async def setup(self) -> None:
        if self.context.options:
            raise InvalidArgument(f"provision ssh: unknown option(s) {', '.join(sorted(self.context.options))}; "
                                  f"its options are per host: {', '.join(OPTIONS)}")
        await asyncio.to_thread(self._hosts_dir.mkdir, parents=True, exist_ok=True)

    @property
    def installer(self) -> EngineInstaller:
        """The :class:`EngineInstaller` a plugin provides (this distribution's, unless another
        stands in); this distribution's own when none is handed over (its hook is blocked)."""
        provided = self.context.provided.get(EngineInstaller)
        if provided is not None:
            return provided
        if self._own_installer is None:
            self._own_installer = SshEngineInstaller(self.context.data_dir / "wheelhouse")
        return self._own_installer

    def status(self) -> list[tuple[str, str]]:
        return [("Hosts", str(len(self._records())))]

    # ------------------------------------------------------------------ records
    def _hosts(self) -> RecordDir[Record]:
        return RecordDir(self._hosts_dir, Record)

    def _save(self, rec: Record) -> None:
        self._hosts().save(rec)

    def _load(self, host: Host) -> Record | None:
        return self._hosts().load(host.id)

    def _records(self) -> list[Record]:
        return self._hosts().all()

    def _host(self, rec: Record, state: str = "none") -> Host:
        return Host(id=rec.id, name=rec.name, driver=self.info.name, state=state, engine_url=rec.engine_url,
                    addresses=[rec.address], labels=dict(rec.labels), extra=rec.extra())

    # ------------------------------------------------------------------ Provisioner
    async def prepare(self, request: HostRequest) -> Host:
        if not HOST_NAME.match(request.name or ""):
            raise InvalidArgument(f"invalid host name {request.name!r}: letters, digits, '.' and '-', "
                                  "starting with a letter or digit, at most 40 characters")
        opts = {str(k): str(v) for k, v in request.options.items()}
        unknown = set(opts) - set(OPTIONS)
        if unknown:
            raise InvalidArgument(f"the ssh driver has no option(s) {', '.join(sorted(unknown))}; "
                                  f"its options: {', '.join(OPTIONS)}")
        address = opts.get("ssh-address", "").strip()
        if not address:
            raise InvalidArgument("the ssh driver needs ssh-address (the machine's address)")
        try:
            address = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", address):
                raise InvalidArgument(f"ssh-address {address!r} is neither an IP address nor a host name") from None
        port = _port(opts.get("ssh-port", "22"), "ssh-port")
        key = os.path.expanduser(opts.get("ssh-key", ""))
        if not key:
            key = next((str(p) for p in (Path.home() / ".ssh" / k for k in DEFAULT_KEYS) if p.exists()), "")
            if not key:
                raise InvalidArgument("no ssh-key given and none of ~/.ssh/" + ", ~/.ssh/".join(DEFAULT_KEYS) + " exists")
        if not os.path.isfile(key):
            raise InvalidArgument(f"ssh-key {key}: no such file")
        root = opts.get("install-root", DEFAULT_ROOT)
        if not root.startswith("/"):
            raise InvalidArgument(f"install-root {root!r} must be an absolute path on the machine")
        accept_new = opts.get("ssh-accept-new-host-key", "").lower() in YES
        host_key = opts.get("ssh-host-key", "").strip()
        known_hosts = opts.get("ssh-known-hosts", "")
        if known_hosts and not os.path.isfile(known_hosts):
            raise InvalidArgument(f"ssh-known-hosts {known_hosts}: no such file")
        if not (host_key or known_hosts or accept_new):
            raise InvalidArgument(
                f"the host key of {address} is not pinned, and an unknown host key is never accepted silently: "
                "give ssh-host-key=<its public key or .pub file>, or ssh-known-hosts=<file>, or "
                "ssh-accept-new-host-key=yes to record the key the first connection sees")
        if host_key and os.path.isfile(os.path.expanduser(host_key)):
            host_key = Path(os.path.expanduser(host_key)).read_text().strip()
        if host_key and len(host_key.split()) < 2:
            raise InvalidArgument(f"ssh-host-key {host_key!r} is not an OpenSSH public key (TYPE BASE64)")
        async with self._lock:
            records = await asyncio.to_thread(self._records)
            if any(r.name == request.name for r in records):
                raise Conflict(f"an ssh host named {request.name} exists")
            if "engine-port" in opts:
                engine_port = _port(opts["engine-port"], "engine-port")
            else:  # a second engine on the same machine takes the next port
                taken = {r.engine_port for r in records if r.address == address}
                engine_port = next(p for p in range(ENGINE_PORT, 65536) if p not in taken)
            if any(r.address == address and r.engine_port == engine_port for r in records):
                raise Conflict(f"an engine of another ssh host already listens on {address}:{engine_port}")
            host_id = uuid.uuid4().hex
            own_known = str(self._hosts_dir / f"{host_id}.known_hosts")
            if host_key:
                line = known_hosts_line(address, port, host_key)
                await asyncio.to_thread(Path(own_known).write_text, line)
            elif known_hosts:
                own_known = known_hosts
            rec = Record(id=host_id, name=request.name, address=address, port=port, user=opts.get("ssh-user", "root"),
                         key=key, known_hosts=own_known, accept_new=accept_new and not (host_key or known_hosts),
                         install_root=root, engine_port=engine_port, labels=dict(request.labels),
                         env={str(k): str(v) for k, v in request.engine_env.items()})
            await asyncio.to_thread(self._save, rec)
        return self._host(rec)

    async def _pin_first_key(self, rec: Record) -> None:
        """Trust on first use, asked for: record the key the machine presents now."""
        if Path(rec.known_hosts).exists():
            return
        asyncssh = _asyncssh()
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(rec.address, rec.port), 15)
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise SshError(f"cannot reach {rec.address}:{rec.port} over SSH: "
                           f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc}") from exc
        line = known_hosts_line(rec.address, rec.port, key.export_public_key().decode())
        await asyncio.to_thread(Path(rec.known_hosts).write_text, line)
        log.warning("ssh host %s: recorded the host key %s %s of %s:%d on first use (ssh-accept-new-host-key=yes); "
                    "later connections must present the same key", rec.name, key.get_algorithm(),
                    key.get_fingerprint(), rec.address, rec.port)

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"ssh host {host.name} ({host.id}) was not prepared")
        if rec.state != "prepared":
            raise Conflict(f"ssh host {host.name} is already created")
        spec = EngineInstall(name=rec.name, listen=(f"tcp://0.0.0.0:{rec.engine_port}",), engine_url=rec.engine_url,
                             tls=tls, engine_flags=tuple(engine_flags), engine_env=tuple(sorted(rec.env.items())))
        try:
            if rec.accept_new:
                await self._pin_first_key(rec)
            rec.state = "created"
            await asyncio.to_thread(self._save, rec)
            await self.installer.install(rec.target, spec, lambda line: log.info("ssh host %s: %s", rec.name, line))
        except SshError:
            # never connected: nothing was put on the machine, and remove need not reach it
            rec.state = "unreached"
            await asyncio.to_thread(self._save, rec)
            raise
        return self._host(rec, "running")

    async def _created(self, host: Host) -> Record:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            raise NotFound(f"ssh host {host.name} ({host.id}) does not exist")
        return rec

    async def start(self, host: Host) -> None:
        rec = await self._created(host)
        await self.installer.start_engine(rec.target, rec.name)

    async def stop(self, host: Host) -> None:
        rec = await self._created(host)
        await self.installer.stop_engine(rec.target, rec.name)

    async def state(self, host: Host) -> HostState:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None or rec.state == "prepared":
            return HostState("none")
        if rec.state == "unreached":
            return HostState("error", f"the machine {rec.address}:{rec.port} was never reached over SSH")
        st = await self.installer.engine_state(rec.target, rec.name)
        if st.state == "none":
            return HostState("error", f"nothing is installed for {rec.name} under {rec.install_root} on "
                                      f"{rec.address} any more")
        return st

    async def remove(self, host: Host) -> None:
        rec = await asyncio.to_thread(self._load, host) or self._record_from_host(host)
        if rec is None:
            return
        if rec.state == "created":
            await self.installer.uninstall(rec.target, rec.name)
        await asyncio.to_thread(self._forget, rec)

    def _forget(self, rec: Record) -> None:
        self._hosts().remove(rec.id)
        own_known = self._hosts_dir / f"{rec.id}.known_hosts"
        own_known.unlink(missing_ok=True)

    def _record_from_host(self, host: Host) -> Record | None:
        """A host whose record was lost: uninstall through what ``Host.extra`` names."""
        x = host.extra or {}
        if host.driver != self.info.name or not x.get("address") or not x.get("known_hosts") or \
                not os.path.exists(x["known_hosts"]):
            return None
        return Record(id=host.id, name=host.name, address=x["address"], port=int(x.get("port", 22)),
                      user=x.get("user", "root"), key=x.get("key", ""), known_hosts=x["known_hosts"], accept_new=False,
                      install_root=x.get("install_root", DEFAULT_ROOT), engine_port=int(x.get("engine_port", ENGINE_PORT)),
                      state="created")

    async def update_tls(self, host: Host, tls: EngineTLS) -> None:
        rec = await self._created(host)
        installer = self.installer
        if not isinstance(installer, SshEngineInstaller):
            raise Unavailable(f"the provided engine installer ({type(installer).__qualname__}) cannot replace an "
                              "installed engine's certificate")
        await installer.update_tls(rec.target, rec.name, tls)

    async def upgrade(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> None:
        """Install this machine's dockyard again (the wheelhouse is made afresh when what is
        installed here changed) and restart the engine; containers keep running."""
        rec = await self._created(host)
        spec = EngineInstall(name=rec.name, listen=(f"tcp://0.0.0.0:{rec.engine_port}",), engine_url=rec.engine_url,
                             tls=tls, engine_flags=tuple(engine_flags), engine_env=tuple(sorted(rec.env.items())))
        await self.installer.install(rec.target, spec, lambda line: log.info("ssh host %s: %s", rec.name, line))

    async def ssh_target(self, host: Host) -> SshTarget | None:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"ssh host {host.name} ({host.id}) does not exist")
        return rec.target

    async def engine_url(self, host: Host) -> str:
        rec = await asyncio.to_thread(self._load, host)
        if rec is None:
            raise NotFound(f"ssh host {host.name} ({host.id}) does not exist")
        return rec.engine_url


__all__ = ["ENGINE_PORT", "OPTIONS", "SshProvisioner"]
