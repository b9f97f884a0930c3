"""The Kernel: owns the plugin manager, driver registry, configuration, store and event bus.

There is no module-level manager: build a kernel with :meth:`Kernel.build` and pass it down.
Tests build a fresh one each (``autoload=False`` plus explicit ``plugins``).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pluggy

from dockyard import __version__
from dockyard.config import Config
from dockyard.errors import (
    DriverNotInstalled,
    InvalidArgument,
    PluginConflictError,
    PluginError,
    ServiceNotInstalled,
    Unavailable,
)
from dockyard.events import EventBus, HookFailure, hook_caller
from dockyard.model import Event
from dockyard.registry import Registry, check_driver_class, register_checked
from dockyard.services import DEFAULT_ROLE, Service, ServiceInfo, role_distribution, start_order
from dockyard.specs import NAMESPACES, SPEC_CLASSES, Driver, DriverContext
from dockyard.specs._base import AUTO_PRIORITY, PROJECT
from dockyard.specs.cluster import ClusterStore, StoreURL
from dockyard.specs.config import ConfigOption
from dockyard.specs.events import BackgroundService, EventJournal
from dockyard.specs.provides import DriverSource, ExternalPlugin, Provided
from dockyard.specs.supervisor import SupervisorBackend, Supervisors
from dockyard.store import Store

if TYPE_CHECKING:
    from dockyard.services.containers import Containers
    from dockyard.services.images import Images
    from dockyard.services.networks import Networks
    from dockyard.services.system import System
    from dockyard.services.volumes import Volumes

log = logging.getLogger(__name__)


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every dockyard hook specification added."""
    pm = pluggy.PluginManager(PROJECT)
    for spec in SPEC_CLASSES:
        pm.add_hookspecs(spec)
    return pm


