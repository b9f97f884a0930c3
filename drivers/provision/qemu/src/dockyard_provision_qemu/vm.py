"""One VM: qemu's command line, its launch, its process, QMP, and the probes that say it is up.

The recipe (shared/recipes/QEMU.md) measured each choice made here:

* direct kernel boot (``-kernel``/``-initrd``, ``root=/dev/vda``) of the image's cloud kernel,
  a qcow2 overlay per VM on the read-only ``base.raw``;
* KVM when ``/dev/kvm`` is usable and comes from ``kvm_intel`` or ``kvm_amd``; otherwise TCG
  (``-accel tcg,thread=multi,tb-size=128 -cpu max``: thread=single boots in 22 s instead of 14,
  the default translation cache doubles qemu's RSS), with a warning. ``/dev/kvm`` from
  ``kvm_pvm`` (pagetable-based virtualization, no vmx/svm) cannot boot a stock Debian kernel:
  qemu aborts on MSR 0x10a with ``-cpu host``, and with the CPU flags masked the guest dies in
  the decompressor or on XRSTOR. It would need a PVM guest kernel, which Debian does not ship;
* user-mode networking with ``restrict=on`` (the guest reaches no address, not even the host)
  and two forwards on 127.0.0.1 only: SSH and the engine's TLS port 2376;
* ``-daemonize -pidfile``: the launching qemu exits once the VM is set up (or with the reason
  it could not be, e.g. a forward whose port is taken), and the VM's qemu is nobody's child, so
  it outlives the driver like a container outlives its daemon. qemu deletes its pidfile when
  it exits, so the pid is read at once; a process is its pid and start time;
* QMP on a unix socket: ``system_powerdown`` (ACPI, logind powers off: 2.4-3.4 s under TCG),
  ``quit`` to end it at once; a SIGTERM/SIGKILL by pid when QMP does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import Unavailable
from dockyard.procs import alive, start_time, wait_exit  # noqa: F401 - this module's names too

GUEST_SSH_PORT = 22
GUEST_ENGINE_PORT = 2376
#: Where forwarded ports are picked: below the kernel's ephemeral range (32768-60999 by
#: default), so no outgoing connection's port ever collides with a VM's forward.
PORT_RANGE = (20000, 32767)
LOG_TAIL = 2000


# ---------------------------------------------------------------------------------- acceleration
@dataclass(frozen=True)
class Accel:
    """The accelerator a VM boots with: ``kvm`` or ``tcg``, and why TCG when it is TCG."""

    name: str
    warning: str = ""

    def argv(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,thread=multi,tb-size=128", "-cpu", "max"]


TCG_COST = "software emulation (TCG): boots take ~15 s instead of ~3 s and everything in the guest runs several times slower"


KVM_DEVICE = Path("/dev/kvm")
SYS_MODULE = Path("/sys/module")


def choose_accel(want: str = "auto", device: Path | None = None, modules: Path | None = None) -> Accel:
    """KVM when ``device`` (:data:`KVM_DEVICE`) is usable and ``kvm_intel`` or ``kvm_amd``
    (in ``modules``, :data:`SYS_MODULE`) drives it (``auto``), else TCG with the reason.
    ``want`` ``tcg`` forces TCG; ``kvm`` forces KVM (refused without a usable ``device``)."""
    device = device or KVM_DEVICE
    modules = modules or SYS_MODULE
    if want == "tcg":
        return Accel("tcg")
    usable = device.exists() and os.access(device, os.R_OK | os.W_OK)
    if want == "kvm":
        if not usable:
            raise Unavailable(f"qemu-accel=kvm, but {device} is missing or not accessible")
        return Accel("kvm")
    if not device.exists():
        return Accel("tcg", f"no {device} (no hardware virtualization here): {TCG_COST}")
    if not usable:
        return Accel("tcg", f"{device} is not readable and writable by this process: {TCG_COST}")
    if (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists():
        return Accel("kvm")
    if (modules / "kvm_pvm").exists():
        return Accel("tcg", f"{device} comes from kvm_pvm (pagetable-based virtualization, no VT-x/AMD-V), which "
                            "cannot boot a stock Debian kernel (it needs a PVM guest kernel): " + TCG_COST)
    return Accel("tcg", f"{device} is driven by neither kvm_intel nor kvm_amd: {TCG_COST}")


# ---------------------------------------------------------------------------------- ports
def ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def reserve_ports(count: int, taken: set[int] = frozenset()) -> list[socket.socket]:  # type: ignore[assignment]
    """``count`` ports on 127.0.0.1, each held by a bound socket (not listening) until the caller
    closes it just before qemu binds the port. Picked at random from :data:`PORT_RANGE`, minus
    the kernel's ephemeral range and ``taken``."""
    lo_e, hi_e = ephemeral_range()
    candidates = [p for p in range(*PORT_RANGE) if not (lo_e <= p <= hi_e) and p not in taken]
    random.shuffle(candidates)
    held: list[socket.socket] = []
    for port in candidates:
        if len(held) == count:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
    if len(held) < count:
        for s in held:
            s.close()
        raise Unavailable(f"no free port left on 127.0.0.1 in {PORT_RANGE[0]}-{PORT_RANGE[1]} for a VM's forwards")
    return held


