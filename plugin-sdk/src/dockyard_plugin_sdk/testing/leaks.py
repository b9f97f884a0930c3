"""Host leak checks: what a test created on the host and did not remove.

:func:`snapshot_host` records the kernel objects a container platform can leave behind:
mounts, network links, named network namespaces, cgroup directories, nft tables, child
processes and binfmt_misc entries (a foreign architecture's handler, :mod:`.binfmt`). Two snapshots subtract into a :class:`Leaks` that names what is new.

Which objects are a test's own? Dockyard names every kernel object after an *owner token*
(``dy`` + 6 hex digits of the data-root path, ``Config.owner``). :class:`Owners` holds the tokens
(and root directories) of the daemons and kernels a test session created; its
:meth:`Owners.owns` keeps only their objects, so another dockyardd on the same machine -- a
developer's own, a parallel session -- is never counted as a leak.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .waiting import WaitTimeout, wait_for

__all__ = [
    "CATEGORIES", "HostSnapshot", "Leaks", "Owners", "dockyard_named", "owner_of_data_root",
    "purge_owned", "snapshot_host", "wait_for_no_leaks",
]

CATEGORIES = ("mounts", "links", "netns", "cgroups", "nft_tables", "processes", "binfmt")


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
    binfmt: frozenset[str] = frozenset()  # /proc/sys/fs/binfmt_misc entry names
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

    def filter(self, predicate: Callable[[str, str], bool]) -> Leaks:
        """The leaks for which ``predicate(category, item)`` is true."""
        return Leaks({c: [i for i in items if predicate(c, i)] for c, items in self.items.items()})

    def describe(self) -> str:
        """One line per object; a cgroup still holding processes names them (a container that
        outlived its engine shows as its cgroup and, beside it, what runs there)."""
        lines = []
        for cat in CATEGORIES:
            for item in self.items.get(cat, ()):
                inside = _cgroup_processes(Path(item)) if cat == "cgroups" else []
                lines.append(f"  {cat}: {item}" + (f" (holding {', '.join(inside)})" if inside else ""))
        return "\n".join(lines)


def _cgroup_processes(cgroup: Path, proc: Path = Path("/proc"), most: int = 5) -> list[str]:
    """``pid command line`` of the processes in ``cgroup`` (the first ``most``)."""
    try:
        pids = (cgroup / "cgroup.procs").read_text().split()
    except OSError:
        return []
    out = []
    for pid in pids[:most]:
        try:
            cmd = (proc / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append(f"{pid} {cmd[:80]}")
    return out + ([f"{len(pids) - most} more"] if len(pids) > most else [])


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


def _nft_binary() -> str | None:
    return shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)


def _read_nft(notes: list[str]) -> set[str]:
    nft = _nft_binary()
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


def _read_binfmt(misc: Path) -> set[str]:
    if not (misc / "register").exists():
        return set()  # binfmt_misc not mounted
    return {n for n in os.listdir(misc) if n not in ("register", "status")}


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
        binfmt=read("binfmt", lambda: _read_binfmt(proc / "sys" / "fs" / "binfmt_misc")),
        notes=tuple(notes),
    )


def wait_for_no_leaks(before: HostSnapshot, timeout: float = 2.0,
                      snapshot: Callable[[], HostSnapshot] = snapshot_host,
                      keep: Callable[[str, str], bool] | None = None) -> Leaks:
    """Compare ``snapshot()`` with ``before`` until nothing new remains or ``timeout`` passes
    (a child that is exiting, a link being deleted). ``keep(category, item)`` limits what
    counts (an :meth:`Owners.owns`). Returns what is still new."""
    last = [Leaks()]

    def gone() -> bool:
        leaks = snapshot() - before
        last[0] = leaks.filter(keep) if keep is not None else leaks
        return not last[0]

    try:
        wait_for(gone, timeout, "leaked host objects to go away")
    except WaitTimeout:
        pass
    return last[0]


# ---------------------------------------------------------------------------------- owners
def owner_of_data_root(data_root: Path | str) -> str:
    """The owner token a daemon or kernel with this data root puts in its objects' names."""
    from dockyard.config import Config

    return Config(values={"data-root": str(data_root)}).owner


