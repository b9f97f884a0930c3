"""The overlay's eBPF fast path (``bpf/fastpath.c``): VXLAN encapsulation on the VXLAN
device's tcx egress and decapsulation on the underlay device's tcx ingress, in front of the
kernel's VXLAN device, which stays the path for everything the programs pass on (ARP and
other broadcast, unknown MACs, aggregates, held addresses...). Measured on the bench's netns
hosts: container-to-container RTT 1.28-1.32x the underlay through the kernel device, 1.10-1.14x
with the fast path (bench/reports/2026-12-07-overlay-rtt.md).

Why the loader is here (ctypes ``bpf()`` and a small ELF reader) rather than libbpf or
``tc``/``bpftool``: the object has two programs and four maps with no BTF, no global data and
no subprogram calls, so loading it is ~100 lines; nothing is pinned (this machine mounts no
bpffs, and a pin would outlive a killed daemon): the maps and the tcx links live exactly as
long as the daemon's file descriptors. A daemon killed with -9 takes its fast path with it and
the kernel device, whose FDB entries are still there, carries the traffic until the next start
attaches fresh programs. Only clang is needed, once, to build the object from its source into
the driver's data directory (cached by the source's hash).

The held-addresses map (``dy_held``) serves live migration's traffic hold (the driver's
``hold_addresses``, core's ``NetworkDriver`` seam): frames to or from an address in it take the
kernel path, through the netfilter hooks the hold's nft rules sit in.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import Unavailable

SOURCE = Path(__file__).with_name("bpf") / "fastpath.c"
PROGRAMS = ("dy_vxlan_egress", "dy_vxlan_ingress")
HELD_MAP = "dy_held"

# bpf(2) commands, map and program types, attach types (include/uapi/linux/bpf.h)
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 1, 2, 3
BPF_PROG_LOAD, BPF_PROG_QUERY, BPF_LINK_CREATE = 5, 16, 28
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_ARRAY = 1, 6
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47
BPF_PSEUDO_MAP_FD = 1
ATTR_SIZE = 128
SYSCALL_BPF = {"x86_64": 321, "aarch64": 280}
LOG_SIZE = 1 << 20

# name -> (type, key size, value size, max entries); layouts as in fastpath.c
MAPS: dict[str, tuple[int, int, int, int]] = {
    "dy_peers": (BPF_MAP_TYPE_HASH, 12, 16, 65536),  # (ifindex, MAC, pad) -> (remote, local, vni, oif)
    "dy_vnis": (BPF_MAP_TYPE_HASH, 4, 8, 4096),  # VNI -> (VXLAN ifindex, local)
    HELD_MAP: (BPF_MAP_TYPE_HASH, 4, 1, 4096),  # inner IPv4 -> hold count
    "dy_stats": (BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 2),  # frames encapsulated, decapsulated
}
STAT_ENCAP, STAT_DECAP = 0, 1


class BpfError(OSError):
    """A bpf(2) call failed; ``log`` holds the verifier's output for a program load."""

    def __init__(self, code: int, what: str, log: str = "") -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}" + (f"\n{log[-2000:]}" if log else ""))
        self.log = log


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    """One ``bpf(cmd, attr)`` call; its result (an fd for the creating commands)."""
    number = SYSCALL_BPF.get(platform.machine())
    if number is None:
        raise BpfError(errno.ENOSYS, f"bpf() on {platform.machine()}")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(ret)


def _attr(fmt: str, *values: object, at: int = 0, name: str = "", name_at: int = 0) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into(fmt, buf, at, *values)
    if name:
        struct.pack_into("16s", buf, name_at, name.encode()[:15])
    return buf


def _addr(buf: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buf)


# ------------------------------------------------------------------------------ maps
def map_create(name: str, kind: int, key_size: int, value_size: int, max_entries: int) -> int:
    return bpf(BPF_MAP_CREATE, _attr("=IIIII", kind, key_size, value_size, max_entries, 0, name=name, name_at=28),
               f"creating BPF map {name}")


def map_update(fd: int, key: bytes, value: bytes) -> None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    bpf(BPF_MAP_UPDATE_ELEM, _attr("=IIQQQ", fd, 0, _addr(k), _addr(v), 0), "updating a BPF map")


