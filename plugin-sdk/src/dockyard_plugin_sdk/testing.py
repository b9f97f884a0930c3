"""Test helpers for plugin authors: a hook recorder and a host leak checker.

Both are plain objects usable without pytest; :mod:`dockyard_plugin_sdk.pytest_plugin` wraps
them in fixtures (``hook_recorder``, ``no_leaks``) and a session-wide ``--dockyard-leak-check``.

:class:`HookRecorder` follows pytest's Pytester ``HookRecorder``: it hooks a pluggy manager
with ``add_hookcall_monitoring`` and keeps every call with its keyword arguments and outcome.

:func:`snapshot_host` records the kernel objects a container platform can leave behind:
mounts, network links, named network namespaces, cgroup directories, nft tables and child
processes. Two snapshots subtract into a :class:`Leaks` that names what is new.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

__all__ = [
    "HookCall", "HookRecorder", "HostSnapshot", "Leaks", "dockyard_named", "snapshot_host",
    "wait_for_no_leaks",
]


# ---------------------------------------------------------------------------------- hooks
@dataclass
class HookCall:
    """One hook call as the manager saw it. ``result`` is set once the call returned."""

    name: str
    kwargs: dict[str, Any]
    plugins: list[str]
    result: Any = None
    exception: BaseException | None = None
    finished: bool = False

    def __getattr__(self, key: str) -> Any:  # call.kernel, like Pytester's ParsedCall
        try:
            return self.__dict__["kwargs"][key]
        except KeyError:
            raise AttributeError(key) from None


class HookRecorder:
    """Records every hook call made through ``pm``; undo with :meth:`finish_recording`."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._calls: list[HookCall] = []
        self._open: list[HookCall] = []

        def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            names = [pm.get_name(impl.plugin) or repr(impl.plugin) for impl in hook_impls]
            call = HookCall(hook_name, dict(kwargs), names)
            self._calls.append(call)
            self._open.append(call)

        def after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            call = self._open.pop() if self._open else HookCall(hook_name, dict(kwargs), [])
            call.exception = outcome.exception
            call.result = None if outcome.exception is not None else outcome.get_result()
            call.finished = True

        self._undo: Callable[[], None] | None = pm.add_hookcall_monitoring(before, after)

    def finish_recording(self) -> None:
        """Stop recording (idempotent). The calls recorded so far stay available."""
        if self._undo is not None:
            self._undo()
            self._undo = None

    def __enter__(self) -> HookRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish_recording()

    def _check_name(self, name: str) -> None:
        if not hasattr(self._pm.hook, name):
            raise ValueError(f"no hook named {name!r} on this plugin manager (misspelt?)")

    def calls(self, name: str | None = None) -> list[HookCall]:
        """Recorded calls of hook ``name`` (every hook when None), oldest first."""
        if name is None:
            return list(self._calls)
        self._check_name(name)
        return [c for c in self._calls if c.name == name]

    def names(self) -> list[str]:
        """Names of the hooks called, in call order (with repeats)."""
        return [c.name for c in self._calls]

    def assert_called(self, name: str, **kwargs: Any) -> HookCall:
        """Assert hook ``name`` was called with (at least) these keyword values; returns the
        first matching call. The failure message lists the calls that were recorded."""
        calls = self.calls(name)
        for call in calls:
            if all(k in call.kwargs and call.kwargs[k] == v for k, v in kwargs.items()):
                return call
        seen = "\n".join(f"  {c.name}({_short(c.kwargs)})" for c in calls) or "  (no calls)"
        want = f"{name}({_short(kwargs)})" if kwargs else name
        raise AssertionError(f"hook {want} was not called; calls of {name}:\n{seen}")

    def assert_not_called(self, name: str) -> None:
        calls = self.calls(name)
        if calls:
            raise AssertionError(f"hook {name} was called {len(calls)} time(s): "
                                 f"{', '.join(_short(c.kwargs) for c in calls)}")

    def clear(self) -> None:
        self._calls.clear()


def _short(kwargs: dict[str, Any]) -> str:
    parts = []
    for k, v in kwargs.items():
        text = repr(v)
        parts.append(f"{k}={text[:60] + '...' if len(text) > 60 else text}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------- leaks
CATEGORIES = ("mounts", "links", "netns", "cgroups", "nft_tables", "processes")


@dataclass(frozen=True)
class HostSnapshot:
    """Kernel objects visible to this process at one moment. Each field is a set of strings:
    mount points (``/path (fstype source)``), link names, ``/run/netns`` names, cgroup directory
    paths, nft tables (``family name``) and child processes (``pid comm``)."""

    mounts: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    netns: frozenset[str] = frozenset()
    cgroups: frozenset[str] = frozenset()
    nft_tables: frozenset[str] = frozenset()
    processes: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()  # what could not be read, and why

    def __sub__(self, before: HostSnapshot) -> Leaks:
        return Leaks({c: sorted(getattr(self, c) - getattr(before, c)) for c in CATEGORIES})

    def filter(self, predicate: Callable[[str, str], bool]) -> HostSnapshot:
        """A snapshot holding only the items for which ``predicate(category, item)`` is true."""
        kept = {c: frozenset(i for i in getattr(self, c) if predicate(c, i)) for c in CATEGORIES}
        return HostSnapshot(**kept, notes=self.notes)


@dataclass
class Leaks:
    """What appeared between two snapshots, per category."""

    items: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.items.values())

    def describe(self) -> str:
        lines = []
        for cat in CATEGORIES:
            for item in self.items.get(cat, ()):
                lines.append(f"  {cat}: {item}")
        return "\n".join(lines)


