"""binfmt_misc handlers for tests of foreign architectures (arm64, arm/v7 under qemu-user-static).

A registration is the host's, shared by every test session on it, so a session that makes
handlers holds them: :func:`hold` registers what is missing (through ``dockyard system binfmt
install``, dockyard-arch-linux's command, which never replaces another's handler; a plugin
distribution does not import a sibling) and writes a holder file under
:data:`HOLDERS` naming what it made; :func:`release` drops the holder, and the last live holder
removes every handler the holders made. Handlers someone else made (a developer's
``dockyard system binfmt install``, Debian's binfmt-support) are used and never removed.

The leak check's ``binfmt`` category lists ``/proc/sys/fs/binfmt_misc`` entries; dockyard's
(``dockyard-qemu-*``) count as a session's when no live holder holds them (:func:`held`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

MISC = Path("/proc/sys/fs/binfmt_misc")
HOLDERS = Path(os.environ.get("DOCKYARD_BINFMT_HOLDERS") or "/run/dockyard/binfmt-holders")
PREFIX = "dockyard-qemu-"


def read_entries(misc: Path | None = None) -> set[str]:
    """Names of the registered entries (an empty set when binfmt_misc is not mounted)."""
    return {n for n in os.listdir(misc or MISC) if n not in ("register", "status")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders() -> list[tuple[Path, int, list[str]]]:
    out = []
    for f in sorted(HOLDERS.glob("*.json")) if HOLDERS.is_dir() else ():
        try:
            doc = json.loads(f.read_text())
            out.append((f, int(doc.get("pid") or 0), [str(n) for n in doc.get("made") or []]))
        except (OSError, ValueError):
            continue
    return out


def held() -> set[str]:
    """Entries some live holder (a running test session, this one included) holds: while any
    does, every ``dockyard-qemu-*`` entry counts as held."""
    holders = _holders()
    if not any(_alive(pid) for _f, pid, _m in holders):
        return set()
    return {n for _f, _p, made in holders for n in made} | {n for n in _entries_quiet() if n.startswith(PREFIX)}


def _entries_quiet() -> set[str]:
    try:
        return read_entries()
    except OSError:
        return set()


class BinfmtUnavailable(Exception):
    """``dockyard system binfmt`` is not installed or failed (the message says why)."""


def _binfmt_cli(*args: str) -> str:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "dockyard"
    try:
        proc = subprocess.run([str(exe), "system", "binfmt", *args], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise BinfmtUnavailable(f"{exe}: {exc}") from exc
    if proc.returncode != 0:
        raise BinfmtUnavailable(f"dockyard system binfmt {' '.join(args)}: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def usable() -> dict[str, str]:
    """``{platform: entry}`` of every foreign platform a usable handler covers."""
    doc = json.loads(_binfmt_cli("status", "--format", "json"))
    return {row["Platform"]: row["Entry"] for row in doc["Machines"] if row["Usable"]}


def hold(machines: list[str]) -> dict[str, str]:
    """Make the handlers ``machines`` (qemu names: ``aarch64``, ``arm``) need and hold them for
    this process; returns :func:`usable` (BinfmtUnavailable without dockyard-arch-linux or root)."""
    out = _binfmt_cli("install", *machines)
    made = [line.split()[1] for line in out.splitlines() if line.startswith("registered ")]
    HOLDERS.mkdir(parents=True, exist_ok=True)
    (HOLDERS / f"{os.getpid()}.json").write_text(json.dumps({"pid": os.getpid(), "made": made}))
    return usable()


def release() -> list[str]:
    """Drop this process's hold; the last live holder removes what the holders made (its own
    included, and those of holders that died without releasing)."""
    me = os.getpid()
    holders = _holders()
    if any(_alive(pid) for _f, pid, _m in holders if pid != me):
        mine = [made for f, pid, made in holders if pid == me]
        if mine and mine[0]:  # hand what this session made to a live holder: the last one removes it
            f = next(f for f, pid, _m in holders if pid != me and _alive(pid))
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(f.read_text())
                doc["made"] = sorted(set(doc.get("made") or []) | set(mine[0]))
                f.write_text(json.dumps(doc))
        with contextlib.suppress(OSError):
            (HOLDERS / f"{me}.json").unlink()
        return []
    made = sorted({n for _f, _p, m in holders for n in m})
    for f, _p, _m in holders:
        with contextlib.suppress(OSError):
            f.unlink()
    if not made:
        return []
    out = _binfmt_cli("remove", *made)
    return [line.split()[1] for line in out.splitlines() if line.startswith("removed ")]


__all__ = ["HOLDERS", "PREFIX", "BinfmtUnavailable", "held", "hold", "read_entries", "release", "usable"]
