"""The one place that reads entry points.

Three groups matter: ``dockyard.drivers.<kind>`` (stevedore loads drivers by name),
``dockyard.plugins`` (feature plugins registered on the kernel's pluggy manager) and
``dockyard.cli`` (click groups, resolved lazily by the CLI); besides, ``dockyard.services``
(service providers) and ``dockyard.providers`` (which distribution provides a driver that is not
installed, read only to say so). Everything is read fresh from
``importlib.metadata`` on each :meth:`Registry.scan` -- no process-wide cache -- so that an
install or uninstall is seen by the next kernel, and every entry point is known with its
distribution, which is what conflict and load errors must name.

The one exception is the CLI's command lookup (:meth:`Registry.scan_cached`): every
``dockyard <plugin command>`` would otherwise spend ~50 ms importing ``importlib.metadata`` and
reading a hundred distributions. It keeps the records in a file keyed by the interpreter, the
import path and the modification times of every ``*.dist-info``/``*.egg-info`` on it, so an
install, upgrade or uninstall changes the key and the next command scans afresh
(:mod:`dockyard.entrycache`: the key, and the reader the click-free fast path uses too).
"""

from __future__ import annotations

import importlib
import json
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.entrycache import installation_key as _installation_key
from dockyard.entrycache import read as _read_cache
from dockyard.errors import (
    DriverNotInstalled,
    PluginBlocked,
    PluginConflictError,
    PluginError,
    PluginLoadError,
)

if TYPE_CHECKING:
    import importlib.metadata as md
    from pathlib import Path

    import pluggy

    from dockyard.services import ServiceInfo
    from dockyard.specs._base import Driver

# The spec names (dockyard.specs._base) are imported where they are used: that module imports
# pluggy, which imports importlib.metadata (~15 ms), and the CLI's cached command lookup
# (scan_cached, load_cli) needs none of them.

PLUGIN_GROUP = "dockyard.plugins"
#: Environment variable naming extra feature-plugin modules (comma separated), imported and
#: registered after the entry points, as pytest's ``PYTEST_PLUGINS``; their records say so in
#: place of a distribution.
PLUGINS_ENV = "DOCKYARD_PLUGINS"
CLI_GROUP = "dockyard.cli"
SERVICE_GROUP = "dockyard.services"
D = TypeVar("D")  # a descriptor class loaded from an entry-point group
#: Feature plugins may set this module attribute; another major is refused.
PLUGIN_API_ATTR = "DOCKYARD_PLUGIN_API"


@dataclass
class PluginRecord:
    """One entry point as installed, and what became of it."""

    name: str
    group: str
    kind: str  # "plugin", "cli", or a driver kind ("storage", "network"...)
    area: str  # a driver's area, "feature" for plugins, "cli" for command groups
    target: str  # "module:attr"
    distribution: str
    version: str
    status: str = "available"  # available | loaded | failed | blocked | conflict
    error: str = ""
    description: str = ""
    entry_point: md.EntryPoint | None = field(default=None, repr=False, compare=False)

    @property
    def ident(self) -> str:
        return f"{self.group}:{self.name}"

    def load(self) -> Any:
        """Import the entry point's object (``module:attr.attr``)."""
        if self.entry_point is not None:
            return self.entry_point.load()
        module, _, attrs = self.target.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in attrs.strip().split(".") if attrs.strip() else ():
            obj = getattr(obj, part)
        return obj


def _kind_of(group: str) -> tuple[str, str] | None:
    from dockyard.specs._base import NAMESPACES, PROVIDER_GROUP

    if group == PLUGIN_GROUP:
        return "plugin", "feature"
    if group == CLI_GROUP or group.startswith(CLI_GROUP + "."):  # dockyard.cli.daemon: `daemon` subcommands
        return "cli", "cli"
    if group == SERVICE_GROUP:
        return "service", "service"
    if group == PROVIDER_GROUP:
        return "provider", "provider"
    prefix = "dockyard.drivers."
    if group.startswith(prefix) and group[len(prefix):] in NAMESPACES:
        kind = group[len(prefix):]
        return kind, NAMESPACES[kind][0]
    return None


