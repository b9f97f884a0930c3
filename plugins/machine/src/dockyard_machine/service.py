"""The ``machines`` service: Docker Machine's job, owned by the daemon.

It owns the :class:`~dockyard.model.Host` records in the daemon's store, the machine store on
disk (``<data-root>/machines``: the CA, the client certificate and each host's server
certificate in Docker Machine's layout, plus each host's ``config.json``) and every transition.
A provision driver (chosen per host through ``kernel.driver_ready("provision", name)``) acts;
the service decides, records and emits a ``machine`` event after each change commits.

Records and states (``Host.state``; what ``ls`` shows is in :mod:`dockyard_machine.listing`):

* ``creating`` -- written first, inside the transaction whose unique name index makes a second
  create of the name a :class:`~dockyard.errors.Conflict` (409). As soon as the driver has
  prepared the host, the record is replaced by the driver's host (its id, addresses and
  ``extra``: what is needed to remove it), still ``creating``. A create that fails or is
  cancelled removes the host (:func:`dockyard.provisioning.provision`), the record and the
  certificates. One interrupted by the daemon's death (``kill -9``) is found at the next start
  (:meth:`MachineService.start`) and removed the same way; if that fails, it stays as ``error``
  with the reason, for ``rm``.
* ``running``, ``stopped`` -- what was last asked for and reached.
* ``error`` -- with ``Host.reason``: the engine died (the driver's reason: exit status, log
  tail), the driver has no such host, an operation failed.
* ``removing`` -- written before the driver removes anything; an interrupted ``rm`` is
  finished at the next start.

What is shown is checked, not remembered: ``ls``, ``inspect`` and ``status`` ask the driver
(:meth:`Provisioner.state`) and the engine (``/version`` over mutual TLS), and a host found
dead that was recorded running is recorded as ``error`` (event ``die``). ``start`` and
``restart`` bring such a host back.

Every operation on one host holds that host's lock; operations on different hosts run in
parallel. A create runs in a task of its own, so a client that goes away does not abort it
(``rm -f`` of a host being created cancels it, and the cancelled create cleans up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import provisioning
from dockyard.errors import (
    Conflict,
    DockyardError,
    NotFound,
    NotModified,
    Unavailable,
)
from dockyard.model import Host
from dockyard.services import Service
from dockyard.specs.provision import EngineTLS, HostRequest, Provisioner
from dockyard_machine.listing import Filters, display_state, first_line, natural_key
from dockyard_machine.options import SWARM_MASTER_PORT, EngineOptions, MachineCreate, SwarmOptions

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_machine.certs import HostCerts, MachineStore

log = logging.getLogger(__name__)

EVENT_TYPE = "machine"
#: Seconds ``ls`` waits for one host's state (Docker Machine's ``ls --timeout`` default).
STATE_TIMEOUT = 10.0
#: Seconds the engine's ``/version`` may take over TLS before it counts as unknown.
VERSION_TIMEOUT = 5.0
CONFIG_VERSION = 3  # Docker Machine's config.json ConfigVersion
#: What a lost create says (the daemon died or stopped while it ran).
INTERRUPTED = "the daemon stopped while the machine was being created"
TLS_ROTATION = "tls-rotation"
#: The capability of drivers whose hosts run an engine this machine reaches (the service then
#: checks it over mutual TLS: create's last step, ls's DOCKER column).
ENGINE = "engine"


@dataclass
class Observed:
    """A host as ``ls`` and ``inspect`` show it: the record and what was checked just now."""

    host: Host
    state: str  # display form: Running, Stopped, Error, Timeout, Creating...
    error: str = ""
    docker_version: str = "Unknown"
    response_time: float = 0.0

    @property
    def url(self) -> str:
        """The engine's URL when it runs (Docker Machine shows none otherwise)."""
        return self.host.engine_url if self.state == "Running" else ""


@dataclass
class Creation:
    """A create in progress: its task, and the progress lines it reports (``None`` ends them)."""

    name: str
    task: asyncio.Task[Host]
    messages: asyncio.Queue[str | None]