def _read_mounts(mountinfo: Path) -> set[str]:
    out = set()
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        rest = right.split()
        fstype, source = (rest + ["?", "?"])[:2]
        out.add(f"{point} ({fstype} {source})")
    return out


def _read_cgroups(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, _files in os.walk(root):
        # every dir in a hierarchy, minus the roots of the hierarchies themselves
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.ismount(full):
                out.add(full)
    return out


def _read_nft(notes: list[str]) -> set[str]:
    nft = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if nft is None:
        notes.append("nft tables: nft is not installed")
        return set()
    try:
        proc = subprocess.run([nft, "-j", "list", "tables"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"nft tables: {exc}")
        return set()
    if proc.returncode != 0:
        notes.append(f"nft tables: {proc.stderr.strip() or 'nft failed'}")
        return set()
    out = set()
    for entry in json.loads(proc.stdout or "{}").get("nftables", []):
        table = entry.get("table")
        if table:
            out.add(f"{table.get('family', '?')} {table.get('name', '?')}")
    return out


def _children(pid: int, proc: Path) -> set[str]:
    """Descendants of ``pid`` (``pid comm``), found through /proc/*/stat."""
    parent_of: dict[int, tuple[int, str]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        parent_of[int(entry.name)] = (int(fields[1]), comm + (" <defunct>" if fields[0] == "Z" else ""))
    out, frontier = set(), {pid}
    while frontier:
        nxt = {child for child, (ppid, _c) in parent_of.items() if ppid in frontier}
        out |= {f"{c} {parent_of[c][1]}" for c in nxt}
        frontier = nxt
    return out


def snapshot_host(*, proc: Path = Path("/proc"), sys_net: Path = Path("/sys/class/net"),
                  netns_dir: Path = Path("/run/netns"), cgroup_root: Path = Path("/sys/fs/cgroup"),
                  nft: bool = True, pid: int | None = None) -> HostSnapshot:
    """Record the host's kernel objects now. Unreadable sources become ``notes``, not errors."""
    notes: list[str] = []

    def read(what: str, fn: Callable[[], Iterable[str]]) -> frozenset[str]:
        try:
            return frozenset(fn())
        except FileNotFoundError:
            return frozenset()
        except OSError as exc:
            notes.append(f"{what}: {exc}")
            return frozenset()

    return HostSnapshot(
        mounts=read("mounts", lambda: _read_mounts(proc / "self" / "mountinfo")),
        links=read("links", lambda: os.listdir(sys_net)),
        netns=read("netns", lambda: os.listdir(netns_dir)),
        cgroups=read("cgroups", lambda: _read_cgroups(cgroup_root)),
        nft_tables=frozenset(_read_nft(notes)) if nft else frozenset(),
        processes=read("processes", lambda: _children(os.getpid() if pid is None else pid, proc)),
        notes=tuple(notes),
    )


def wait_for_no_leaks(before: HostSnapshot, timeout: float = 2.0,
                      snapshot: Callable[[], HostSnapshot] = snapshot_host) -> Leaks:
    """Compare ``snapshot()`` with ``before`` until nothing new remains or ``timeout`` passes
    (a child that is exiting, a link being deleted). Returns what is still new."""
    deadline = time.monotonic() + timeout
    while True:
        leaks = snapshot() - before
        if not leaks or time.monotonic() >= deadline:
            return leaks
        time.sleep(0.05)


def dockyard_named(category: str, item: str) -> bool:
    """Whether an object looks like dockyard's: a name (or a path component, for mounts and
    cgroups) that contains ``dockyard`` or starts with ``dy``. Processes never match."""
    if category == "processes":
        return False
    if category == "mounts":
        names = item.split(" (", 1)[0].split("/")
    elif category == "cgroups":
        names = item.split("/")
    elif category == "nft_tables":
        names = item.split(" ", 1)[1:]
    else:
        names = [item]
    return any("dockyard" in n.lower() or n.lower().startswith("dy") for n in names if n)


def purge_owned(owner: str) -> list[str]:
    """Remove every kernel object named with ``owner`` (links, nft tables, netns, cgroups).

    A stopped daemon may keep its bridges and rules on purpose (live-restore, as dockerd keeps
    docker0); a test or benchmark must not, so teardown removes what that daemon owned and
    nothing else.
    Returns what it removed.
    """
    from pyroute2 import IPRoute, netns

    removed: list[str] = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if name.startswith(owner):
                try:
                    ipr.link("del", index=link["index"])
                    removed.append(f"link {name}")
                except Exception:  # noqa: BLE001 - a veth goes away with its peer
                    pass
    res = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        family, _, table = line.removeprefix("table ").partition(" ")
        if owner in table:
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
            removed.append(f"nft {family} {table}")
    for name in netns.listnetns():
        if owner in name:
            netns.remove(name)
            removed.append(f"netns {name}")
    for cg in sorted(Path("/sys/fs/cgroup").glob(f"*/*{owner}*"), key=lambda p: -len(p.parts)):
        if cg.is_dir():
            try:
                cg.rmdir()
                removed.append(f"cgroup {cg}")
            except OSError:
                pass
    return removed