def _cause(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _fresh_driver_manager(entry_points: list[md.EntryPoint], **kwargs: Any) -> Any:
    """stevedore's DriverManager reading the entry points we found, not its class cache.

    Imported here, not at module level: listing CLI commands must not pay for stevedore.
    """
    from stevedore import DriverManager

    class FreshDriverManager(DriverManager):
        def list_entry_points(self) -> list[md.EntryPoint]:  # type: ignore[override]
            return list(entry_points)

    return FreshDriverManager(**kwargs)


class Registry:
    """Installed plugins and drivers, selection policy, and loading with loud failures.

    ``allow``: when not None, only these names load (entry-point name, ``kind:name`` or
    distribution name). ``deny``: these never load. ``DOCKYARD_DISABLE_PLUGINS`` (comma
    separated) adds to ``deny``; ``DOCKYARD_LOAD_PLUGINS`` sets ``allow``.
    ``DOCKYARD_PLUGINS`` (comma separated module names) adds feature plugins that no
    distribution declares: a plugin under development, or a test's plugin loaded into a daemon
    it starts (the module must be importable: ``PYTHONPATH``). They are named explicitly, so an
    allow list does not hide them; ``deny`` still does, and a name an entry point also has is a
    conflict like any other.
    """

    def __init__(self, allow: Iterable[str] | None = None, deny: Iterable[str] = (),
                 environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        deny_set = {d.strip() for d in deny if d.strip()}
        deny_set |= {d.strip() for d in env.get("DOCKYARD_DISABLE_PLUGINS", "").split(",") if d.strip()}
        allow_set = set(allow) if allow is not None else None
        if env.get("DOCKYARD_LOAD_PLUGINS"):
            allow_set = {a.strip() for a in env["DOCKYARD_LOAD_PLUGINS"].split(",") if a.strip()}
        self.allow = allow_set
        self.deny = deny_set
        self.named = [m.strip() for m in env.get(PLUGINS_ENV, "").split(",") if m.strip()]
        self.records: list[PluginRecord] = []
        self.problems: list[PluginError] = []

    # ------------------------------------------------------------------ discovery
    def scan(self) -> None:
        """Read every ``dockyard.*`` entry point of every installed distribution."""
        self._index(self._read_records())

    def scan_cached(self, cache_dir: Path) -> None:
        """:meth:`scan` through the records file in ``cache_dir`` (see the module docstring).
        A missing, stale or unreadable file means a fresh scan, written back when possible."""
        key = _installation_key()
        path = cache_dir / "entry-points.json"
        cached = _read_cache(str(cache_dir), key)  # also what ``dockyard.cli.fast`` reads
        if cached is not None:
            try:
                self._index([PluginRecord(**r) for r in cached])
                return
            except TypeError:  # records of another shape (another dockyard-core): scan afresh
                pass
        records = self._read_records()
        self._index(records)
        fields = ("name", "group", "kind", "area", "target", "distribution", "version", "description")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"key": key, "records": [{f: getattr(r, f) for f in fields}
                                                               for r in records]}))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: every command scans

    def _read_records(self) -> list[PluginRecord]:
        import importlib.metadata as md

        importlib.invalidate_caches()
        seen: set[tuple[str, str, str]] = set()
        records: list[PluginRecord] = []
        for dist in md.distributions():
            # entry_points.txt first: parsing METADATA (an email-format file) is the slow part,
            # so it is read only for the few distributions that carry dockyard entry points
            ours = [(ep, kind) for ep in dist.entry_points if (kind := _kind_of(ep.group)) is not None]
            if not ours:
                continue
            meta = dist.metadata
            dist_name, version, summary = meta["Name"] or "?", meta["Version"] or "", meta["Summary"] or ""
            for ep, kind in ours:
                key = (dist_name.lower(), ep.group, ep.name)
                if key in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add(key)
                records.append(PluginRecord(
                    name=ep.name, group=ep.group, kind=kind[0], area=kind[1], target=ep.value,
                    distribution=dist_name, version=version, description=summary, entry_point=ep))
        records.sort(key=lambda r: (r.area, r.kind, r.name, r.distribution))
        return records

    def _named_records(self) -> list[PluginRecord]:
        """Records of the modules ``DOCKYARD_PLUGINS`` names (never cached: the environment is
        not part of the installation)."""
        return [PluginRecord(name=m, group=PLUGIN_GROUP, kind="plugin", area="feature", target=m,
                             distribution=PLUGINS_ENV, version="", description=f"named by {PLUGINS_ENV}")
                for m in dict.fromkeys(self.named)]

    def _index(self, records: list[PluginRecord]) -> None:
        records = records + self._named_records()
        self.records = records
        self.problems = []
        by_ident: dict[str, list[PluginRecord]] = {}
        for r in records:
            by_ident.setdefault(r.ident, []).append(r)
            if self.is_blocked(r):
                r.status = "blocked"
        for recs in by_ident.values():
            if len(recs) > 1:
                err = PluginConflictError(recs[0].kind, recs[0].name,
                                          [f"{r.distribution} {r.version}" for r in recs])
                self.problems.append(err)
                for r in recs:
                    r.status, r.error = "conflict", str(err)

    def is_blocked(self, record: PluginRecord) -> bool:
        names = {record.name, f"{record.kind}:{record.name}", record.distribution}
        if names & self.deny:
            return True
        if record.distribution == PLUGINS_ENV and record.entry_point is None:
            return False  # named explicitly: an allow list does not hide it
        # command names and provider hints are metadata: an allow list does not hide them
        return self.allow is not None and record.kind not in ("cli", "provider") and not (names & self.allow)

    def find(self, group: str, name: str | None = None) -> list[PluginRecord]:
        return [r for r in self.records if r.group == group and (name is None or r.name == name)]

    def driver_names(self, kind: str) -> list[str]:
        """Installed, not blocked, not conflicting driver names of ``kind``, sorted."""
        from dockyard.specs._base import entry_point_group

        return sorted({r.name for r in self.find(entry_point_group(kind))
                       if r.status in ("available", "loaded")})

    # ------------------------------------------------------------------ drivers
    def load_driver(self, kind: str, name: str) -> type[Driver]:
        """Load driver class ``name`` of ``kind`` through stevedore; errors say what to do."""
        from dockyard.specs._base import entry_point_group

        group = entry_point_group(kind)
        recs = self.find(group, name)
        if any(r.entry_point is None for r in recs):  # records from the CLI's cache: read afresh
            self.scan()
            recs = self.find(group, name)
        if not recs:
            raise self.not_installed(kind, name)
        rec = recs[0]
        if rec.status == "conflict":
            raise PluginConflictError(kind, name, [f"{r.distribution} {r.version}" for r in recs])
        if rec.status == "blocked":
            raise PluginBlocked(f"{kind} driver {name!r} ({rec.distribution}) is denied by the "
                                f"plugin allow/deny configuration")
        from stevedore.exception import MultipleMatches, NoMatches

        failures: list[tuple[md.EntryPoint, BaseException]] = []
        try:
            mgr = _fresh_driver_manager(
                [r.entry_point for r in recs if r.entry_point is not None],
                namespace=group, name=name, invoke_on_load=False,
                on_load_failure_callback=lambda _m, ep, exc: failures.append((ep, exc)),
            )
            cls = mgr.driver
        except (NoMatches, MultipleMatches, RuntimeError) as exc:
            cause = _cause(failures[0][1]) if failures else str(exc)
            raise self._fail(rec, cause) from (failures[0][1] if failures else exc)
        problem = check_driver_class(cls, kind)
        if problem:
            raise self._fail(rec, problem)
        rec.status, rec.error = "loaded", ""
        return cls

    def _fail(self, rec: PluginRecord, cause: str) -> PluginLoadError:
        err = PluginLoadError(f"{rec.group}:{rec.name}", rec.distribution, rec.version, cause)
        rec.status, rec.error = "failed", cause
        self.problems.append(err)
        return err

    def check_all_drivers(self) -> None:
        """Try to load every driver and service provider (for ``plugins list``); failures are
        recorded, not raised."""
        from dockyard.specs._base import NAMESPACES

        self.load_service_providers()
        self.load_driver_providers()
        for rec in self.records:
            if rec.kind in NAMESPACES and rec.status == "available":
                try:
                    self.load_driver(rec.kind, rec.name)
                except PluginError:
                    pass

    # ------------------------------------------------------------------ feature plugins
    def load_plugins(self, pm: pluggy.PluginManager) -> list[str]:
        """Import and register every allowed ``dockyard.plugins`` entry point, then the modules
        ``DOCKYARD_PLUGINS`` names (so their hooks are called before the entry points').

        Blocked names are ``pm.set_blocked`` first. An import error, a hook implementation
        that matches no spec or mismatches its signature, or a wrong plugin API version
        becomes a recorded PluginLoadError and the plugin is left unregistered.
        """
        loaded = []
        for rec in self.find(PLUGIN_GROUP):
            if rec.status == "blocked":
                pm.set_blocked(rec.name)
                continue
            if rec.status != "available":
                continue
            try:
                obj = rec.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported
                self._fail(rec, _cause(exc))
                continue
            problem = register_checked(pm, obj, rec.name)
            if problem:
                self._fail(rec, problem)
                continue
            rec.status = "loaded"
            loaded.append(rec.name)
        return loaded

    # ------------------------------------------------------------------ services
    def load_services(self, role: str) -> dict[str, tuple[ServiceInfo, PluginRecord]]:
        """Every service that installed providers offer for ``role``, by name.

        A provider that fails to import, or yields something other than
        :class:`~dockyard.services.ServiceInfo`, is recorded as a ``PluginLoadError`` and
        skipped. Two providers offering one name for one role are a recorded
        ``PluginConflictError`` and neither is used (the kernel refuses to start with it).
        """
        offered: dict[str, list[tuple[ServiceInfo, PluginRecord]]] = {}
        for rec, infos in self.load_service_providers():
            for info in infos:
                if role in info.roles:
                    offered.setdefault(info.name, []).append((info, rec))
        out: dict[str, tuple[ServiceInfo, PluginRecord]] = {}
        for name, found in sorted(offered.items()):
            if len(found) > 1:
                err = PluginConflictError("service", name, [f"{r.distribution} {r.version}" for _i, r in found])
                self.problems.append(err)
                for _i, r in found:
                    r.status, r.error = "conflict", str(err)
                continue
            out[name] = found[0]
        return out

    def load_service_providers(self) -> list[tuple[PluginRecord, list[ServiceInfo]]]:
        """Import every allowed ``dockyard.services`` provider and check its shape; failures
        are recorded (``plugins list`` shows them), not raised."""
        from dockyard.services import ServiceInfo

        return self._load_descriptors(SERVICE_GROUP, ServiceInfo, "dockyard.services.ServiceInfo")

    def _load_descriptors(self, group: str, cls: type[D], what: str) -> list[tuple[PluginRecord, list[D]]]:
        """Each allowed entry point of ``group`` whose object is an iterable of ``cls``
        descriptors, with them; one that fails to import or holds anything else is recorded as
        a ``PluginLoadError`` and left out."""
        out: list[tuple[PluginRecord, list[D]]] = []
        for rec in self.find(group):
            if rec.status not in ("available", "loaded"):
                continue
            try:
                items = list(rec.load())
            except Exception as exc:  # noqa: BLE001 - any import failure is reported
                self._fail(rec, _cause(exc))
                continue
            bad = [i for i in items if not isinstance(i, cls)]
            if bad:
                self._fail(rec, f"{rec.target} must be an iterable of {what}, found {type(bad[0]).__name__}")
                continue
            rec.status, rec.error = "loaded", ""
            out.append((rec, items))
        return out

    # ------------------------------------------------------------------ which distribution
    def load_driver_providers(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """(kind, name) -> {distribution: the installed distributions declaring it} from every
        ``dockyard.providers`` entry point (:class:`~dockyard.specs.DriverProvider`). Imported
        only to name a missing driver's distribution, and by ``plugins list``; failures are
        recorded, not raised."""
        from dockyard.specs._base import PROVIDER_GROUP, DriverProvider

        out: dict[tuple[str, str], dict[str, list[str]]] = {}
        for rec, declared in self._load_descriptors(PROVIDER_GROUP, DriverProvider, "dockyard.specs.DriverProvider"):
            for d in declared:
                out.setdefault((d.kind, d.name), {}).setdefault(d.distribution, []).append(rec.distribution)
        return out

    def provider_of(self, kind: str, name: str) -> str:
        """The distribution to install for driver ``name`` of ``kind``: the one whose entry
        point provides it when installed; else the one installed distributions declare
        (``dockyard.providers``); else ``dockyard-<area>-<name>``. Declarations that disagree
        are a recorded ``PluginConflictError`` and the convention is used."""
        from dockyard.specs._base import conventional_distribution, entry_point_group

        installed = sorted({r.distribution for r in self.find(entry_point_group(kind), name)})
        if len(installed) == 1:
            return installed[0]
        return self.declared_provider(kind, name) or conventional_distribution(kind, name)

    def declared_provider(self, kind: str, name: str) -> str | None:
        """The distribution installed ``dockyard.providers`` declarations name for driver
        ``name`` of ``kind``; None when none does, or when they disagree (then a recorded
        ``PluginConflictError`` naming each declaration)."""
        declared = self.load_driver_providers().get((kind, name), {})
        if len(declared) == 1:
            return next(iter(declared))
        if declared:
            self.problems.append(PluginConflictError(
                f"{kind} driver provider", name,
                [f"{dist} (declared by {', '.join(sorted(by))})" for dist, by in declared.items()]))
        return None

    def not_installed(self, kind: str, name: str) -> DriverNotInstalled:
        """The error for driver ``name`` of ``kind`` not being installed, naming the
        distribution to install (:meth:`provider_of`) and the installed drivers of the kind."""
        return DriverNotInstalled(kind, name, self.driver_names(kind), self.provider_of(kind, name))

    # ------------------------------------------------------------------ CLI
    def cli_names(self, group: str = CLI_GROUP) -> list[str]:
        """Command names of ``group``: the root's, or a built-in's subcommands
        (``dockyard.cli.daemon``)."""
        return sorted({r.name for r in self.find(group) if r.status != "blocked"})

    def load_cli(self, name: str, group: str = CLI_GROUP) -> Any:
        recs = [r for r in self.find(group, name) if r.status != "blocked"]
        if not recs:
            return None
        if len(recs) > 1:
            raise PluginConflictError("cli", name, [f"{r.distribution} {r.version}" for r in recs])
        rec = recs[0]
        try:
            return rec.load()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(rec, _cause(exc)) from exc


def check_driver_class(cls: Any, kind: str) -> str:
    """Why ``cls`` is not a usable driver of ``kind`` ("" when it is): it must subclass the
    kind's ABC, carry a :class:`~dockyard.specs.DriverInfo` of that kind and of this driver API,
    implement every abstract method, and subclass the ABC of each capability it declares that
    has a protocol (``CAPABILITY_BASES``: ``embedded-dns`` -> ``EmbeddedDnsDriver``) and only
    those. The registry refuses a driver that fails; the conformance kits assert it."""
    from dockyard.specs import CAPABILITY_BASES, DRIVER_API_VERSION, DRIVER_BASES, DriverInfo

    base = DRIVER_BASES[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return f"{cls!r} is not a subclass of {base.__module__}.{base.__qualname__}"
    info = getattr(cls, "info", None)  # declared on Driver, set by each concrete class
    if not isinstance(info, DriverInfo):
        return f"{cls.__qualname__} has no DriverInfo `info`"
    if info.kind != kind:
        return f"{cls.__qualname__}.info.kind is {info.kind!r}, registered as {kind!r}"
    if info.api_version != DRIVER_API_VERSION:
        return (f"{cls.__qualname__} targets driver API {info.api_version}, "
                f"this dockyard-core implements {DRIVER_API_VERSION}")
    missing = sorted(cls.__abstractmethods__)
    if missing:
        return f"{cls.__qualname__} does not implement {', '.join(missing)}"
    for (cap_kind, capability), cap_base in sorted(CAPABILITY_BASES.items()):
        if cap_kind != kind:
            continue
        where = f"{cap_base.__module__}.{cap_base.__qualname__}"
        if capability in info.capabilities and not issubclass(cls, cap_base):
            return f"{cls.__qualname__} declares capability {capability!r} but is not a subclass of {where}"
        if issubclass(cls, cap_base) and capability not in info.capabilities:
            return f"{cls.__qualname__} subclasses {where} but does not declare capability {capability!r}"
    return ""


def register_checked(pm: pluggy.PluginManager, obj: Any, name: str) -> str:
    """Register ``obj`` on ``pm``; returns why it was refused ("" when registered).

    Refuses a wrong ``DOCKYARD_PLUGIN_API``, a signature mismatch (pluggy's
    PluginValidationError) and hook implementations that match no specification.
    """
    import pluggy

    from dockyard.specs._base import DRIVER_API_VERSION

    api = getattr(obj, PLUGIN_API_ATTR, 1)
    if api != DRIVER_API_VERSION:
        return f"plugin targets plugin API {api}, this dockyard-core implements {DRIVER_API_VERSION}"
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        return f"hook validation failed: {exc}"
    except ValueError as exc:  # already registered under this name
        return str(exc)
    unknown = [hc.name for hc in pm.get_hookcallers(obj) or []
               if not hc.has_spec() and not _all_optional(hc, obj)]
    if unknown:
        pm.unregister(obj)
        return f"hook implementations match no specification: {', '.join(sorted(unknown))}"
    return ""


def _all_optional(hc: Any, obj: Any) -> bool:
    return all(impl.optionalhook for impl in hc.get_hookimpls() if impl.plugin is obj)