class MachineService(Service):
    """Machines: hosts provisioned through provision drivers (see the module docstring)."""

    name = "machines"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: dict[str, str] = {}  # host name -> a transition in progress (display form)
        self._creating: dict[str, asyncio.Task[Host]] = {}
        self._swarm: dict[str, SwarmOptions] = {}  # machines being created -> their swarm options

    # ------------------------------------------------------------------ paths
    @property
    def root(self) -> Path:
        """The machine store: ``<data-root>/machines``."""
        return Path(self.kernel.config.data_root) / "machines"

    @property
    def certs(self) -> MachineStore:
        # imported here: certs needs cryptography (~15 MiB), which a daemon with no machine
        # never uses
        from dockyard_machine.certs import MachineStore

        return MachineStore(self.root)

    def machine_dir(self, name: str) -> Path:
        return self.certs.host(name).dir

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Finish what the daemon's death interrupted: a host left ``creating`` is removed (or
        kept as ``error`` with the reason when that fails), a ``removing`` one is removed."""
        for host in self.store.list(Host):
            if host.state == "creating":
                await self._abandon(host, INTERRUPTED)
            elif host.state == "removing":
                try:
                    await self._remove(host, force=False)
                except DockyardError as exc:
                    log.warning("machine %s: finishing its removal failed: %s", host.name, exc)

    async def stop(self) -> None:
        """Creates in progress are cancelled (each removes what it made); machines keep
        running, as containers do."""
        tasks = list(self._creating.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # ------------------------------------------------------------------ records
    def get(self, name: str) -> Host:
        host = self.store.by_name(Host, name)
        if host is None:
            raise NotFound(f'Host does not exist: "{name}"')
        return host

    def _put(self, host: Host) -> None:
        with self.store.transaction() as tx:
            tx.put(host)

    def _drop(self, host: Host) -> None:
        with self.store.transaction() as tx, contextlib.suppress(NotFound):
            tx.delete(Host, host.id)

    def _emit(self, action: str, host: Host, **extra: str) -> None:
        self.kernel.emit(EVENT_TYPE, action, host.id, name=host.name, driver=host.driver, **extra)

    async def _driver(self, name: str) -> Provisioner:
        drv = await self.kernel.driver_ready("provision", name)
        assert isinstance(drv, Provisioner)
        return drv

    # ------------------------------------------------------------------ create
    async def create(self, request: MachineCreate) -> Creation:
        """Check ``request``, ready its driver and record the host as ``creating`` (a name in
        use is a :class:`Conflict`), then start the create in a task of its own. Errors before
        the task starts are raised here (the API answers them with a status); the task's own
        failure is raised by awaiting it, after it removed what it made."""
        request.check()
        name = request.name
        driver = await self._driver(request.driver)
        placeholder = Host(id=uuid.uuid4().hex, name=name, driver=request.driver, state="creating",
                           labels=request.engine.label_map())
        try:
            self._put(placeholder)
        except Conflict:
            raise Conflict(f'Docker machine "{name}" already exists') from None
        messages: asyncio.Queue[str | None] = asyncio.Queue()
        if request.swarm.is_swarm:
            self._swarm[name] = request.swarm
        task = asyncio.create_task(self._create(placeholder, request, driver, messages.put_nowait),
                                   name=f"machine-create-{name}")
        self._creating[name] = task
        task.add_done_callback(lambda _t: (self._creating.pop(name, None), self._swarm.pop(name, None),
                                           messages.put_nowait(None)))
        return Creation(name, task, messages)

    async def _create(self, placeholder: Host, request: MachineCreate, driver: Provisioner,
                      say: Callable[[str], None]) -> Host:
        name = request.name
        current = placeholder
        made: Host | None = None  # the driver's host, once provision() returned it
        async with self._lock(name):
            try:
                say("Running pre-create checks...")
                made_ca = not (self.certs.certs_dir / "ca.pem").exists()
                await asyncio.to_thread(self.certs.ensure_ca)
                if made_ca:
                    say(f"Creating CA: {self.certs.certs_dir / 'ca.pem'}")
                    say(f"Creating client certificate: {self.certs.certs_dir / 'cert.pem'}")
                say("Creating machine...")
                host_request = HostRequest(name=name, options=dict(request.driver_options),
                                           engine_options=request.engine.flags(),
                                           labels=request.engine.label_map(),
                                           engine_env=request.engine.environment())

                async def server_tls(prepared: Host) -> EngineTLS:
                    nonlocal current
                    # From here on the record names what the driver reserved, so a daemon killed
                    # during the rest of the create leaves a host the next start can remove.
                    recorded = dataclasses.replace(prepared, state="creating", reason="", labels=current.labels)
                    with self.store.transaction() as tx:
                        tx.delete(Host, current.id)
                        tx.put(recorded)
                    current = recorded
                    say(f"({name}) {', '.join(prepared.addresses)}: engine at {prepared.engine_url}")
                    say("Copying certs to the local machine directory...")
                    # a swarm master's certificate also dials engines (clientAuth), as Docker Machine's
                    files = await asyncio.to_thread(functools.partial(
                        self.certs.issue_host, name, prepared.addresses, client_auth=request.swarm.master))
                    await asyncio.to_thread(self._write_config, name, request, files, list(prepared.addresses))
                    say("Copying certs to the remote machine...")
                    say("Waiting for machine to be running, this may take a few minutes...")
                    return EngineTLS(files.ca, files.server_cert, files.server_key)

                made = await provisioning.provision(self.kernel, driver, host_request, server_tls)
                current = dataclasses.replace(made, state="creating", labels=current.labels)
                if ENGINE in driver.info.capabilities:
                    say("Checking connection to Docker...")
                    await asyncio.to_thread(self._engine_version, current, VERSION_TIMEOUT)
                current = dataclasses.replace(current, state="running", reason="")
                self._put(current)
            except BaseException as exc:
                # provision() removed the driver's host when one of its steps failed; a failure
                # after it returned leaves the host to remove here. The record and files go too.
                if made is not None:
                    try:
                        await driver.remove(made)
                    except DockyardError as cleanup:
                        self._put(dataclasses.replace(current, state="error", reason=(
                            f"the create failed ({exc}) and removing the host failed: {cleanup}; "
                            f"remove it with: dockyard machine rm -f {name}")))
                        raise
                self._drop(current)
                await asyncio.to_thread(shutil.rmtree, self.machine_dir(name), True)
                if not isinstance(exc, asyncio.CancelledError) and isinstance(exc, Exception):
                    log.info("machine %s: create failed: %s", name, exc)
                raise
        self._emit("create", current, url=current.engine_url)
        say("Docker is up and running!")
        return current

    def _write_config(self, name: str, request: MachineCreate, files: HostCerts, addresses: list[str]) -> None:
        """Docker Machine's ``machines/<name>/config.json`` (what the machine was made with)."""
        store = self.certs
        doc = {
            "ConfigVersion": CONFIG_VERSION, "Name": name, "DriverName": request.driver,
            "DriverOptions": dict(request.driver_options),
            "HostOptions": {
                "EngineOptions": request.engine.to_json(),
                "SwarmOptions": self._swarm_options(request.swarm, list(addresses)).to_json(),
                "AuthOptions": {
                    "CertDir": str(store.certs_dir), "CaCertPath": str(store.certs_dir / "ca.pem"),
                    "CaPrivateKeyPath": str(store.certs_dir / "ca-key.pem"),
                    "ClientCertPath": str(store.certs_dir / "cert.pem"),
                    "ClientKeyPath": str(store.certs_dir / "key.pem"),
                    "ServerCertPath": str(files.server_cert), "ServerKeyPath": str(files.server_key),
                    "StorePath": str(files.dir),
                },
            },
        }
        path = files.dir / "config.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=4))
        os.replace(tmp, path)

    @staticmethod
    def _swarm_options(swarm: SwarmOptions, addresses: list[str]) -> SwarmOptions:
        """A master's manager URL is Docker Machine's: ``tcp://ADDR:3376``."""
        if not swarm.master or swarm.host or not addresses:
            return swarm
        return dataclasses.replace(swarm, host=f"tcp://{addresses[0]}:{SWARM_MASTER_PORT}")

    def swarm_options(self, name: str) -> SwarmOptions:
        """The machine's ``SwarmOptions`` (from its create request while it is being made)."""
        pending = self._swarm.get(name)
        if pending is not None:
            return pending
        return SwarmOptions.from_json(self._config(name).get("HostOptions", {}).get("SwarmOptions"))

    def swarm_masters(self) -> dict[str, str]:
        """``discovery URL -> master machine name`` of the swarm masters this daemon made."""
        out = {}
        for host in self.store.list(Host):
            swarm = self.swarm_options(host.name)
            if swarm.is_swarm and swarm.master:
                out.setdefault(swarm.discovery, host.name)
        return out

    def swarm_of(self, name: str, masters: dict[str, str] | None = None) -> str:
        """The master of the swarm machine ``name`` is in (Docker Machine's ``ls`` SWARM column
        and ``--filter swarm=MASTER``), or "" when it is in none this daemon knows."""
        swarm = self.swarm_options(name)
        if not swarm.is_swarm:
            return ""
        return (self.swarm_masters() if masters is None else masters).get(swarm.discovery, "")

    def swarm_flags(self, host: Host) -> list[str]:
        """The engine flags that make the machine a swarm node (``--swarm``), for the prepared
        ``host``: the cluster store and its own address (``dockyard_engine_flags``)."""
        swarm = self.swarm_options(host.name)
        if not swarm.is_swarm or not host.addresses:
            return []
        port = int(host.engine_url.rpartition(":")[2] or 2376) if host.engine_url else 2376
        return swarm.engine_flags(host.addresses[0], port)

    def _config(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.machine_dir(name) / "config.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def engine_options(self, name: str) -> EngineOptions:
        return EngineOptions.from_json(self._config(name).get("HostOptions", {}).get("EngineOptions"))

    async def _abandon(self, host: Host, why: str) -> None:
        """Remove a host whose create will never finish; keep it as ``error`` if that fails."""
        try:
            driver = await self._driver(host.driver)
            await driver.remove(host)
        except DockyardError as exc:
            reason = (f"{why}; removing what was made failed: {exc}; "
                      f"remove it with: dockyard machine rm -f {host.name}")
            self._put(dataclasses.replace(host, state="error", reason=reason))
            log.warning("machine %s: %s", host.name, reason)
            self._emit("die", host, reason=first_line(reason))
            return
        self._drop(host)
        await asyncio.to_thread(shutil.rmtree, self.machine_dir(host.name), True)
        log.warning("machine %s: %s; removed what was made", host.name, why)
        self._emit("destroy", host, reason=why)

    # ------------------------------------------------------------------ observe
    async def observe(self, host: Host, timeout: float = STATE_TIMEOUT) -> Observed:
        """The host as it is now: the driver's state (a host recorded running and found dead is
        recorded as ``error``, event ``die``) and, when it runs, the engine's version over
        mutual TLS (a failure there is the host's error, as in Docker Machine's ``ls``)."""
        began = time.monotonic()
        busy = self._busy.get(host.name)
        if busy:
            return Observed(host, busy, response_time=time.monotonic() - began)
        if host.state in ("creating", "removing"):
            return Observed(host, display_state(host.state), host.reason, response_time=time.monotonic() - began)
        try:
            driver = await self._driver(host.driver)
        except DockyardError as exc:
            return Observed(host, "Error", f"provision driver {host.driver}: {exc}",
                            response_time=time.monotonic() - began)
        try:
            st = await asyncio.wait_for(driver.state(host), timeout)
        except TimeoutError:
            return Observed(host, "Timeout", response_time=timeout)
        except Exception as exc:  # noqa: BLE001 - one broken host is its own error, not the listing's
            return Observed(host, "Error", str(exc) or type(exc).__name__, response_time=time.monotonic() - began)
        state, reason = st.state, st.reason
        if state == "none":
            state, reason = "error", (f"the {host.driver} provision driver has no such host (removed outside "
                                      f"dockyard?); remove it with: dockyard machine rm -f {host.name}")
        host = self._record_observed(host, state, reason)
        observed = Observed(host, display_state(state), reason if state != "running" else "")
        if state == "running" and ENGINE in driver.info.capabilities:
            try:
                observed.docker_version = "v" + await asyncio.wait_for(
                    asyncio.to_thread(self._engine_version, host, VERSION_TIMEOUT), timeout)
            except (DockyardError, TimeoutError, OSError) as exc:
                observed.error = str(exc) or type(exc).__name__
        observed.response_time = time.monotonic() - began
        return observed

    def _record_observed(self, host: Host, state: str, reason: str) -> Host:
        """Record a state found by looking (not while an operation on the host runs)."""
        if self._lock(host.name).locked() or (state, reason) == (host.state, host.reason):
            return host
        if state == "stopped" and host.state == "stopped":
            return host
        current = self.store.by_name(Host, host.name)
        if current is None or current.id != host.id or current.state in ("creating", "removing"):
            return host
        updated = dataclasses.replace(current, state=state, reason=reason)
        self._put(updated)
        if current.state == "running" and state != "running":
            self._emit("die", updated, reason=first_line(reason))
        return updated

    def _client_tls(self, host: Host) -> Any:
        from dockyard.client import TlsFiles

        files = self.certs.host(host.name)
        return TlsFiles(ca=str(files.ca), cert=str(files.cert), key=str(files.key))

    def _engine_version(self, host: Host, timeout: float) -> str:
        """The engine's version, asked over mutual TLS with the store's client certificate (the
        check Docker Machine's ``Checking connection to Docker...`` makes). Blocking."""
        from dockyard.client import Client, DaemonAddress

        address = DaemonAddress.parse(host.engine_url, tls=self._client_tls(host), verify=True)
        return str(Client(address, timeout=timeout).get("/version").get("Version") or "")

    async def list(self, filters: Filters | None = None, timeout: float = STATE_TIMEOUT) -> list[Observed]:
        """Every host, checked in parallel, filtered, in Docker Machine's order."""
        hosts = self.store.list(Host)
        observed = await asyncio.gather(*(self.observe(h, timeout) for h in hosts))
        if filters:
            masters = self.swarm_masters()
            observed = [o for o in observed
                        if filters.matches(o.host.name, o.host.driver, o.state, o.host.labels,
                                           swarm=self.swarm_of(o.host.name, masters))]
        return sorted(observed, key=lambda o: natural_key(o.host.name))

    async def inspect(self, name: str) -> dict[str, Any]:
        """Docker Machine's ``inspect`` document (``config.json`` with the driver's record),
        plus the state and its reason (see docs/api-extensions.md)."""
        host = self.get(name)
        observed = await self.observe(host)
        host = observed.host
        config = self._config(name)
        files = self.certs.host(name)
        driver_doc: dict[str, Any] = {"IPAddress": host.addresses[0] if host.addresses else "",
                                      "MachineName": host.name, "StorePath": str(self.root)}
        driver_doc.update({_pascal(k): v for k, v in (host.extra or {}).items()})
        driver_doc.update(await self._ssh_fields(host))
        host_options = config.get("HostOptions") or {
            "EngineOptions": EngineOptions().to_json(),
            "SwarmOptions": {"IsSwarm": False, "Master": False, "Discovery": "", "Host": "", "Address": ""},
            "AuthOptions": {"StorePath": str(files.dir)},
        }
        return {
            "ConfigVersion": CONFIG_VERSION, "Driver": driver_doc, "DriverName": host.driver,
            "DriverOptions": config.get("DriverOptions") or {}, "HostOptions": host_options, "Name": host.name,
            # dockyard's additions
            "Id": host.id, "Created": host.created, "State": observed.state, "Error": observed.error,
            "URL": observed.url, "Addresses": list(host.addresses), "DockerVersion": observed.docker_version,
            "Labels": dict(host.labels),
        }

    async def _ssh_fields(self, host: Host) -> dict[str, Any]:
        """Docker Machine's ``Driver.SSH*`` fields from the driver's :meth:`ssh_target` (none
        for a driver without SSH, or a host it no longer knows)."""
        try:
            target = await (await self._driver(host.driver)).ssh_target(host)
        except DockyardError:
            return {}
        if target is None:
            return {}
        return {"SSHHostname": target.address, "SSHPort": target.port, "SSHUser": target.user,
                "SSHKeyPath": target.key_path, "SSHKnownHosts": target.known_hosts}

    # ------------------------------------------------------------------ transitions
    async def _transition(self, name: str, busy: str, action: Callable[[Host, Provisioner], Any]) -> Host:
        """Run ``action`` on host ``name`` under its lock, shown as ``busy`` meanwhile."""
        if name in self._creating:
            raise Conflict(f'Machine "{name}" is being created; try again when it is done')
        async with self._lock(name):
            host = self.get(name)
            if host.state in ("creating", "removing"):
                raise Conflict(f'Machine "{name}" is {host.state} (being made or taken apart); try again when it is done')
            driver = await self._driver(host.driver)
            self._busy[name] = busy
            try:
                return await action(host, driver)
            finally:
                self._busy.pop(name, None)

    async def _live(self, host: Host, driver: Provisioner) -> str:
        st = await driver.state(host)
        return st.state

    def _settle(self, host: Host, state: str, reason: str = "") -> Host:
        host = dataclasses.replace(self.get(host.name), state=state, reason=reason)
        self._put(host)
        return host

    @contextlib.asynccontextmanager
    async def _recorded_failure(self, host: Host) -> AsyncIterator[None]:
        """Driver work on ``host``: when it fails, the host's state is recorded as the driver
        then sees it (:meth:`_failed`) and the error goes on."""
        try:
            yield
        except BaseException as exc:
            await self._failed(host, exc)
            raise

    async def _failed(self, host: Host, exc: BaseException) -> None:
        """An operation failed: record the host's state as the driver now sees it."""
        try:
            st = await (await self._driver(host.driver)).state(host)
            state, reason = st.state, st.reason
        except DockyardError:
            state, reason = "error", ""
        if state == "none":
            state = "error"
        self._settle(host, state, reason or str(exc))

    async def start_machine(self, name: str) -> Host:
        """Start a stopped (or failed) host; :class:`NotModified` when it runs."""
        async def act(host: Host, driver: Provisioner) -> Host:
            if await self._live(host, driver) == "running":
                raise NotModified(f'Machine "{name}" is already running.')
            async with self._recorded_failure(host):
                await driver.start(host)
            host = self._settle(host, "running")
            self._emit("start", host)
            return host

        return await self._transition(name, "Starting", act)

    async def stop_machine(self, name: str, action: str = "stop") -> Host:
        """Stop a host (``kill`` is the same power-off here: the spec's ``stop`` already kills
        what is left when the engine does not exit); :class:`NotModified` when it is stopped."""
        async def act(host: Host, driver: Provisioner) -> Host:
            if await self._live(host, driver) == "stopped":
                raise NotModified(f'Machine "{name}" is already stopped.')
            async with self._recorded_failure(host):
                await driver.stop(host)
            host = self._settle(host, "stopped")
            self._emit(action, host)
            return host

        return await self._transition(name, "Stopping", act)

    async def restart_machine(self, name: str) -> Host:
        """Stop the host if it runs (or failed), then start it."""
        async def act(host: Host, driver: Provisioner) -> Host:
            async with self._recorded_failure(host):
                if await self._live(host, driver) != "stopped":
                    await driver.stop(host)
                await driver.start(host)
            host = self._settle(host, "running")
            self._emit("restart", host)
            return host

        return await self._transition(name, "Restarting", act)

    async def regenerate_certs(self, name: str) -> Host:
        """A new server key and certificate for the host (same CA, same addresses), installed
        through the driver (:meth:`Provisioner.update_tls`); a running engine is restarted to
        present it. Its data (images, containers, volumes) stays."""
        async def act(host: Host, driver: Provisioner) -> Host:
            if TLS_ROTATION not in driver.info.capabilities:
                raise Unavailable(f"the {host.driver} provision driver cannot replace a host's certificate "
                                  f"(it does not declare the capability '{TLS_ROTATION}')")
            files = await asyncio.to_thread(self.certs.regenerate, name, host.addresses or None)
            await driver.update_tls(host, EngineTLS(files.ca, files.server_cert, files.server_key))
            if await self._live(host, driver) == "running":
                async with self._recorded_failure(host):
                    await driver.stop(host)
                    await driver.start(host)
                host = self._settle(host, "running")
            self._emit("regenerate-certs", host)
            return host

        return await self._transition(name, "Restarting", act)

    async def upgrade_machine(self, name: str) -> dict[str, str]:
        """Bring the host's engine to the dockyard installed on this machine
        (:meth:`Provisioner.upgrade`: netns restarts it on this machine's code; ssh and qemu
        install it again). A stopped host is started; containers keep running. Returns the
        engine's version before and after."""
        async def act(host: Host, driver: Provisioner) -> dict[str, str]:
            before = after = ""
            running = await self._live(host, driver) == "running"
            engine = ENGINE in driver.info.capabilities
            if running and engine:
                with contextlib.suppress(DockyardError, OSError):
                    before = await asyncio.to_thread(self._engine_version, host, VERSION_TIMEOUT)
            async with self._recorded_failure(host):
                if not running and await self._live(host, driver) == "error":
                    await driver.stop(host)
                files = self.certs.host(name)
                flags = [*self.engine_options(name).flags(), *provisioning.engine_flags(self.kernel, host)]
                await driver.upgrade(host, EngineTLS(files.ca, files.server_cert, files.server_key), flags)
                if engine:
                    after = await asyncio.to_thread(self._engine_version, host, VERSION_TIMEOUT)
            host = self._settle(host, "running")
            self._emit("upgrade", host, version=after)
            return {"PreviousVersion": before, "Version": after}

        return await self._transition(name, "Upgrading", act)

    async def remove_machine(self, name: str, force: bool = False) -> None:
        """Remove the host and everything made for it, whatever its state. A host being
        created is a :class:`Conflict` unless ``force``, which cancels the create (the create
        removes what it made). With ``force`` the record and files go even when the driver
        fails (Docker Machine's ``rm -f``)."""
        task = self._creating.get(name)
        if task is not None:
            if not force:
                raise Conflict(f'Machine "{name}" is being created; remove it with force to cancel the create')
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if self.store.by_name(Host, name) is None:
                return
        async with self._lock(name):
            host = self.get(name)
            await self._remove(host, force)

    async def _remove(self, host: Host, force: bool) -> None:
        host = dataclasses.replace(host, state="removing")
        self._put(host)
        try:
            driver = await self._driver(host.driver)
            await driver.remove(host)
        except DockyardError as exc:
            if not force:
                self._put(dataclasses.replace(host, state="error",
                                              reason=f"removing it failed: {exc}; rm -f removes the record anyway"))
                raise
            log.warning("machine %s: the driver could not remove it (%s); removed its record anyway", host.name, exc)
        self._drop(host)
        await asyncio.to_thread(shutil.rmtree, self.machine_dir(host.name), True)
        self._locks.pop(host.name, None)
        self._emit("destroy", host)

    # ------------------------------------------------------------------ connection material
    async def env(self, name: str) -> dict[str, Any]:
        """What ``env`` and ``config`` need: the engine's URL and the client certificate bundle
        (CA, certificate, key: PEM). The host must run (Docker Machine checks the same)."""
        host = self.get(name)
        observed = await self.observe(host)
        if observed.state != "Running":
            raise Conflict(f"{name} is not running. Please start it in order to use the connection settings")
        files = self.certs.host(name)
        try:
            ca, cert, key = (p.read_text() for p in (files.ca, files.cert, files.key))
        except FileNotFoundError as exc:
            raise Unavailable(f"machine {name}'s certificates are missing ({exc.filename}); "
                              f"regenerate them: dockyard machine regenerate-certs {name}") from exc
        swarm = self.swarm_options(name)
        return {"Name": name, "URL": host.engine_url, "Addresses": list(host.addresses),
                "CA": ca, "Cert": cert, "Key": key, "SwarmHost": swarm.host if swarm.master else ""}


def _pascal(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


__all__ = ["EVENT_TYPE", "INTERRUPTED", "Creation", "MachineService", "Observed"]
