"""Resolve Docker's ``--user`` string against a rootfs's /etc/passwd and /etc/group.

Docker's rules (``github.com/moby/sys/user``): ``name``, ``uid``, ``name:group``, ``uid:gid`` (and
mixes). A name must exist in /etc/passwd, a group name in /etc/group; a numeric id need not exist.
Without an explicit group, the primary group comes from the passwd entry (0 when the uid is not
listed). Supplementary groups are every /etc/group entry listing the user's name, unless the
group was given explicitly. ``HOME`` comes from the passwd entry, else ``/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: list[str]


def _read_lines(rootfs: str, relpath: str) -> list[str]:
    """Lines of a file inside ``rootfs``, refusing to follow symlinks out of it."""
    root = Path(rootfs)
    path = root / relpath
    try:
        real = Path(os.path.realpath(path))
        if root.resolve() not in (real, *real.parents):
            return []
        return real.read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return []


def parse_passwd(lines: list[str]) -> list[_Passwd]:
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        try:
            out.append(_Passwd(parts[0], int(parts[2]), int(parts[3]),
                               parts[5] if len(parts) > 5 and parts[5] else "/"))
        except ValueError:
            continue
    return out


def parse_group(lines: list[str]) -> list[_Group]:
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        try:
            members = [m for m in (parts[3].split(",") if len(parts) > 3 else []) if m]
            out.append(_Group(parts[0], int(parts[2]), members))
        except ValueError:
            continue
    return out


def resolve_user(user: str, rootfs: str, extra_groups: list[str] | None = None) -> ExecUser:
    """Resolve ``user`` (``""`` means root) inside ``rootfs``; raise InvalidArgument if a
    named user or group does not exist there."""
    passwd = parse_passwd(_read_lines(rootfs, "etc/passwd"))
    groups = parse_group(_read_lines(rootfs, "etc/group"))
    spec_user, _, spec_group = (user or "0").partition(":")
    spec_user = spec_user or "0"

    entry: _Passwd | None = None
    if spec_user.isdigit():
        uid = int(spec_user)
        entry = next((p for p in passwd if p.uid == uid), None)
    else:
        entry = next((p for p in passwd if p.name == spec_user), None)
        if entry is None:
            raise InvalidArgument(f"unable to find user {spec_user}: no matching entries in passwd file")
        uid = entry.uid
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"

    additional: list[int] = []
    if spec_group:
        if spec_group.isdigit():
            gid = int(spec_group)
        else:
            grp = next((g for g in groups if g.name == spec_group), None)
            if grp is None:
                raise InvalidArgument(
                    f"unable to find group {spec_group}: no matching entries in group file")
            gid = grp.gid
    elif entry is not None:
        additional = [g.gid for g in groups if entry.name in g.members and g.gid != gid]

    for extra in extra_groups or []:
        if extra.isdigit():
            additional.append(int(extra))
            continue
        grp = next((g for g in groups if g.name == extra), None)
        if grp is None:
            raise InvalidArgument(f"unable to find group {extra}: no matching entries in group file")
        additional.append(grp.gid)
    seen: list[int] = []
    for g in additional:
        if g not in seen:
            seen.append(g)
    return ExecUser(uid=uid, gid=gid, additional_gids=seen, home=home)