@dataclass
class Kernel:
    config: Config
    pm: pluggy.PluginManager
    registry: Registry
    events: EventBus = field(default_factory=EventBus)
    store: Store | None = None
    drivers: dict[tuple[str, str], Driver] = field(default_factory=dict)
    #: (kind, name) of the drivers in ``drivers`` whose ``setup()`` has run and that are not
    #: closed: the kernel's own record, nothing is written onto a driver.
    _ready: set[tuple[str, str]] = field(default_factory=set)
    services: dict[str, Service] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _driver_lock: asyncio.Lock | None = None
    _config_options: list[ConfigOption] = field(default_factory=list)
    _auto_selected: dict[str, str] = field(default_factory=dict)
    _service_infos: dict[str, ServiceInfo] | None = None
    _provided: dict[type, Any] | None = None
    _supervisors: Supervisors | None = None
    _driver_sources: list[DriverSource] | None = None
    #: (kind, name) -> the DriverSource that served a driver found at run time
    _discovered: dict[tuple[str, str], str] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: Config | None = None, plugins: Iterable[Any] = (),
              autoload: bool = True, environ: dict[str, str] | None = None) -> Kernel:
        """Assemble a kernel. ``autoload`` loads entry-point plugins; ``plugins`` are extra
        plugin objects registered after them (so their hooks are called first).

        Raises :class:`dockyard.errors.PluginError` for a conflicting or invalid explicit plugin.
        Entry-point failures are recorded in ``registry.problems`` and listed, not raised.
        """
        config = config or Config()
        registry = Registry(allow=config.plugin_allow, deny=config.plugin_deny, environ=environ)
        pm = new_plugin_manager()
        kernel = cls(config=config, pm=pm, registry=registry)
        kernel.events.hook_caller = hook_caller(pm, kernel, kernel.events.failures)
        # Historic: plugins registered later (explicit ones below, or at run time) add theirs too.
        pm.hook.dockyard_config_options.call_historic(
            result_callback=lambda result: kernel._config_options.extend(result or ()))
        registry.scan()
        if autoload:
            registry.load_plugins(pm)
        for i, obj in enumerate(plugins):
            name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{i}"
            problem = register_checked(pm, obj, name)
            if problem:
                raise PluginError(f"plugin {name}: {problem}")
        return kernel

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def config_options(self, keys: Iterable[str] | None = None) -> list[ConfigOption]:
        """Settings declared by plugins (``dockyard_config_options``) and by every installed
        driver class (``Driver.config_options``); a driver that fails to load is recorded.

        With ``keys`` (the keys a configuration sets), the driver classes are imported only
        when one of them is declared neither by the core nor by a plugin: a daemon then
        imports only the drivers it uses (the unused ones' modules were ~1.1 MiB of its RSS),
        while a driver's key or an unknown key still reads every driver's settings, so what
        is accepted and every error stay as they were. An unused driver that fails to import
        is then found by ``dockyard plugins list``, not in ``/info``'s warnings."""
        out = list(self._config_options)
        if keys is not None:
            from dockyard.config import CORE_OPTIONS

            declared = {o.name for o in (*CORE_OPTIONS, *out)}
            if all(k in declared for k in keys):
                return out
        for kind in NAMESPACES:
            for name in self.registry.driver_names(kind):
                try:
                    out.extend(self.registry.load_driver(kind, name).config_options)
                except PluginError:
                    pass
        return out

    def validate_config(self, reload: bool = False) -> None:
        self.config.validate(self.config_options(self.config.values))
        self.hook.dockyard_configure(kernel=self, config=dict(self.config.values), reload=reload)

    # ------------------------------------------------------------------ drivers
    def selected_driver_name(self, kind: str) -> str:
        _area, key, default = NAMESPACES[kind]
        if key is None:
            return default
        return self.configured_driver_name(kind) or self._auto_selected.get(kind) or default

    def configured_driver_name(self, kind: str) -> str:
        """The driver named in the configuration ("" when the kernel may choose). The cluster
        store is configured by URL: its scheme names the driver (``etcd://...`` -> ``etcd``)."""
        key = NAMESPACES[kind][1]
        value = str(self.config.values.get(key) or "") if key else ""
        if kind == "cluster" and value:
            return StoreURL.parse(value).scheme
        return value

    def _chooses_automatically(self, kind: str) -> bool:
        _area, key, default = NAMESPACES[kind]
        return bool(key and default and not self.configured_driver_name(kind) and kind not in self._auto_selected)

    async def _select_automatically(self, kind: str) -> None:
        """No driver configured: ready the first that works (``AUTO_PRIORITY``, then the rest)."""
        installed = self.registry.driver_names(kind)
        order = [n for n in AUTO_PRIORITY.get(kind, ()) if n in installed]
        order += [n for n in installed if n not in order]
        failures: list[str] = []
        for name in order:
            try:
                await self.driver_ready(kind, name)
            except (PluginError, Unavailable) as exc:
                failures.append(f"{name}: {exc}")
                self.drivers.pop((kind, name), None)
                continue
            self._auto_selected[kind] = name
            if failures:
                log.warning("%s driver %s chosen; not usable here: %s", kind, name, "; ".join(failures))
            return
        if failures:
            raise Unavailable(f"no usable {kind} driver: " + "; ".join(failures))
        default = NAMESPACES[kind][2]
        raise self.registry.not_installed(kind, default)

    def driver(self, kind: str, name: str | None = None) -> Driver:
        """The (cached) driver instance ``name`` of ``kind``; the configured one by default.

        Raises DriverNotInstalled (naming the distribution to install), PluginLoadError,
        PluginConflictError or PluginBlocked.
        """
        name = name or self.selected_driver_name(kind)
        if not name:
            raise InvalidArgument(f"no {kind} driver is configured")
        key = (kind, name)
        provided = self.provided() if key not in self.drivers else {}  # may build the cluster store
        if key not in self.drivers:
            cls = self._driver_class(kind, name)
            data_dir = self.config.data_root / kind / name
            run_dir = self.config.exec_root / kind / name
            opts = self.config.options_for(f"{kind}-opts")
            if kind == "storage":
                for extra in self.hook.dockyard_storage_options(kernel=self, driver=name):
                    for k, v in (extra or {}).items():
                        opts.setdefault(k, str(v))
            self.drivers[key] = cls(DriverContext(
                data_dir=data_dir, run_dir=run_dir, owner=self.config.owner,
                options=opts, daemon_config=self.config.effective(cls.config_options),
                provided=provided))
        return self.drivers[key]

    def _driver_class(self, kind: str, name: str) -> type[Driver]:
        """The installed driver class; else one a :class:`DriverSource` finds at run time
        (checked like an installed one); else the not-installed error, with where the sources
        looked."""
        try:
            return self.registry.load_driver(kind, name)
        except DriverNotInstalled as exc:
            hints = []
            for source in self.driver_sources():
                if kind not in source.kinds:
                    continue
                cls = source.driver_class(kind, name)
                if cls is None:
                    hints.append(source.missing(kind, name))
                    continue
                problem = check_driver_class(cls, kind)
                if problem:
                    raise PluginError(f"{kind} driver {name!r} of {source.name}: {problem}") from exc
                self._discovered[(kind, name)] = source.name
                return cls
            if any(hints):
                raise DriverNotInstalled(kind, name, self.driver_names(kind), exc.distribution,
                                         "; ".join(h for h in hints if h)) from None
            raise

    def driver_sources(self) -> list[DriverSource]:
        """Sources of drivers found at run time (``dockyard_driver_sources``), collected once.
        Two with one name are a recorded ``PluginConflictError`` and neither is used."""
        if self._driver_sources is None:
            found: dict[str, list[tuple[str, DriverSource]]] = {}
            for impl in self.pm.hook.dockyard_driver_sources.get_hookimpls():  # first registered first
                for source in impl.function(kernel=self) or ():
                    if not isinstance(source, DriverSource):
                        raise PluginError(f"{impl.plugin_name}: dockyard_driver_sources returned {source!r}, "
                                          "not a dockyard.specs.provides.DriverSource")
                    found.setdefault(source.name, []).append((impl.plugin_name, source))
            self._driver_sources = []
            for name, offers in found.items():
                if len(offers) > 1:
                    self.registry.problems.append(PluginConflictError(
                        "driver source", name, [plugin for plugin, _s in offers]))
                    continue
                self._driver_sources.append(offers[0][1])
        return self._driver_sources

    def driver_names(self, kind: str) -> list[str]:
        """Driver names of ``kind``: the installed ones and those sources found at run time
        serve now (``/info`` lists both, as dockerd lists its plugins beside built-ins)."""
        names = set(self.registry.driver_names(kind))
        for source in self.driver_sources():
            if kind in source.kinds:
                names.update(source.names(kind))
        return sorted(names)

    def external_plugins(self) -> list[ExternalPlugin]:
        """The plugin processes every driver source found (Docker's legacy plugins), by name."""
        out: list[ExternalPlugin] = []
        for source in self.driver_sources():
            out.extend(source.plugins())
        return sorted(out, key=lambda p: (p.name, p.source))

    def provided(self) -> dict[type, Any]:
        """Cross-area implementations plugins offer (``dockyard_provides``), by interface;
        collected once. Two for one interface are a recorded ``PluginConflictError`` and
        neither is handed out."""
        if self._provided is None:
            found: dict[type, list[Provided]] = {}
            for result in self.hook.dockyard_provides(kernel=self):
                for p in result or ():
                    if not isinstance(p, Provided):
                        raise PluginError(f"dockyard_provides returned {p!r}, not a dockyard.specs.Provided")
                    found.setdefault(p.interface, []).append(p)
            self._provided = {}
            for interface, offers in found.items():
                if len(offers) > 1:
                    self.registry.problems.append(PluginConflictError(
                        f"provider of {interface.__qualname__}", interface.__qualname__, [p.name for p in offers]))
                    continue
                self._provided[interface] = offers[0].implementation
            if self.configured_driver_name("cluster"):
                # The configured cluster store is provided too (the overlay network needs it),
                # set up by start() before any service; it wins over a plugin's offer.
                try:
                    self._provided[ClusterStore] = self.driver("cluster")
                except PluginError as exc:
                    self.registry.problems.append(exc)  # start() raises it
            # the kernel's own: the supervisor backends (a provisioner's unit for its target)
            self._provided.setdefault(Supervisors, self.supervisors())
        return self._provided

    def supervisors(self) -> Supervisors:
        """The supervisor backends plugins offer (``dockyard_supervisors``), by name; collected
        once. A name two plugins give is a recorded ``PluginConflictError`` and usable by neither."""
        if self._supervisors is None:
            found: dict[str, list[tuple[str, SupervisorBackend]]] = {}
            for impl in self.pm.hook.dockyard_supervisors.get_hookimpls():
                for b in impl.function(kernel=self) or ():
                    if not isinstance(b, SupervisorBackend):
                        raise PluginError(f"{impl.plugin_name}: dockyard_supervisors returned {b!r}, "
                                          "not a dockyard.specs.SupervisorBackend")
                    found.setdefault(b.name, []).append((impl.plugin_name, b))
            backends, conflicts = {}, {}
            for name, offers in sorted(found.items()):
                if len(offers) > 1:
                    conflicts[name] = tuple(plugin for plugin, _b in offers)
                    self.registry.problems.append(PluginConflictError("supervisor", name, list(conflicts[name])))
                    continue
                backends[name] = offers[0][1]
            self._supervisors = Supervisors(backends, conflicts)
        return self._supervisors

    async def driver_ready(self, kind: str, name: str | None = None) -> Driver:
        """Like :meth:`driver`, and ``setup()`` has run (once).

        For a kind chosen by configuration (``storage-driver``) that is not configured, the
        first call chooses: the first installed driver that sets up (:meth:`_select_automatically`).
        """
        if name is None and self._chooses_automatically(kind):
            await self._select_automatically(kind)
        if self._driver_lock is None:
            self._driver_lock = asyncio.Lock()
        async with self._driver_lock:
            name = name or self.selected_driver_name(kind)
            drv = self.driver(kind, name)
            key = (kind, name)
            if key not in self._ready:
                drv.context.data_dir.mkdir(parents=True, exist_ok=True)
                drv.context.run_dir.mkdir(parents=True, exist_ok=True)
                await drv.setup()
                self._ready.add(key)
        return drv

    def is_ready(self, kind: str, name: str) -> bool:
        """True when driver ``name`` of ``kind`` was set up by :meth:`driver_ready` and is not
        closed (a driver merely constructed by :meth:`driver` is not ready)."""
        return (kind, name) in self._ready

    def ready_drivers(self, kind: str) -> dict[str, Driver]:
        """The set-up (not closed) driver instances of ``kind``, by name."""
        return {n: d for (k, n), d in self.drivers.items() if k == kind and (k, n) in self._ready}

    async def cluster_store(self) -> ClusterStore:
        """The cluster store the ``cluster-store`` URL selects, connected (:meth:`start`
        readies it; a CLI's kernel connects on the first call). Drivers get the same instance
        as ``context.need(ClusterStore)``.

        Raises :class:`~dockyard.errors.InvalidArgument` when none is configured or the URL is
        malformed, :class:`~dockyard.errors.DriverNotInstalled` for a scheme no installed
        driver serves (naming ``dockyard-cluster-<scheme>``), and
        :class:`~dockyard.errors.StoreUnavailable` when it cannot be reached.
        """
        if not self.configured_driver_name("cluster"):
            raise InvalidArgument("no cluster store is configured (--cluster-store etcd://HOST:PORT/PREFIX)")
        return cast(ClusterStore, await self.driver_ready("cluster"))

    # ------------------------------------------------------------------ services
    @property
    def role(self) -> str:
        """The role this daemon serves (``engine``: this host); picks the service providers."""
        return str(self.config.values.get("role") or DEFAULT_ROLE)

    def service_infos(self) -> dict[str, ServiceInfo]:
        """The services installed providers offer for this kernel's role, by name (read once)."""
        if self._service_infos is None:
            found = self.registry.load_services(self.role)
            self._service_infos = {name: info for name, (info, _rec) in found.items()}
        return self._service_infos

    def service(self, name: str) -> Service:
        """The service ``name``, built on first use by the provider that offers it.

        Raises :class:`~dockyard.errors.ServiceNotInstalled` (naming the distribution to
        install) when no installed provider offers it for this role.
        """
        svc = self.services.get(name)
        if svc is None:
            info = self.service_infos().get(name)
            if info is None:
                raise ServiceNotInstalled(name, self.role, role_distribution(self.role))
            svc = self.services[name] = info.factory(self)
        return svc

    def has_service(self, name: str) -> bool:
        return name in self.service_infos()

    # Typed accessors of the well-known services: callers are typed against the interfaces in
    # ``dockyard.services.*``, whichever provider implements them.
    @property
    def containers(self) -> Containers:
        return cast("Containers", self.service("containers"))

    @property
    def images(self) -> Images:
        return cast("Images", self.service("images"))

    @property
    def networks(self) -> Networks:
        return cast("Networks", self.service("networks"))

    @property
    def volumes(self) -> Volumes:
        return cast("Volumes", self.service("volumes"))

    @property
    def system(self) -> System:
        return cast("System", self.service("system"))

    # ------------------------------------------------------------------ life cycle
    def open_store(self) -> Store:
        if self.store is None:
            self.store = Store(self.config.data_root / "state.db")
        return self.store

    @property
    def daemon_id(self) -> str:
        store = self.open_store()
        value = store.meta("daemon-id")
        if value is None:
            value = str(uuid.uuid4())
            with store.transaction() as tx:
                tx.set_meta("daemon-id", value)
        return value

    def emit(self, type_: str, action: str, actor_id: str, **attributes: str) -> Event:
        """Emit an event (call after the transaction that made the change committed)."""
        return self.events.emit(Event(type=type_, action=action, actor_id=actor_id,
                                      attributes={k: str(v) for k, v in attributes.items()}))

    def start_order(self) -> list[str]:
        """Service names in start order (from each ``ServiceInfo.after``); stop is the reverse."""
        return start_order(self.service_infos())

    async def start(self) -> None:
        """Open the store, ready the configured drivers, start the services in order, then
        the background services.

        A driver named in the configuration is readied here, so a broken one stops the daemon
        at once; an unconfigured kind is chosen when a service first asks for it (the engine's
        image service does at its start)."""
        self.open_store()
        for kind, (_area, key, _default) in NAMESPACES.items():
            if key is not None and self.configured_driver_name(kind):
                await self.driver_ready(kind)
        conflicts = [p for p in self.registry.problems if isinstance(p, PluginConflictError) and p.kind == "service"]
        if conflicts:
            raise conflicts[0]
        journal = self.provided().get(EventJournal)
        if journal is not None:
            self.events.attach(journal)  # before any service emits
        for name in self.start_order():
            await self.service(name).start()
        services: list[BackgroundService] = []
        for result in self.hook.dockyard_background_services(kernel=self):
            services.extend(result or ())
        for svc in services:
            self._tasks.append(asyncio.create_task(self._run_service(svc), name=svc.name))

    async def _run_service(self, svc: BackgroundService) -> None:
        try:
            await svc.run(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, shown in /info
            self.events.failures.append(HookFailure(svc.name, "background-service", repr(exc)))
            log.exception("background service %s failed", svc.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks.clear()
        for name in reversed(self.start_order()):
            if name in self.services:
                try:
                    await self.services[name].stop()
                except Exception:  # noqa: BLE001
                    log.exception("service %s failed to stop", name)
        self.events.close()
        if self.events.journal is not None:
            try:
                await self.events.journal.close()
            except Exception:  # noqa: BLE001
                log.exception("the event journal failed to close")
        for key, drv in list(self.drivers.items()):
            if key in self._ready:
                self._ready.discard(key)
                try:
                    await drv.close()
                except Exception:  # noqa: BLE001
                    log.exception("driver %s failed to close", drv.info.name)
        if self.store is not None:
            self.store.close()
            self.store = None

    # ------------------------------------------------------------------ facts
    def facts(self) -> dict[str, Any]:
        """Host facts the API fronts report (/info, /version)."""
        uname = platform.uname()
        return {
            "version": __version__,
            "kernel": uname.release,
            "os": "linux" if uname.system == "Linux" else uname.system.lower(),
            "arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
            "cgroup_version": cgroup_version(),
            "hostname": uname.node,
        }


def cgroup_version() -> str:
    """``"2"`` on a unified (pure v2) hierarchy, ``"1"`` on legacy or hybrid."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "2"
    return "1"