def map_delete(fd: int, key: bytes) -> bool:
    """False when the key was absent."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(BPF_MAP_DELETE_ELEM, _attr("=IIQ", fd, 0, _addr(k)), "deleting from a BPF map")
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, _attr("=IIQQQ", fd, 0, _addr(k), _addr(v), 0), "reading a BPF map")
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def possible_cpus() -> int:
    """How many values a per-CPU map holds per key (the kernel's possible CPUs)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    last = 0
    for part in text.split(","):
        last = max(last, int(part.split("-")[-1]))
    return last + 1


def attached_programs(ifindex: int, ingress: bool) -> int:
    """How many programs are on link ``ifindex``'s tcx ingress or egress (this thread's
    network namespace)."""
    attr = _attr("=IIII", ifindex, BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS, 0, 0)
    bpf(BPF_PROG_QUERY, attr, f"querying the tcx programs of link {ifindex}")
    return int(struct.unpack_from("=I", attr, 24)[0])  # prog_cnt, after prog_ids


# ------------------------------------------------------------------------------ the object
@dataclass
class Program:
    name: str
    insns: bytearray
    relocations: list[tuple[int, str]]  # (instruction index, map name)


def read_object(data: bytes) -> dict[str, Program]:
    """The programs of an eBPF ELF object (little-endian ELF64, as clang -target bpf writes on
    this architecture) with their map relocations (ld_imm64 of a map symbol)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 object")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def strz(table: int, off: int) -> str:
        start = sections[table][4] + off
        return data[start:data.index(b"\0", start)].decode()

    names = [strz(shstrndx, s[0]) for s in sections]
    symtab = next(i for i, s in enumerate(sections) if s[1] == 2)  # SHT_SYMTAB
    _, _, _, _, sym_off, sym_size, sym_link, _, _, _ = sections[symtab]
    symbols = []
    for off in range(sym_off, sym_off + sym_size, 24):
        st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, off)
        symbols.append((strz(sym_link, st_name), st_info & 0xF, st_shndx, st_value, st_size))
    programs: dict[str, Program] = {}
    by_section: dict[int, list[tuple[int, int, Program]]] = {}
    for name, kind, shndx, value, size in symbols:
        if kind == 2 and name in PROGRAMS:  # STT_FUNC
            body = data[sections[shndx][4] + value: sections[shndx][4] + value + size]
            prog = Program(name, bytearray(body), [])
            programs[name] = prog
            by_section.setdefault(shndx, []).append((value, size, prog))
    for i, s in enumerate(sections):
        if s[1] != 9 or s[7] not in by_section:  # SHT_REL against a program section
            continue
        for off in range(s[4], s[4] + s[5], 16):
            r_offset, r_info = struct.unpack_from("<QQ", data, off)
            sym = symbols[r_info >> 32][0]
            for start, size, prog in by_section[s[7]]:
                if start <= r_offset < start + size:
                    if sym not in MAPS:
                        raise ValueError(f"{names[i]}: relocation to {sym!r}, not a known map")
                    prog.relocations.append(((r_offset - start) // 8, sym))
    missing = set(PROGRAMS) - set(programs)
    if missing:
        raise ValueError(f"programs missing from the object: {', '.join(sorted(missing))}")
    for prog in programs.values():
        for j in range(0, len(prog.insns), 8):
            if prog.insns[j] == 0x85 and prog.insns[j + 1] >> 4 == 1:  # BPF_CALL, BPF_PSEUDO_CALL
                raise ValueError(f"{prog.name}: calls a subprogram (the loader links none)")
    return programs


def build_object(out_dir: Path, source: Path = SOURCE) -> Path:
    """The object built from ``source`` with clang into ``out_dir`` (named by the source's hash,
    so an unchanged source is built once)."""
    text = source.read_bytes()
    target = out_dir / f"fastpath-{hashlib.sha256(text).hexdigest()[:16]}.o"
    if target.exists():
        return target
    clang = shutil.which("clang")
    if clang is None:
        raise Unavailable("clang is not installed (make install's apt list has it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [clang, "-O2", "-target", "bpf", "-Wall", "-c", str(source), "-o", f"{target}.tmp"]
    multiarch = Path(f"/usr/include/{platform.machine()}-linux-gnu")
    if multiarch.is_dir():  # asm/types.h on Debian: -target bpf does not search it
        cmd[1:1] = ["-idirafter", str(multiarch)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise Unavailable(f"building the overlay fast path failed: {done.stderr.strip()[-500:]}")
    os.replace(f"{target}.tmp", target)
    return target


# ------------------------------------------------------------------------------ the fast path
def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@dataclass
class FastPath:
    """One engine's maps, programs and tcx links (file descriptors of this process)."""

    maps: dict[str, int] = field(default_factory=dict)
    programs: dict[str, int] = field(default_factory=dict)
    links: dict[tuple[int, int], int] = field(default_factory=dict)  # (ifindex, attach type) -> link

    @classmethod
    def create_maps(cls) -> FastPath:
        """The maps (cheap: no program yet), so that a migration can hold addresses from the start."""
        fp = cls()
        try:
            for name, spec in MAPS.items():
                fp.maps[name] = map_create(name, *spec)
        except BaseException:
            fp.close()
            raise
        return fp

    def load(self, obj: Path) -> None:
        """Load the programs of ``obj`` against this instance's maps (once)."""
        if self.programs:
            return
        for name, prog in read_object(obj.read_bytes()).items():
            insns = bytearray(prog.insns)
            for index, map_name in prog.relocations:
                insns[index * 8 + 1] = (insns[index * 8 + 1] & 0x0F) | (BPF_PSEUDO_MAP_FD << 4)
                struct.pack_into("<i", insns, index * 8 + 4, self.maps[map_name])
            code = ctypes.create_string_buffer(bytes(insns), len(insns))
            license_ = ctypes.create_string_buffer(b"GPL")
            log = ctypes.create_string_buffer(LOG_SIZE)
            attr = _attr("=IIQQIIQ", BPF_PROG_TYPE_SCHED_CLS, len(insns) // 8, _addr(code), _addr(license_),
                         1, LOG_SIZE, _addr(log), name=name, name_at=48)
            try:
                self.programs[name] = bpf(BPF_PROG_LOAD, attr, f"loading BPF program {name}")
            except BpfError as exc:
                raise BpfError(exc.errno or errno.EINVAL, f"loading BPF program {name}",
                               log.value.decode(errors="replace")) from None

    def attach(self, ifindex: int, ingress: bool) -> None:
        """The ingress program on ``ifindex``'s tcx ingress, or the egress program on its tcx
        egress (in this thread's network namespace); once per (device, direction)."""
        kind = BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS
        if (ifindex, kind) in self.links:
            return
        prog = self.programs[PROGRAMS[1] if ingress else PROGRAMS[0]]
        self.links[(ifindex, kind)] = bpf(BPF_LINK_CREATE, _attr("=IIII", prog, ifindex, kind, 0),
                                          f"attaching to tcx {'ingress' if ingress else 'egress'} of link {ifindex}")

    def detach(self, ifindex: int, ingress: bool) -> None:
        fd = self.links.pop((ifindex, BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS), None)
        if fd is not None:
            os.close(fd)

    def attached(self, ingress: bool) -> list[int]:
        kind = BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS
        return [i for i, k in self.links if k == kind]

    # -------------------------------------------------------------------- the maps' entries
    def set_network(self, vni: int, vxlan_ifindex: int, local: str) -> None:
        map_update(self.maps["dy_vnis"], struct.pack("<I", vni),
                   struct.pack("<I", vxlan_ifindex) + socket.inet_aton(local))

    def del_network(self, vni: int) -> None:
        map_delete(self.maps["dy_vnis"], struct.pack("<I", vni))

    def set_peer(self, vxlan_ifindex: int, mac: str, remote: str, local: str, vni: int, oif: int) -> None:
        map_update(self.maps["dy_peers"], struct.pack("<I", vxlan_ifindex) + _mac(mac) + b"\0\0",
                   socket.inet_aton(remote) + socket.inet_aton(local) + struct.pack("<II", vni, oif))

    def hold(self, address: str, step: int) -> None:
        """Add ``step`` (+1, -1) to ``address``'s hold count; at 0 it leaves the map."""
        fd, key = self.maps[HELD_MAP], socket.inet_aton(address)
        old = map_lookup(fd, key, 1)
        count = max(0, min(255, (old[0] if old else 0) + step))
        if count:
            map_update(fd, key, bytes([count]))
        else:
            map_delete(fd, key)

    def del_peer(self, vxlan_ifindex: int, mac: str) -> None:
        map_delete(self.maps["dy_peers"], struct.pack("<I", vxlan_ifindex) + _mac(mac) + b"\0\0")

    def stats(self) -> tuple[int, int]:
        """Frames encapsulated and decapsulated by the programs so far (all CPUs)."""
        out = []
        cpus = possible_cpus()
        for which in (STAT_ENCAP, STAT_DECAP):
            raw = map_lookup(self.maps["dy_stats"], struct.pack("<I", which), 8 * cpus) or b""
            out.append(sum(struct.unpack_from("<Q", raw, 8 * i)[0] for i in range(len(raw) // 8)))
        return out[0], out[1]

    def close(self) -> None:
        """Detach everything (closing a tcx link's last fd detaches it) and free the maps."""
        for fd in [*self.links.values(), *self.programs.values(), *self.maps.values()]:
            os.close(fd)
        self.links, self.programs, self.maps = {}, {}, {}
