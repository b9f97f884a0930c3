"""SSH targets for tests and benchmarks: Debian's real ``sshd`` in a network namespace.

A target is what a freshly booted Debian machine looks like to the ssh driver, made on this
machine (root, ``openssh-server`` and pyroute2 needed; imported when a target is made): a named network namespace ``<owner>-t<n>`` joined to this machine by a veth pair
(``<owner>t<n>`` with ``.1`` here, ``eth0`` with ``.2`` inside, a random free /24 of
10.246.0.0/16, no default route), its own ``sshd`` (started inside it, stopped by its PID) with
its own ``sshd_config``, ed25519 host key and ``authorized_keys``, and its own host name,
``/etc/hostname``, ``/etc/hosts``, ``/run`` and ``/root`` (UTS and private mount namespaces).
This distribution's tests wrap it in fixtures with leak checks (``tests/conftest.py``);
``bench/benchmarks/ssh_hosts.py`` provisions on it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.specs.provision import SshTarget
from dockyard_provision_ssh.installer import engine_owner

SUBNET_BASE = "10.246.0.0/16"
SSHD = "/usr/sbin/sshd"
CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS = 0x40000000, 0x00020000, 0x04000000
MS_REC, MS_PRIVATE, MS_BIND = 16384, 1 << 18, 4096
_libc = ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "SSH targets need root (network namespaces)"
    if not os.path.exists(SSHD):
        return "Debian's openssh-server is not installed (make install)"
    for module, dist in (("pyroute2", "pyroute2"), ("dockyard_engine", "dockyard-engine"),
                         ("dockyard_api_docker", "dockyard-api-docker"), ("dockyard_arch_linux", "dockyard-arch-linux")):
        if importlib.util.find_spec(module) is None:
            return f"an SSH target's engine needs {dist}: pip install {dist}"
    return None


def _asyncssh():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh
    return asyncssh


def _enter(netns_fd: int, hostname: bytes, hostname_file: bytes, hosts_file: bytes,
           root_home: bytes) -> Callable[[], None]:
    """sshd's preexec_fn: the target's network namespace, its own UTS and mount namespaces,
    its own /run, /etc/hostname, /etc/hosts and /root (this machine's root dotfiles, a pyenv
    on its PATH, are not the target's)."""
    def check(ok: int, what: str) -> None:
        if ok != 0:
            err = ctypes.get_errno()
            os.write(2, f"ssh target: {what}: {os.strerror(err)}\n".encode())
            raise OSError(err, what)

    def enter() -> None:
        check(_libc.setns(netns_fd, CLONE_NEWNET), "setns")
        check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "private /")
        check(_libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755"), "tmpfs /run")
        os.mkdir("/run/sshd", 0o755)
        check(_libc.mount(hostname_file, b"/etc/hostname", None, MS_BIND, None), "bind /etc/hostname")
        check(_libc.mount(hosts_file, b"/etc/hosts", None, MS_BIND, None), "bind /etc/hosts")
        check(_libc.mount(root_home, b"/root", None, MS_BIND, None), "bind /root")
        check(_libc.sethostname(hostname, len(hostname)), "sethostname")

    return enter


@dataclass
class Target:
    """One SSH target (see the module doc). ``options()`` are the driver's options for it."""

    owner: str
    index: int
    dir: Path
    subnet: str
    address: str = ""
    gateway: str = ""
    netns: str = ""
    veth: str = ""
    install_root: str = ""
    host_key_pub: str = ""
    client_key: Path = Path()
    sshd: subprocess.Popen[bytes] | None = None
    engine_tokens: set[str] = field(default_factory=set)

    @property
    def unreachable(self) -> str:
        """An address of the target's subnet that nothing answers."""
        return self.subnet.rsplit(".", 1)[0] + ".3"

    def options(self, **extra: str) -> dict[str, str]:
        opts = {"ssh-address": self.address, "ssh-key": str(self.client_key), "ssh-host-key": self.host_key_pub,
                "install-root": self.install_root}
        opts.update(extra)
        return {k: v for k, v in opts.items() if v is not None}

    def ssh_target(self) -> SshTarget:
        return SshTarget(address=self.address, key_path=str(self.client_key), install_root=self.install_root,
                         known_hosts=str(self.dir / "known_hosts"))

    def track(self, name: str) -> str:
        """Record the owner token of engine ``name`` (its kernel objects) for the leak check."""
        self.engine_tokens.add(engine_owner(self.ssh_target(), name))
        return name

    def processes(self, sessions: bool = False) -> list[str]:
        """Processes (pid, command line) inside the target's network namespace, sshd aside (and
        its per-connection processes, which end a moment after their client disconnected,
        unless ``sessions``)."""
        try:
            ino = os.stat(f"/run/netns/{self.netns}").st_ino
        except FileNotFoundError:
            return []
        out = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or (self.sshd and int(entry.name) == self.sshd.pid):
                continue
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino != ino:
                    continue
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2] in "ZX":  # dead, waiting to be reaped by its parent
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            # sshd's per-connection processes: "sshd: ..." once named, or still nameless ("sshd",
            # no command line yet) when a connection closes under load
            if sessions or not (cmd.startswith("sshd:") or (comm == "sshd" and not cmd)):
                close = stat.rindex(")")
                what = cmd[:200] or f"[{stat[stat.index('(') + 1:close]}, state {stat[close + 2]}]"
                out.append(f"{entry.name} {what}")
        return out

    def mounts_under_root(self) -> list[str]:
        """Mounts below the install root as the target sees them (its own mount namespace)."""
        if self.sshd is None:
            return []
        try:
            lines = Path(f"/proc/{self.sshd.pid}/mountinfo").read_text().splitlines()
        except OSError:
            return []
        points = [line.split()[4] for line in lines]
        return [p for p in points if p == self.install_root or p.startswith(self.install_root + "/")]

    def hostname(self) -> str:
        """The target's running host name (as a process inside it sees it)."""
        assert self.sshd is not None
        return _uts_hostname(self.sshd.pid)

    def etc_file(self, name: str) -> str:
        return (self.dir / "etc" / name).read_text()

    def write_shim(self, name: str, script: str) -> None:
        shim = self.dir / "shims" / name
        shim.write_text(script)
        shim.chmod(0o755)