# ---------------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class Machine:
    """Everything one boot of a VM needs."""

    name: str  # qemu -name: <owner>q-<host name>, what finds the process
    hostname: str
    accel: Accel
    memory_mb: int
    cpus: int
    kernel: Path
    initrd: Path
    disk: Path
    ssh_port: int
    engine_port: int
    authorized_keys: Path
    host_key: Path
    qmp: Path
    pidfile: Path
    console: Path
    extra_append: tuple[str, ...] = field(default_factory=tuple)

    def argv(self, qemu: str = "qemu-system-x86_64") -> list[str]:
        fwd = (f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:{GUEST_SSH_PORT},"
               f"hostfwd=tcp:127.0.0.1:{self.engine_port}-:{GUEST_ENGINE_PORT}")
        return [
            qemu, "-name", f"{self.name},process={self.name}", "-machine", "q35", *self.accel.argv(),
            "-m", str(self.memory_mb), "-smp", str(self.cpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", f"file:{self.console}",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd),
            "-append", " ".join(("root=/dev/vda", "rw", "console=ttyS0", *self.extra_append)),
            "-drive", f"file={self.disk},if=virtio,format=qcow2,discard=unmap",
            "-netdev", f"user,id=n0,restrict=on,{fwd}", "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci",
            "-fw_cfg", f"name=opt/dockyard/authorized_keys,file={self.authorized_keys}",
            "-fw_cfg", f"name=opt/dockyard/hostname,string={self.hostname}",
            "-fw_cfg", f"name=opt/dockyard/ssh_host_ed25519_key,file={self.host_key}",
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
            "-pidfile", str(self.pidfile), "-daemonize",
        ]


class PortTaken(Unavailable):
    """qemu could not bind a forward's port on 127.0.0.1 (someone took it since it was picked)."""


async def launch(machine: Machine, timeout: float = 60.0) -> tuple[int, int]:
    """Start the VM; return its qemu's pid and start time once the launcher has exited.

    Raises :class:`PortTaken` when a forward's port is in use, :class:`Unavailable` with qemu's
    message for any other failure."""
    machine.console.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        machine.qmp.unlink()
    proc = await asyncio.create_subprocess_exec(
        *machine.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        await _kill_from_pidfile(machine.pidfile)
        raise
    message = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        if "host forwarding rule" in message or "Could not set up host forwarding" in message:
            raise PortTaken(f"qemu: {message}")
        raise Unavailable(f"qemu could not start the VM (exit status {proc.returncode}): {message}")
    try:
        pid = int(machine.pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise Unavailable(f"qemu started but its pidfile {machine.pidfile} is unreadable ({exc}); "
                          f"the VM exited at once? {console_tail(machine.console)}") from exc
    start = start_time(pid)
    if start is None:
        raise Unavailable(f"the VM's qemu (pid {pid}) exited at once: {console_tail(machine.console)}")
    return pid, start


async def _kill_from_pidfile(pidfile: Path) -> None:
    """A launch cancelled after the VM daemonised: end the VM the pidfile names."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    start = start_time(pid)
    if start is not None:
        await kill(pid, start, grace=0)


def console_tail(console: Path, size: int = LOG_TAIL) -> str:
    try:
        with open(console, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no console output)"
    return "its console ends:\n" + text.replace("\r", "").strip() if text.strip() else "(no console output)"


# ---------------------------------------------------------------------------------- the process


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def find_processes(name_prefix: str) -> list[tuple[int, str]]:
    """qemu processes whose ``-name`` starts with ``name_prefix``: (pid, name)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        argv = cmdline(int(entry.name))
        if not argv or "qemu-system" not in os.path.basename(argv[0]):
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == "-name" and argv[i + 1].startswith(name_prefix):
                found.append((int(entry.name), argv[i + 1].split(",", 1)[0]))
    return found



async def kill(pid: int, start: int, grace: float = 5.0) -> None:
    """SIGTERM (qemu exits at once, the guest does not shut down), then SIGKILL after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not alive(pid, start):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if await wait_exit(pid, start, wait):
            return
    raise Unavailable(f"the VM's qemu (pid {pid}) did not exit after SIGKILL")


# ---------------------------------------------------------------------------------- QMP
async def qmp(path: Path, *commands: dict[str, object], timeout: float = 5.0) -> list[object]:
    """Run QMP ``commands`` (after ``qmp_capabilities``) on the socket ``path``; their returns.
    Raises OSError when the socket does not answer, Unavailable for a QMP error."""
    results: list[object] = []
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            await _qmp_read(reader)  # the greeting
            for cmd in ({"execute": "qmp_capabilities"}, *commands):
                writer.write(json.dumps(cmd).encode() + b"\n")
                await writer.drain()
                reply = await _qmp_read(reader)
                if "error" in reply:
                    raise Unavailable(f"QMP {cmd['execute']}: {reply['error'].get('desc', reply['error'])}")
                results.append(reply.get("return"))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return results[1:]


async def _qmp_read(reader: asyncio.StreamReader) -> dict[str, object]:
    """The next reply or greeting (events are skipped)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("QMP closed the connection")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


# ---------------------------------------------------------------------------------- probes
async def ssh_answers(port: int, timeout: float = 2.0) -> bool:
    """Whether an SSH server answers on 127.0.0.1:``port`` with its banner. (The forward itself
    accepts at once; without sshd behind it the connection is closed without a banner.)"""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return line.startswith(b"SSH-2.0-")


def engine_presents(port: int, ca_pem: Path, timeout: float = 5.0) -> bool:
    """Whether the engine's TLS listener answers on 127.0.0.1:``port`` with a certificate the
    host's CA signed for 127.0.0.1. TLS 1.3: the client's handshake completes before the engine
    checks the (absent) client certificate, so no client certificate is needed to see the
    engine's; the engine then drops the connection, and logs nothing."""
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return bool(tls.getpeercert())
    except (OSError, ssl.SSLError, ValueError):
        return False


async def wait_until(probe: Callable[[], object], deadline: float, what: str, still_alive: Callable[[], bool],
                     why_dead: Callable[[], str], interval: float = 0.25) -> None:
    """Poll ``probe`` (sync or async) until it is true, the VM dies (``still_alive``) or the
    ``deadline`` (monotonic) passes."""
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if not still_alive():
            raise Unavailable(f"the VM died while waiting for {what}: {why_dead()}")
        if time.monotonic() >= deadline:
            raise Unavailable(f"timed out waiting for {what}: {why_dead()}")
        await asyncio.sleep(interval)

