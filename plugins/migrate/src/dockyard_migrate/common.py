"""What both ends share: the journal of migrations in flight, the phase hook's call, the
lazy-pages sysctl, the default volume carrier and pipes between threads and the
event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import logging
import os
import queue
import re
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.jsonfile import RecordDir, write_json
from dockyard.model import Volume
from dockyard.specs.storage import VolumeCarrier

if TYPE_CHECKING:
    from dockyard.specs.network import NetworkDriver

#: fs.pipe-max-size CRIU's lazy pages need on a host whose root lacks CAP_SYS_RESOURCE
LAZY_PIPE_MAX = 4194304
PIPE_MAX = Path("/proc/sys/fs/pipe-max-size")


@dataclass
class Record:
    """One migration in flight, as the side that keeps it last wrote it (durably)."""

    id: str
    side: str  # source | target
    phase: str  # source: prepare dump transfer commit cleanup; target: receive restore restored
    container: str = ""  # source: the container's ID; target: its name
    checkpoint: str = ""  # source: the checkpoint kept for resuming
    target_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Journal(RecordDir[Record]):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory, Record, lenient=True)

    def save(self, record: Record) -> None:  # durable: a crash right after must find it
        import dataclasses

        write_json(self.path(record.id), dataclasses.asdict(record), durable=True)


def data_dir(kernel: Any) -> Path:
    return Path(kernel.config.data_root) / "migrate"


# ------------------------------------------------------------------ phases
def phase_reached(kernel: Any, side: str, phase: str, container: str, migration: str) -> None:
    """Tell the plugins that implement ``dockyard_migration_phase`` (progress, auditing, a
    crash test's faults) that this migration reached ``phase`` on ``side``. What one raises
    fails the migration at that point, as any failure there would."""
    kernel.hook.dockyard_migration_phase(kernel=kernel, side=side, phase=phase, container=container,
                                         migration=migration)


# ------------------------------------------------------------------ lazy pages sysctl
_sysctl_lock = threading.Lock()
_sysctl_users = 0
_sysctl_old = ""


@contextlib.contextmanager
def lazy_pipe_size() -> Iterator[None]:
    """Raise fs.pipe-max-size for CRIU's lazy pages while at least one migration needs it,
    and set it back after the last."""
    global _sysctl_users, _sysctl_old
    with _sysctl_lock:
        if _sysctl_users == 0:
            _sysctl_old = PIPE_MAX.read_text().strip()
            if int(_sysctl_old) < LAZY_PIPE_MAX:
                PIPE_MAX.write_text(str(LAZY_PIPE_MAX))
        _sysctl_users += 1
    try:
        yield
    finally:
        with _sysctl_lock:
            _sysctl_users -= 1
            if _sysctl_users == 0 and _sysctl_old and int(_sysctl_old) < LAZY_PIPE_MAX:
                PIPE_MAX.write_text(_sysctl_old)


# ------------------------------------------------------------------ holding traffic during a restore
@contextlib.contextmanager
def hold_addresses(owner: str, tag: str, addresses: list[str],
                   drivers: Sequence[NetworkDriver] = ()) -> Iterator[None]:
    """Drop what this host carries to or from ``addresses`` while a restore runs and until
    the source has committed.

    The target's network sandbox owns the container's address before CRIU has put its
    sockets back; a peer's retransmission arriving then would be answered with a reset and the
    connection lost. CRIU locks the network for a namespace it restores itself, not for the
    engine's sandbox, so the migration does it here, with nft tables named with the engine's
    owner token; the peers' TCP retransmits after it. Held until the source's ``done``, it also
    keeps a restored copy the source may still give up (and resume its own) from answering, or
    sending, anything. Three tables, as containers are attached three ways:

    - ``bridge``: what the bridges forward (bridge networks, veths on an overlay's bridge);
    - ``ip``: VXLAN frames (UDP 4789) whose inner IPv4 packet is to (arriving) or from (leaving)
      the addresses: an overlay's peers on other hosts, whichever way the container is
      attached here (the overlay's macvlan children have no bridge);
    - ``netdev``: the ingress of every link this namespace has now, so frames between macvlan
      children of one device (passed through the device's receive path) are held too.

    A network driver whose data path skips those hooks (the overlay's eBPF fast path) is
    told through ``drivers`` (core's ``NetworkDriver.hold_addresses``): the target engine's
    network drivers carry the addresses' frames through the kernel's paths, so through the
    rules above, until the hold ends."""
    ips = [a for a in addresses if a and ":" not in a]
    table = f"{owner}mig{tag[:8]}"
    if not ips or not shutil.which("nft"):
        yield
        return
    held = ", ".join(ips)
    inner = ", ".join(f"0x{int(ipaddress.IPv4Address(a)):08x}" for a in ips)
    vxlan = "udp dport 4789 @th,224,16 0x0800"  # the UDP header, VXLAN's, then the inner Ethernet's type
    rules = (f"table bridge {table} {{ chain hold {{ type filter hook forward priority -200; policy accept; "
             f"ip daddr {{ {held} }} drop; ip saddr {{ {held} }} drop; }}; }}\n"
             f"table ip {table} {{ chain in {{ type filter hook prerouting priority -300; policy accept; "
             f"{vxlan} @th,368,32 {{ {inner} }} drop; }}; chain out {{ type filter hook output priority -300; "
             f"policy accept; {vxlan} @th,336,32 {{ {inner} }} drop; }}; }}\n")
    tables = [f"bridge {table}", f"ip {table}"]
    links = [n for _, n in socket.if_nameindex() if n != "lo" and re.fullmatch(r"[\w.@-]+", n)]
    if links:
        rules += (f"table netdev {table} {{ chain hold {{ type filter hook ingress devices = {{ "
                  f"{', '.join(json.dumps(n) for n in links)} }} priority -300; policy accept; "
                  f"meta protocol ip ip daddr {{ {held} }} drop; meta protocol ip ip saddr {{ {held} }} drop; }}; }}\n")
        tables.append(f"netdev {table}")
    steered = []
    for drv in drivers:
        try:
            drv.hold_addresses(ips, True)
            steered.append(drv)
        except Exception:  # noqa: BLE001 - that driver's traffic is then not held: said, not fatal
            logging.getLogger(__name__).warning("could not hold %s in the %s network driver", ips,
                                                drv.info.name, exc_info=True)
    done = subprocess.run(["nft", "-f", "-"], input=rules, text=True, capture_output=True, check=False, timeout=10)
    if done.returncode != 0:
        logging.getLogger(__name__).warning("could not hold traffic to %s during the restore: %s", ips,
                                            done.stderr.strip())
    # the release ends the frozen window (the client's first answer waits for it): an nft
    # already running, told on its stdin, takes ~1 ms where starting one from the daemon took
    # 15-20 ms (load 5)
    release: subprocess.Popen[bytes] | None = None
    with contextlib.suppress(OSError):
        release = subprocess.Popen(["nft", "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        if release is not None and release.stdin is not None:
            try:
                release.stdin.write("".join(f"delete table {t}\n" for t in tables).encode())
                release.stdin.close()  # nft exits once it has done it
            except OSError:
                release.kill()
                release = None
            if release is not None:
                threading.Thread(target=_reap, args=(release,), daemon=True).start()
        if release is None:
            for t in tables:
                subprocess.run(["nft", "delete", "table", *t.split()], capture_output=True, check=False, timeout=10)
        for drv in steered:
            with contextlib.suppress(Exception):
                drv.hold_addresses(ips, False)


def _reap(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ the local volume carrier
def send_dir(volume: Volume, out: BinaryIO) -> None:
    """The volume's directory as a tar stream (no temporary copy)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        root = volume.mountpoint
        if root and os.path.isdir(root):
            for entry in sorted(os.listdir(root)):
                tf.add(os.path.join(root, entry), arcname=entry)


def receive_dir(volume: Volume, src: BinaryIO) -> None:
    """Fill the volume's directory from a tar stream, hostile-archive safe."""
    from dockyard import tarsafe

    root = Path(volume.mountpoint)
    with tarfile.open(fileobj=src, mode="r|") as tf:
        for m in tf:
            parts = tarsafe.split_name(m.name, m.name)
            if not parts:
                continue
            if not (m.isfile() or m.isdir() or m.issym()):
                raise tarsafe.UnsafeArchive(f"volume {volume.name}: member {m.name!r} is not a file, directory or symlink")
            target = tarsafe.secure_join(root, "/".join(parts))
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                os.chmod(target, m.mode & 0o7777)
            elif m.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
                os.symlink(m.linkname, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                f = tf.extractfile(m)
                with open(target, "wb") as fh:
                    if f is not None:
                        while chunk := f.read(1 << 20):
                            fh.write(chunk)
                os.chmod(target, m.mode & 0o7777)
            if os.geteuid() == 0 and not m.issym():
                os.chown(target, m.uid, m.gid)


LOCAL_CARRIER = VolumeCarrier("local", drivers=("local",), send=send_dir, receive=receive_dir)


# ------------------------------------------------------------------ threads <-> the loop
async def pump_thread_writer(fn: Callable[[BinaryIO], None], send: Callable[[bytes], Any]) -> None:
    """Run ``fn(out)`` in a thread and ``await send(chunk)`` for what it writes to ``out``."""
    r, w = os.pipe()
    loop = asyncio.get_running_loop()

    def run() -> None:
        with open(w, "wb", buffering=1 << 20) as out:
            fn(out)

    task = loop.run_in_executor(None, run)
    reader = asyncio.StreamReader(limit=1 << 21)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), open(r, "rb", buffering=0))
    try:
        while chunk := await reader.read(1 << 20):
            await send(chunk)
        await task
    finally:
        transport.close()


#: how many chunks (of up to 1 MiB) the loop may get ahead of the thread consuming them
QUEUE_DEPTH = 16


class ChunkStream(io.RawIOBase):
    """The chunks a queue delivers as a binary stream (None ends it). A read returns what is
    there (up to its size), the queued bytes object itself when it fits whole: no copy."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        super().__init__()
        self.chunks = chunks
        self.cur: bytes | memoryview = b""
        self.ended = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self.cur:
            if self.ended:
                return b""
            item = self.chunks.get()
            if item is None:
                self.ended = True
                return b""
            self.cur = item
        if size < 0 or size >= len(self.cur):
            out, self.cur = self.cur, b""
            return out if isinstance(out, bytes) else bytes(out)
        view = memoryview(self.cur)
        out_part, self.cur = bytes(view[:size]), view[size:]
        return out_part

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


class ThreadReader:
    """The loop feeds chunks; a thread consumes them as a binary stream. Up to
    :data:`QUEUE_DEPTH` chunks wait in between, so the loop goes on reading the network while the
    thread writes to disk (a pipe of one chunk made each wait for the other)."""

    def __init__(self, fn: Callable[[BinaryIO], None]) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.fn = fn
        loop = asyncio.get_running_loop()
        self.task = loop.run_in_executor(None, self._run)

    def _run(self) -> None:
        src = ChunkStream(self.chunks)
        try:
            self.fn(src)  # type: ignore[arg-type]
        finally:
            while src.read(1 << 20):  # drain so the feeder never blocks on a dead reader
                pass

    async def feed(self, data: bytes | None) -> None:
        try:
            self.chunks.put_nowait(data)
        except queue.Full:
            await asyncio.to_thread(self.chunks.put, data)

    async def finish(self) -> None:
        await self.feed(None)
        await self.task
