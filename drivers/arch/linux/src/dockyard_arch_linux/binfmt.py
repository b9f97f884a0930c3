"""Foreign Linux architectures under emulation: binfmt_misc handlers for qemu-user-static.

The kernel's binfmt_misc hands an ELF whose header matches a registered ``magic``/``mask`` to
an interpreter. With the ``F`` (fix-binary) flag the kernel opens the interpreter when the entry
is registered, so it also runs inside a container whose root filesystem lacks it: conmon, crun
and runc need nothing else, which is why emulation is a capability of the ``linux`` runtime
driver (its :meth:`~dockyard_arch_linux.driver.LinuxRuntime.platforms` lists each platform a
usable handler covers as ``emulated``) rather than a driver of its own.

Ownership (``dockyard system binfmt install|status|remove``):

- Entries dockyard makes are named ``dockyard-qemu-<machine>`` (``dockyard-qemu-aarch64``) and
  recorded in :data:`RECORD` (``/run/dockyard/binfmt.json``: registrations last until reboot,
  as /run does), with the interpreter, the time and whether dockyard mounted binfmt_misc.
- Any other entry matching the same ELF machine (Debian's ``qemu-aarch64`` from binfmt-support,
  a ``tonistiigi/binfmt`` one) is someone else's: it is reported and, when it is enabled with
  ``F``, used; ``install`` never registers over it (the kernel would pick the newest entry,
  silently replacing theirs) and ``remove`` never touches it.

Magic and mask come from the package's own ``/usr/share/binfmts/qemu-<machine>`` (Debian's
qemu-user-static) and fall back to the table below (qemu's ``scripts/qemu-binfmt-conf.sh``).
Reading state needs no privilege; install and remove need root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform as _platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MISC = Path("/proc/sys/fs/binfmt_misc")
RECORD = Path(os.environ.get("DOCKYARD_BINFMT_RECORD") or "/run/dockyard/binfmt.json")
BINFMTS = Path("/usr/share/binfmts")
PREFIX = "dockyard-qemu-"
#: What ``install`` registers by default (when qemu-user-static has the interpreter).
DEFAULT_MACHINES = ("aarch64", "arm", "riscv64")

_ELF64_MASK = "ff" * 7 + "00" + "ff" * 8 + "feffffff"
_ELF64_BE_MASK = "ff" * 7 + "00" + "ff" * 8 + "fffeffff"


@dataclass(frozen=True)
class Machine:
    """A qemu-user machine: its OCI platform and the ELF header bytes that select it."""

    name: str  # qemu's: aarch64, arm, riscv64
    platform: str  # OCI: linux/arm64, linux/arm/v7
    magic: bytes
    mask: bytes

    def sample(self) -> bytes:
        """An executable's header this machine runs (what the kernel compares)."""
        return self.magic

    def interpreter(self) -> str:
        return f"/usr/bin/qemu-{self.name}-static"


def _m(name: str, plat: str, klass: int, machine: int, big: bool = False) -> Machine:
    head = bytes([0x7F, 0x45, 0x4C, 0x46, klass, 2 if big else 1, 1]) + bytes(9)
    tail = (b"\x00\x02" + machine.to_bytes(2, "big")) if big else (b"\x02\x00" + machine.to_bytes(2, "little"))
    return Machine(name, plat, head + tail, bytes.fromhex(_ELF64_BE_MASK if big else _ELF64_MASK))