@dataclass
class Owners:
    """The owner tokens and root directories of what a test session created.

    The SDK's daemon and kernel fixtures record each data root they create here (the pytest
    plugin keeps one per session: the ``dockyard_owners`` fixture); a fixture of your own
    that builds a driver context records its token with :meth:`record`. The leak checks keep
    only what :meth:`owns` accepts.
    """

    tokens: set[str] = field(default_factory=set)
    roots: set[str] = field(default_factory=set)

    def record(self, token: str, *roots: Path | str) -> str:
        """Record an owner token and the directories its objects may be mounted under."""
        if not token:
            raise ValueError("an empty owner token would match every object")
        self.tokens.add(token)
        for root in roots:
            self.roots.add(str(root).rstrip("/") or "/")
            self.roots.add(os.path.realpath(root))
        return token

    def record_data_root(self, data_root: Path | str, *roots: Path | str) -> str:
        """Record the token derived from ``data_root`` (and it, plus ``roots``, as mount roots)."""
        return self.record(owner_of_data_root(data_root), data_root, *roots)

    def owns(self, category: str, item: str) -> bool:
        """Whether an object of a snapshot is ours: a mount under one of our roots or naming a
        token (an overlay's ``dockyard-<token>`` source); a link, netns, cgroup or nft table
        whose name carries a token; a child process whose command line names one of our roots
        or tokens (a daemon, its conmons). Other child processes -- orphans a subreaper adopted,
        another engine's helpers -- are not an owner's; :meth:`owns_or_child` counts them too."""
        if category == "processes":
            return self._process_is_ours(item)
        if category == "binfmt":  # dockyard's handlers no other live test session holds
            from .binfmt import PREFIX, held

            return item.startswith(PREFIX) and item not in held()
        if category == "mounts":
            point = item.split(" (", 1)[0]
            if any(point == r or point.startswith(r + "/") for r in self.roots if r != "/"):
                return True
        return any(token in item for token in self.tokens)

    def owns_or_child(self, category: str, item: str) -> bool:
        """:meth:`owns`, and every child process: what one test may leave behind (it started
        whatever appeared below it meanwhile)."""
        return category == "processes" or self.owns(category, item)

    def _process_is_ours(self, item: str, proc: Path = Path("/proc")) -> bool:
        try:
            cmdline = (proc / item.split(" ", 1)[0] / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False  # gone: not left behind
        return any(token in cmdline for token in self.tokens) or \
            any(root in cmdline for root in self.roots if root != "/")


def dockyard_named(category: str, item: str) -> bool:
    """Whether an object looks like dockyard's: a name (or a path component, for mounts and
    cgroups) that contains ``dockyard`` or starts with ``dy``. Processes never match.

    Any daemon's objects match, not only a test's: the leak checks use :meth:`Owners.owns`.
    """
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
    nothing else. Returns what it removed. Links and netns need pyroute2 (the network
    drivers' own dependency: without it, no driver made any).
    """
    if not owner:
        raise ValueError("an empty owner would purge every object")
    removed: list[str] = []
    try:
        import pyroute2
    except ImportError:
        pyroute2 = None
    if pyroute2 is not None:
        with pyroute2.IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if name.startswith(owner):
                    try:
                        ipr.link("del", index=link["index"])
                        removed.append(f"link {name}")
                    except Exception:  # noqa: BLE001 - a veth goes away with its peer
                        pass
    nft = _nft_binary()
    tables = subprocess.run([nft, "list", "tables"], capture_output=True, text=True).stdout if nft else ""
    for line in tables.splitlines():
        family, _, table = line.removeprefix("table ").partition(" ")
        if owner in table:
            subprocess.run([nft, "delete", "table", family, table], capture_output=True)
            removed.append(f"nft {family} {table}")
    for name in pyroute2.netns.listnetns() if pyroute2 is not None else ():
        if owner in name:
            pyroute2.netns.remove(name)
            removed.append(f"netns {name}")
    for cg in sorted(Path("/sys/fs/cgroup").glob(f"*/*{owner}*"), key=lambda p: -len(p.parts)):
        if cg.is_dir():
            try:
                cg.rmdir()
                removed.append(f"cgroup {cg}")
            except OSError:
                pass
    return removed
