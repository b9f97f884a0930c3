"""Helpers of the container service that read the host: ``top`` rows from /proc, archive
stats and tars (``docker cp``), log timestamps. Blocking; callers run them in a thread."""

from __future__ import annotations

import os
import pwd
import stat
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.tarsafe import secure_join

# ---------------------------------------------------------------------------- top
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
DEFAULT_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
#: ``ps -o`` field names we answer, and their titles
FIELDS = {"pid": "PID", "ppid": "PPID", "user": "USER", "uid": "UID", "comm": "COMMAND", "args": "COMMAND",
          "cmd": "CMD", "command": "COMMAND", "time": "TIME", "etime": "ELAPSED", "stat": "STAT", "rss": "RSS",
          "vsz": "VSZ", "nlwp": "NLWP", "tty": "TT", "stime": "STIME", "pgid": "PGID", "c": "C"}


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def proc_info(pid: int) -> dict[str, Any] | None:
    """What ``ps`` shows for one process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    utime, stime = int(rest[11]), int(rest[12])
    start = _boot_time() + int(rest[19]) / _CLK_TCK
    cpu = (utime + stime) / _CLK_TCK
    elapsed = max(time.time() - start, 0.001)
    args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip() or f"[{comm}]"
    tty_nr = int(rest[4])
    return {"pid": pid, "ppid": int(rest[1]), "uid": uid, "user": user, "comm": comm, "args": args,
            "state": rest[0], "time": cpu, "start": start, "elapsed": elapsed,
            "c": int(100 * cpu / elapsed), "rss": int(rest[21]) * os.sysconf("SC_PAGE_SIZE") // 1024,
            "vsz": int(rest[20]) // 1024, "nlwp": int(rest[17]), "pgid": int(rest[2]),
            "tty": "?" if tty_nr == 0 else f"pts/{os.minor(tty_nr)}"}


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _stime(start: float) -> str:
    t = time.localtime(start)
    return time.strftime("%H:%M", t) if time.time() - start < 86400 else time.strftime("%b%d", t)


def _value(info: dict[str, Any], name: str) -> str:
    if name in ("time",):
        return _clock(info["time"])
    if name == "etime":
        return _clock(info["elapsed"])
    if name == "stime":
        return _stime(info["start"])
    if name in ("cmd", "command", "args"):
        return info["args"]
    if name == "stat":
        return info["state"]
    return str(info[name])


def parse_ps_args(ps_args: str) -> list[str] | None:
    """The ``-o`` field list of ``ps_args`` (None = the default columns). Supported: empty,
    ``-ef``/``-f``/``aux``-style flags (default columns) and ``-o f1,f2`` / ``-o f1 -o f2``."""
    words = ps_args.split()
    fields: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-o", "o", "--format"):
            if i + 1 >= len(words):
                raise InvalidArgument("ps: -o needs a field list")
            fields += [f for f in words[i + 1].split(",") if f]
            i += 2
            continue
        if w.startswith("-o") and len(w) > 2:
            fields += [f for f in w[2:].split(",") if f]
        elif w.lstrip("-") and set(w.lstrip("-")) <= set("efauxwlAHjT"):
            pass
        else:
            raise InvalidArgument(f"ps: unsupported option {w!r}")
        i += 1
    for f in fields:
        if f.split("=")[0].lower() not in FIELDS:
            raise InvalidArgument(f"ps: unknown field {f!r}")
    return fields or None


def top(pids: list[int], ps_args: str = "") -> dict[str, Any]:
    """``{"Titles": [...], "Processes": [[...], ...]}`` for the container's PIDs."""
    fields = parse_ps_args(ps_args)
    infos = [i for i in (proc_info(p) for p in sorted(pids)) if i is not None]
    if fields is None:
        rows = [[i["user"], str(i["pid"]), str(i["ppid"]), str(i["c"]), _stime(i["start"]), i["tty"],
                 _clock(i["time"]), i["args"]] for i in infos]
        return {"Titles": list(DEFAULT_TITLES), "Processes": rows}
    titles, names = [], []
    for f in fields:
        name, _, title = f.partition("=")
        names.append(name.lower())
        titles.append(title or FIELDS[name.lower()])
    return {"Titles": titles, "Processes": [[_value(i, n) for n in names] for i in infos]}


# ---------------------------------------------------------------------------- archive
def go_mode(st: os.stat_result) -> int:
    """Go's ``os.FileMode`` bits for a stat result (what ``docker cp`` decodes)."""
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        mode |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        mode |= 1 << 27
    elif stat.S_ISFIFO(st.st_mode):
        mode |= 1 << 25
    elif stat.S_ISSOCK(st.st_mode):
        mode |= 1 << 24
    elif stat.S_ISCHR(st.st_mode):
        mode |= (1 << 26) | (1 << 21)
    elif stat.S_ISBLK(st.st_mode):
        mode |= 1 << 26
    if st.st_mode & stat.S_ISUID:
        mode |= 1 << 23
    if st.st_mode & stat.S_ISGID:
        mode |= 1 << 22
    if st.st_mode & stat.S_ISVTX:
        mode |= 1 << 20
    return mode


def resolve_in(rootfs: str, path: str, follow_last: bool = True) -> Path:
    """``path`` inside ``rootfs``; the last component's symlink is followed only if asked."""
    if "\x00" in path:  # no file has one (Go's os.Lstat answers "invalid argument")
        raise InvalidArgument(f"invalid path {path.split(chr(0))[0]!r}...: it contains a NUL byte")
    if not path.startswith("/"):
        path = "/" + path
    if follow_last:
        return secure_join(rootfs, path)
    parent, _, base = path.rstrip("/").rpartition("/")
    if not base:
        return Path(rootfs)
    return secure_join(rootfs, parent or "/") / base


def path_stat(rootfs: str, path: str, container: str) -> tuple[Path, dict[str, Any]]:
    """The host path and ``X-Docker-Container-Path-Stat`` JSON of ``path`` in a rootfs."""
    host = resolve_in(rootfs, path, follow_last=False)
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(host)
        if path.endswith("/") or path.endswith("/."):
            host = resolve_in(rootfs, path)
            st = os.stat(host)
    mtime = datetime.fromtimestamp(st.st_mtime, UTC).isoformat().replace("+00:00", "Z")
    name = os.path.basename(path.rstrip("/")) or "/"
    return host, {"name": name, "size": st.st_size, "mode": go_mode(st), "mtime": mtime, "linkTarget": link}


def write_tar(host: Path, arcname: str, out: Any) -> None:
    """Tar ``host`` (recursively) under ``arcname`` into the file object ``out``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        tf.add(str(host), arcname=arcname, recursive=True)


def iter_file(path: str, chunk: int = 1 << 16) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                return
            yield data


# ---------------------------------------------------------------------------- timestamps
def parse_ts(ts: str) -> tuple[int, str]:
    """A log timestamp as (unix nanoseconds, RFC 3339 UTC with 9 fractional digits and Z)."""
    ts = ts.strip()
    frac_ns = 0
    main, tz = ts, "Z"
    if ts.endswith("Z"):
        main = ts[:-1]
    else:
        for sep in ("+", "-"):
            idx = ts.rfind(sep)
            if idx > 10:
                main, tz = ts[:idx], ts[idx:]
                break
    if "." in main:
        main, frac = main.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    dt = datetime.fromisoformat(main + ("+00:00" if tz == "Z" else tz))
    secs = int(dt.timestamp())
    utc = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return secs * 1_000_000_000 + frac_ns, f"{utc}.{frac_ns:09d}Z"