#: qemu machine -> OCI platform, for the machines an OCI image names (GOARCH).
MACHINES: dict[str, Machine] = {m.name: m for m in (
    _m("aarch64", "linux/arm64", 2, 0xB7),
    _m("arm", "linux/arm/v7", 1, 0x28),
    _m("riscv64", "linux/riscv64", 2, 0xF3),
    _m("ppc64le", "linux/ppc64le", 2, 0x15),
    _m("s390x", "linux/s390x", 2, 0x16, big=True),
    _m("mips64el", "linux/mips64le", 2, 0x08),
    _m("loongarch64", "linux/loong64", 2, 0x102),
    _m("x86_64", "linux/amd64", 2, 0x3E),
    _m("i386", "linux/386", 1, 0x03),
)}
#: ``uname -m`` of a host -> the qemu machines it runs natively (no handler needed).
NATIVE = {"x86_64": ("x86_64", "i386"), "aarch64": ("aarch64", "arm"), "armv7l": ("arm",),
          "riscv64": ("riscv64",), "ppc64le": ("ppc64le",), "s390x": ("s390x",)}


class BinfmtError(Exception):
    """A registration could not be read, made or removed (the message says why and what to do)."""


@dataclass
class Entry:
    """One ``/proc/sys/fs/binfmt_misc/<name>`` entry."""

    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes

    @property
    def fixed(self) -> bool:
        return "F" in self.flags

    def handles(self, machine: Machine) -> bool:
        """Whether the kernel would hand an executable of ``machine`` to this entry."""
        n = len(self.magic)
        sample = (bytes(self.offset) + machine.sample())[self.offset:self.offset + n]
        if len(sample) < n:
            return False
        mask = int.from_bytes((self.mask or b"\xff" * n)[:n].ljust(n, b"\xff"), "big")
        return int.from_bytes(sample, "big") & mask == int.from_bytes(self.magic, "big") & mask

    @property
    def ours(self) -> bool:
        return self.name.startswith(PREFIX)


@dataclass
class MachineStatus:
    """How one foreign machine stands: which entries handle it and whether containers can use one."""

    machine: str
    platform: str
    interpreter_installed: bool
    entries: list[Entry] = field(default_factory=list)

    @property
    def usable(self) -> Entry | None:
        """The entry a container's exec would go through: enabled, with ``F``; None when none is
        (or when several enabled entries match and one lacks ``F``: the kernel's pick is theirs)."""
        live = [e for e in self.entries if e.enabled]
        if not live or not all(e.fixed for e in live):
            return None
        return next((e for e in live if e.ours), live[0])

    def why_not(self) -> str:
        live = [e for e in self.entries if e.enabled]
        if not live:
            if not self.interpreter_installed:
                return "qemu-user-static is not installed"
            return f"no handler registered: `dockyard system binfmt install {self.machine}`"
        bad = [e.name for e in live if not e.fixed]
        return (f"handler {', '.join(bad)} lacks the F flag (containers cannot reach its interpreter); "
                "re-register it with F (Debian: fix_binary yes) or remove it, then `dockyard system binfmt install`")


def mounted(misc: Path = MISC) -> bool:
    return (misc / "register").exists()


def enabled(misc: Path = MISC) -> bool:
    try:
        return (misc / "status").read_text().strip() == "enabled"
    except OSError:
        return False


def parse_entry(name: str, text: str) -> Entry:
    """An entry from its file's text (``enabled``, ``interpreter P``, ``flags: F``, ``offset N``,
    ``magic HEX``, ``mask HEX``)."""
    e = Entry(name=name, enabled=False, interpreter="", flags="", offset=0, magic=b"", mask=b"")
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "enabled":
            e.enabled = True
        elif key == "interpreter":
            e.interpreter = value.strip()
        elif key == "flags:":
            e.flags = value.strip()
        elif key == "offset":
            e.offset = int(value or 0)
        elif key == "magic":
            e.magic = bytes.fromhex(value.strip())
        elif key == "mask":
            e.mask = bytes.fromhex(value.strip())
    return e


def entries(misc: Path = MISC) -> list[Entry]:
    """Every registered entry (magic type; extension entries have no magic and match no ELF)."""
    out = []
    try:
        names = sorted(os.listdir(misc))
    except OSError:
        return []
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            out.append(parse_entry(name, (misc / name).read_text()))
        except (OSError, ValueError):
            continue
    return out


