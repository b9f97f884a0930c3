"""A host's cgroup: everything its engine starts stays inside, so it can all be killed at once.

Each host gets ``<tag>m-<name>`` at the root of every cgroup hierarchy. Its engine is placed in
``<that>/engine`` of the *tracking* hierarchy before it executes (by the child itself, see
:mod:`.engine`), so every process it forks -- conmon, the OCI runtime, the containers -- is
inside; the engine's containers get ``<that>/...`` in every hierarchy through the arch driver's
``cgroup-parent``. The tracking hierarchy is cgroup v2 (``/sys/fs/cgroup`` on a unified
machine, ``/sys/fs/cgroup/unified`` on a hybrid one), where ``cgroup.kill`` kills a whole
subtree in one write and ``cgroup.events`` says when it is empty; on a v1-only machine it is
the ``pids`` (or ``freezer``) hierarchy, emptied by signalling each member until none is left.

These functions block; the driver runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.mounts import read_mounts

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENGINE = "engine"


@dataclass(frozen=True)
class Hierarchies:
    """The cgroup hierarchies mounted here: the tracking one, whether it is v2, and all."""

    tracking: Path | None
    v2: bool
    all: tuple[Path, ...]


def hierarchies() -> Hierarchies:
    roots: list[tuple[Path, str]] = []
    for m in read_mounts():
        if m.fstype in ("cgroup", "cgroup2") and m.point.startswith(str(CGROUP_ROOT)):
            roots.append((Path(m.point), m.fstype))
    v2 = next((p for p, t in roots if t == "cgroup2"), None)
    if v2 is not None:
        return Hierarchies(v2, True, tuple(p for p, _t in roots))
    v1 = {p.name: p for p, _t in roots}
    tracking = v1.get("pids") or v1.get("freezer") or next(iter(v1.values()), None)
    return Hierarchies(tracking, False, tuple(p for p, _t in roots))


def engine_cgroup(h: Hierarchies, name: str) -> Path | None:
    """Make the host's cgroup and its ``engine`` leaf in the tracking hierarchy; return the
    leaf (None on a machine without cgroups)."""
    if h.tracking is None:
        return None
    leaf = h.tracking / name / ENGINE
    leaf.mkdir(parents=True, exist_ok=True)
    return leaf


def members(h: Hierarchies, name: str) -> list[int]:
    """Every process in the host's cgroup (tracking hierarchy), its subtree included."""
    if h.tracking is None:
        return []
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(h.tracking / name):
        try:
            pids += [int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def populated(h: Hierarchies, name: str) -> bool:
    if h.tracking is None:
        return False
    if h.v2:
        try:
            events = (h.tracking / name / "cgroup.events").read_text()
        except FileNotFoundError:
            return False
        return "populated 1" in events
    return bool(members(h, name))


def kill_all(h: Hierarchies, name: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in the host's cgroup and wait until it is empty. Returns the pids
    that were found (for the log). Raises TimeoutError naming what is left."""
    found = members(h, name)
    if h.tracking is None or not (h.tracking / name).is_dir():
        return found
    kill_file = h.tracking / name / "cgroup.kill"
    deadline = time.monotonic() + timeout
    delay = 0.001
    while populated(h, name):
        if h.v2 and kill_file.exists():
            kill_file.write_text("1")
        else:  # v1: no cgroup.kill; a process forking meanwhile is caught by the next pass
            for pid in members(h, name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes still in cgroup {name}: {members(h, name)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return found


def reap_adopted(pids: list[int]) -> list[int]:
    """Reap those of ``pids`` (a host's processes, killed) that exited as children of this
    process. A driver running inside a dockyardd that is a child subreaper (its runtime driver
    makes it one) adopts a host's conmons and containers when the host's engine dies before
    them, and nothing else would ever reap them. Returns the pids reaped."""
    me, reaped = os.getpid(), []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if state != "Z" or int(ppid) != me:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
        except ChildProcessError:
            continue
    return reaped


def remove(h: Hierarchies, name: str) -> list[str]:
    """Remove the host's cgroup directories in every hierarchy, deepest first (they must be
    empty of processes). Returns what could not be removed, with the reason."""
    left: list[str] = []
    for root in h.all:
        top = root / name
        if not top.is_dir():
            continue
        dirs = [Path(d) for d, _s, _f in os.walk(top)]
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                left.append(f"{d}: {exc.strerror}")
    return left


def names(h: Hierarchies, prefix: str) -> set[str]:
    """Host cgroup names starting with ``prefix`` in any hierarchy (reconciliation)."""
    found: set[str] = set()
    for root in h.all:
        try:
            found |= {e.name for e in os.scandir(root) if e.is_dir() and e.name.startswith(prefix)}
        except FileNotFoundError:
            continue
    return found