def _uts_hostname(pid: int) -> str:
    out = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def _make_keys(directory: Path) -> tuple[str, Path]:
    asyncssh = _asyncssh()
    host = asyncssh.generate_private_key("ssh-ed25519")
    host.write_private_key(str(directory / "ssh_host_ed25519_key"))
    os.chmod(directory / "ssh_host_ed25519_key", 0o600)
    client = asyncssh.generate_private_key("ssh-ed25519", comment="dockyard-test")
    client.write_private_key(str(directory / "client_key"))
    os.chmod(directory / "client_key", 0o600)
    (directory / "authorized_keys").write_bytes(client.export_public_key())
    return host.export_public_key().decode().strip(), directory / "client_key"


SSHD_CONFIG = """\
Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
SetEnv PATH={path}
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
"""


def make_target(owner: str, index: int, subnet: str, shims: bool = False, path: str | None = None) -> Target:
    """Blocking: a target (namespace, link, files, sshd) answering on port 22, on ``subnet`` (a
    free /24: the SDK's ``free_test_subnet(SUBNET_BASE, 24)``)."""
    from pyroute2 import IPRoute, NetNS, netns

    directory = Path(tempfile.mkdtemp(prefix="dys-", dir="/tmp"))
    base = subnet.rsplit(".", 1)[0]
    t = Target(owner=owner, index=index, dir=directory, subnet=subnet, address=f"{base}.2", gateway=f"{base}.1",
               netns=f"{owner}-t{index}", veth=f"{owner}t{index}", install_root=str(directory / "r"))
    try:
        netns.create(t.netns)
        fd = os.open(f"/run/netns/{t.netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with IPRoute() as ipr:
                ipr.link("add", ifname=t.veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
                (idx,) = ipr.link_lookup(ifname=t.veth)
                Path(f"/proc/sys/net/ipv6/conf/{t.veth}/disable_ipv6").write_text("1")
                ipr.addr("add", index=idx, address=t.gateway, prefixlen=24)
                ipr.link("set", index=idx, state="up")
        finally:
            os.close(fd)
        with NetNS(t.netns) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            (eth,) = ns.link_lookup(ifname="eth0")
            ns.addr("add", index=eth, address=t.address, prefixlen=24)
            ns.link("set", index=eth, state="up")
        t.host_key_pub, t.client_key = _make_keys(directory)
        (directory / "known_hosts").write_text(f"{t.address} {' '.join(t.host_key_pub.split()[:2])}\n")
        (directory / "etc").mkdir()
        (directory / "etc" / "hostname").write_text(f"target{index}\n")
        (directory / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\ttarget{index}\n")
        (directory / "shims").mkdir()
        (directory / "home").mkdir(mode=0o700)
        only_shims, path = path == "shims", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if shims:
            path = f"{directory / 'shims'}:{path}"
        if only_shims:
            path = str(directory / "shims")
        (directory / "sshd_config").write_text(SSHD_CONFIG.format(address=t.address, dir=directory, path=path))
        log = open(directory / "sshd.log", "ab")  # noqa: SIM115 - sshd's stderr for the test's lifetime
        nsfd = os.open(f"/run/netns/{t.netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            t.sshd = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(directory / "sshd_config")], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True,
                preexec_fn=_enter(nsfd, f"target{index}".encode(), str(directory / "etc" / "hostname").encode(),
                                  str(directory / "etc" / "hosts").encode(), str(directory / "home").encode()))
        finally:
            os.close(nsfd)
            log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((t.address, 22), timeout=1) as s:
                    if s.recv(4) == b"SSH-":
                        break
            except OSError:
                pass
            if t.sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.02)
        return t
    except BaseException:
        remove_target(t)
        raise


def remove_target(t: Target) -> list[str]:
    """Blocking: stop sshd by PID, then what is left in the namespace (reported), the link, the
    namespace and the files. Returns what had to be killed besides sshd's own processes. The
    link, the namespace and the files go even when an earlier step fails (a half-made target
    included)."""
    from pyroute2 import IPRoute, netns

    left: list[str] = []
    try:
        # sshd's per-connection processes end a moment after their client disconnected
        deadline = time.monotonic() + 5
        while True:
            now = t.processes(sessions=True)
            if not any(p.split(" ", 1)[1].startswith("sshd:") for p in now) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if t.sshd is not None and t.sshd.poll() is None:
            t.sshd.send_signal(signal.SIGTERM)
            try:
                t.sshd.wait(10)
            except subprocess.TimeoutExpired:
                t.sshd.kill()
                t.sshd.wait()
        left = t.processes()  # what is left besides sshd's own (exiting) processes
        for line in t.processes(sessions=True):
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        try:
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=t.veth)
                if idx:
                    ipr.link("del", index=idx[0])
        finally:
            if t.netns and os.path.exists(f"/run/netns/{t.netns}"):
                netns.remove(t.netns)
            shutil.rmtree(t.dir, ignore_errors=True)
    return left