@functools.lru_cache(maxsize=64)
def machine_of(name: str) -> Machine:
    """The machine ``name`` with the package's magic and mask when it ships them (read once per
    process: ``platforms()`` asks at every create and start)."""
    try:
        base = MACHINES[name]
    except KeyError:
        raise BinfmtError(f"unknown machine {name!r} (known: {', '.join(sorted(MACHINES))})") from None
    deb = BINFMTS / f"qemu-{name}"  # the package's own magic and mask, when it ships them
    try:
        fields = dict(line.split(" ", 1) for line in deb.read_text().splitlines() if " " in line)
        magic = fields["magic"].encode().decode("unicode_escape").encode("latin-1")
        mask = fields["mask"].encode().decode("unicode_escape").encode("latin-1")
        return Machine(name, base.platform, magic, mask)
    except (OSError, KeyError, ValueError, UnicodeError):
        return base


def foreign(host_machine: str | None = None) -> list[Machine]:
    """The machines this host does not run natively."""
    host_machine = host_machine or _platform.machine()
    native = NATIVE.get(host_machine, (host_machine,))
    return [machine_of(n) for n in MACHINES if n not in native]


def status(misc: Path = MISC, host_machine: str | None = None) -> list[MachineStatus]:
    """Each foreign machine with the entries that handle it (empty when binfmt_misc is not mounted)."""
    found = entries(misc) if enabled(misc) else []
    out = []
    for m in foreign(host_machine):
        out.append(MachineStatus(m.name, m.platform, os.path.exists(m.interpreter()),
                                 [e for e in found if e.magic and e.handles(m)]))
    return out


def emulated_platforms(misc: Path = MISC) -> list[tuple[str, str]]:
    """``(platform, entry name)`` for every foreign machine a usable handler covers."""
    out = []
    for st in status(misc):
        use = st.usable
        if use is not None:
            out.append((st.platform, use.name))
    return out


def register_line(m: Machine, name: str = "", interpreter: str = "", flags: str = "F") -> str:
    """The string written to ``register``: ``:name:M:offset:magic:mask:interpreter:flags``, each
    byte ``\\xHH`` (the kernel decodes the escapes)."""
    def esc(b: bytes) -> str:
        return "".join(f"\\x{x:02x}" for x in b)

    return f":{name or PREFIX + m.name}:M::{esc(m.magic)}:{esc(m.mask)}:{interpreter or m.interpreter()}:{flags}"


# ------------------------------------------------------------------------------------ record
def read_record(path: Path = RECORD) -> dict:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(doc: dict, path: Path = RECORD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ changes
def mount(misc: Path = MISC, record: Path = RECORD) -> bool:
    """Mount binfmt_misc when it is not; True when this call mounted it (recorded)."""
    if mounted(misc):
        return False
    proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BinfmtError(f"cannot mount binfmt_misc on {misc}: {proc.stderr.strip() or 'mount failed'} "
                          "(needs root)")
    doc = read_record(record)
    doc["mounted"] = True
    _write_record(doc, record)
    return True


@dataclass
class Outcome:
    """What ``install``/``remove`` did per machine: made, removed, kept (someone else's or
    already ours), skipped (why)."""

    made: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"registered {n}" for n in self.made] + [f"removed {n}" for n in self.removed]
                + [f"kept {n}" for n in self.kept] + [f"skipped {n}" for n in self.skipped])


def install(machines: list[str] | None = None, misc: Path = MISC, record: Path = RECORD) -> Outcome:
    """Register ``dockyard-qemu-<machine>`` with ``F`` for each foreign machine asked (default:
    :data:`DEFAULT_MACHINES` that qemu-user-static has) that has no handler yet; an existing
    handler, ours or someone else's, is kept and reported (never replaced)."""
    names = list(machines or [n for n in DEFAULT_MACHINES if os.path.exists(machine_of(n).interpreter())])
    known = {m.name for m in foreign()}
    out = Outcome()
    mount(misc, record)
    if not enabled(misc):
        raise BinfmtError(f"binfmt_misc is disabled ({misc}/status); enable it: echo 1 > {misc}/status")
    current = {st.machine: st for st in status(misc)}
    doc = read_record(record)
    made = doc.setdefault("entries", {})
    for name in names:
        m = machine_of(name)
        if name not in known:
            out.skipped.append(f"{name}: this host runs {m.platform} natively" if name in MACHINES
                               else f"{name}: unknown machine")
            continue
        st = current[name]
        if st.entries:
            for e in st.entries:
                how = "ours" if e.ours else "someone else's"
                note = "" if e.fixed and e.enabled else (" (disabled)" if not e.enabled else " (no F flag: unusable "
                                                         "in containers)")
                out.kept.append(f"{e.name}: {how}, {m.platform} via {e.interpreter}{note}")
            continue
        if not os.path.exists(m.interpreter()):
            out.skipped.append(f"{name}: {m.interpreter()} missing (install qemu-user-static)")
            continue
        try:
            (misc / "register").write_text(register_line(m))
        except OSError as exc:
            raise BinfmtError(f"cannot register {PREFIX}{name}: {exc} (needs root)") from exc
        made[PREFIX + name] = {"machine": name, "platform": m.platform, "interpreter": m.interpreter(),
                               "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid()}
        out.made.append(PREFIX + name)
    _write_record(doc, record)
    return out


def remove(names: list[str] | None = None, misc: Path = MISC, record: Path = RECORD) -> Outcome:
    """Remove our entries (``dockyard-qemu-*``; ``names`` may name entries or machines); another's
    is refused. binfmt_misc is unmounted when dockyard mounted it and no entry is left."""
    out = Outcome()
    doc = read_record(record)
    made = doc.setdefault("entries", {})
    present = {e.name: e for e in entries(misc)}
    wanted = [n if n in present or n.startswith(PREFIX) else PREFIX + n for n in names] if names else \
        sorted(set(n for n in present if n.startswith(PREFIX)) | set(made))
    for name in wanted:
        if not name.startswith(PREFIX):
            out.skipped.append(f"{name}: not dockyard's (remove it with the tool that made it)")
            continue
        if name in present:
            try:
                (misc / name).write_text("-1")
            except OSError as exc:
                raise BinfmtError(f"cannot remove {name}: {exc} (needs root)") from exc
            out.removed.append(name)
        made.pop(name, None)
    if doc.get("mounted") and mounted(misc) and not entries(misc):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(["umount", str(misc)], capture_output=True).returncode == 0:
                doc["mounted"] = False
    if made or doc.get("mounted"):
        _write_record(doc, record)
    else:
        with contextlib.suppress(OSError):
            record.unlink()
    return out


def report(misc: Path = MISC) -> dict:
    """``status`` as JSON-able data (the CLI's ``--format json`` and the driver's log line)."""
    rec = read_record().get("entries", {})
    rows = []
    for st in status(misc):
        use = st.usable
        rows.append({"Machine": st.machine, "Platform": st.platform, "Usable": use is not None,
                     "Entry": use.name if use else "", "Why": "" if use else st.why_not(),
                     "Handlers": [{**{k: v for k, v in asdict(e).items() if k not in ("magic", "mask")},
                                   "Ours": e.ours, "Recorded": e.name in rec} for e in st.entries]})
    return {"Mounted": mounted(misc), "Enabled": enabled(misc), "Machines": rows}


__all__ = ["BinfmtError", "DEFAULT_MACHINES", "Entry", "MACHINES", "Machine", "MachineStatus", "Outcome", "PREFIX",
           "RECORD", "emulated_platforms", "entries", "foreign", "install", "machine_of", "parse_entry", "register_line",
           "remove", "report", "status"]
