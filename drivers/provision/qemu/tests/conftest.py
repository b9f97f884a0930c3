"""Fixtures of the qemu driver's tests.

Tests marked ``vm`` boot virtual machines: they need root (or an image already in the cache),
qemu and the image build's tools, and they are slow under TCG (~15 s per boot, more with the
engine's install). To keep a CI run to a few boots, they share VMs:

* the image is built once per machine into the machine-wide cache (``/var/cache/dockyard/qemu``,
  or ``$DOCKYARD_QEMU_CACHE``) and reused by every later run;
* one driver per session (:func:`qemu_session`) and one running host that the VM tests and the
  provision kit's cases share (:meth:`QemuSession.shared_host`: made when first asked for, made
  again only after a case removed it); the kit's destructive cases run last (see
  :func:`pytest_collection_modifyitems`).

The engine is installed by the real ``EngineInstaller`` when an installed plugin provides one
(``dockyard-provision-ssh``). Until then a double stands in (:class:`FakeInstaller`): it logs in
over SSH with the host's key and pinned host key, as the real one must, and runs a tiny mutual
TLS server in the guest answering ``/_ping`` and ``/info`` (python3 is in the image); the tests
that need a real engine (``docker info``, ``docker run``) skip without the real one.
``DOCKYARD_QEMU_TEST_INSTALLER=stand-in`` uses the double even where the real one is installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.model import Host
from dockyard.specs._base import DriverContext
from dockyard.specs.provision import EngineInstall, EngineInstaller, HostRequest, HostState, SshTarget
from dockyard_plugin_sdk.conformance.network import random_owner
from dockyard_plugin_sdk.testing import Owners, TestCA
from dockyard_provision_qemu import image, vm
from dockyard_provision_qemu.driver import QemuProvisioner

CACHE = Path(os.environ.get("DOCKYARD_QEMU_CACHE") or image.DEFAULT_CACHE)
#: The kit's cases that remove the shared host or make more VMs: run after every other VM test.
LAST = ("test_hosts_are_independent", "test_update_tls_rotates_the_engine_certificate",
        "test_remove_a_stopped_host", "test_remove_leaves_no_host", "test_remove_leaves_nothing_behind")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots qemu virtual machines (slow: the Debian image is built once per "
                                       "machine, each boot takes ~15 s under TCG)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The VM tests share one running host: cases that remove it (or stop it, or make more
    VMs) go after the rest, in the order of :data:`LAST`, so it is made as few times as possible."""
    here = Path(__file__).parent
    mine = [i for i in items if Path(str(i.path)).is_relative_to(here) and i.get_closest_marker("vm")]
    last = sorted((i for i in mine if i.originalname in LAST), key=lambda i: LAST.index(i.originalname))
    if not last:
        return
    ids = {id(i) for i in last}
    rest = [i for i in items if id(i) not in ids]
    end = max(rest.index(i) for i in mine if id(i) not in ids) + 1 if len(last) < len(mine) else 0
    items[:] = rest[:end] + last + rest[end:]


def vm_unavailable() -> str | None:
    """Why VMs cannot be booted here, or None."""
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                      ("ssh-keygen", "openssh-client"), ("ssh", "openssh-client")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install {pkg})"
    if image.cached(CACHE, image.Recipe()) is None:
        if os.geteuid() != 0:
            return f"the image is not in {CACHE} and building it needs root"
        if image.missing_tools():
            return f"building the image needs {', '.join(image.missing_tools())}"
    return None


# ---------------------------------------------------------------------------------- the double
FAKE_ENGINE = r'''
import http.server, json, os, platform, ssl, socket
d = "/opt/fake-engine"
def os_name():
    for line in open("/etc/os-release"):
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/_ping":
            body, kind = b"OK", "text/plain"
        elif self.path == "/info":
            body = json.dumps({"Name": socket.gethostname(), "KernelVersion": platform.release(),
                               "OperatingSystem": os_name(), "ServerVersion": "fake"}).encode()
            kind = "application/json"
        else:
            self.send_error(404); return
        self.send_response(200); self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
ctx.load_verify_locations(f"{d}/ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 2376), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
'''
FAKE_UNIT = """[Unit]
Description=stand-in engine of the qemu driver's tests
After=network.target
[Service]
ExecStart=/usr/bin/python3 /opt/fake-engine/engine.py
Restart=on-failure
[Install]
WantedBy=multi-user.target
"""


def ssh(target: SshTarget, command: str, stdin: bytes = b"", timeout: float = 60) -> str:
    """Run ``command`` on ``target`` as the real installer must log in: its key, the pinned
    host key (``StrictHostKeyChecking=yes``), no prompt."""
    res = subprocess.run(["ssh", "-i", target.key_path, "-p", str(target.port), "-o", "BatchMode=yes",
                          "-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                          "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"{target.user}@{target.address}",
                          command], input=stdin, capture_output=True, timeout=timeout)
    if res.returncode != 0:
        raise OSError(f"ssh {command!r} exited {res.returncode}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode(errors="replace")


class FakeInstaller(EngineInstaller):
    """A stand-in for dockyard-provision-ssh's installer (see the module doc). ``calls`` records
    ``(method, target, name)``; ``seen`` what the first login found in the guest."""

    def __init__(self, ca: TestCA, workdir: Path) -> None:
        self.ca = ca
        self.calls: list[tuple[str, SshTarget, str]] = []
        self.seen: dict[str, str] = {}
        self.client = Path(tempfile.mkdtemp(prefix="client-", dir=workdir))
        ca.write_client(self.client)

    async def install(self, target, spec: EngineInstall, progress=None) -> None:
        self.calls.append(("install", target, spec.name))
        assert spec.listen == ("tcp://0.0.0.0:2376",), spec.listen
        first = await asyncio.to_thread(ssh, target, "uname -r; . /etc/os-release; echo $PRETTY_NAME; hostname")
        self.seen.update(zip(("kernel", "os", "hostname"), first.split("\n"), strict=False))
        d = "/opt/fake-engine"
        await asyncio.to_thread(ssh, target, f"mkdir -p {d} && cat > {d}/engine.py", FAKE_ENGINE.encode())
        for name, part in (("ca.pem", "ca_cert"), ("cert.pem", "cert"), ("key.pem", "key")):
            await asyncio.to_thread(ssh, target, f"umask 077; cat > {d}/{name}", spec.tls.pem(part))
        await asyncio.to_thread(ssh, target, "cat > /etc/systemd/system/fake-engine.service", FAKE_UNIT.encode())
        await asyncio.to_thread(ssh, target, "systemctl daemon-reload && systemctl enable -q fake-engine && "
                                             "systemctl restart fake-engine")
        if progress:
            progress("stand-in engine started")
        await self._wait_ping(spec.engine_url)

    async def _wait_ping(self, url: str) -> None:
        from dockyard_plugin_sdk.testing import async_wait_for

        def ping() -> bool:
            try:
                return https_get(url, "/_ping", self.client) == (200, b"OK")
            except OSError:
                return False

        await async_wait_for(lambda: asyncio.to_thread(ping), 60, f"the stand-in engine at {url}")

    async def start_engine(self, target, name) -> None:
        self.calls.append(("start_engine", target, name))
        await asyncio.to_thread(ssh, target, "systemctl start fake-engine")

    async def stop_engine(self, target, name) -> None:
        self.calls.append(("stop_engine", target, name))
        await asyncio.to_thread(ssh, target, "systemctl stop fake-engine")

    async def engine_state(self, target, name) -> HostState:
        self.calls.append(("engine_state", target, name))
        try:
            out = await asyncio.to_thread(ssh, target, "systemctl is-active fake-engine || true")
        except OSError as exc:
            return HostState("error", str(exc))
        return HostState("running" if out.strip() == "active" else "stopped", out.strip())

    async def uninstall(self, target, name) -> None:
        self.calls.append(("uninstall", target, name))


def https_get(url: str, path: str, certs: Path, timeout: float = 30) -> tuple[int, bytes]:
    """GET over mutual TLS from ``tcp://127.0.0.1:PORT`` with the client of ``certs``."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://", 1))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------- drivers
def real_installer(root: Path) -> EngineInstaller | None:
    """The installer an installed plugin provides (dockyard-provision-ssh), as a kernel on
    ``root`` hands it to drivers (it keeps its wheelhouse below ``root``); None when none does."""
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    kernel = Kernel.build(Config(values={"data-root": str(root / "d"), "exec-root": str(root / "r")}), environ={})
    return kernel.provided().get(EngineInstaller)


def make_context(root: Path, owner: str, installer: EngineInstaller | None, **options: str) -> DriverContext:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(parents=True, exist_ok=True)
    options.setdefault("image-cache", str(CACHE))
    return DriverContext(data_dir=root / "data", run_dir=root / "run", owner=owner, options=options,
                         provided={EngineInstaller: installer} if installer is not None else {})


def qemu_processes(owner: str) -> list[tuple[int, str]]:
    return vm.find_processes(f"{owner}q-")


class QemuSession:
    """One driver (and its CA, its installer) for the session's VM tests, and the running host
    they share."""

    def __init__(self, driver: QemuProvisioner, ca: TestCA, installer: EngineInstaller, real: bool,
                 workdir: Path) -> None:
        self.driver, self.ca, self.installer, self.real = driver, ca, installer, real
        self._host: Host | None = None
        self.creates: list[float] = []  # seconds each create of a shared host took
        self.warnings: list[str] = []  # what the driver logged at WARNING and above
        self.client = workdir / "client"  # ca.pem, cert.pem, key.pem of a client the engines accept
        ca.write_client(self.client)

    async def provision(self, name: str, **options: str) -> Host:
        host = await self.driver.prepare(HostRequest(name=name, options=options, labels={"conformance": "yes"}))
        try:
            return await self.driver.create(host, self.ca.engine_tls(host.addresses), [])
        except BaseException:
            await self.driver.remove(host)
            raise

    async def shared_host(self) -> Host:
        """The running host the tests share; made (again) when there is none."""
        if self._host is not None and (await self.driver.state(self._host)).state != "none":
            return self._host
        t0 = time.monotonic()
        self._host = await self.provision("dyq" + os.urandom(3).hex())
        self.creates.append(time.monotonic() - t0)
        return self._host


@pytest.fixture(scope="session")
def vm_reason() -> str | None:
    return vm_unavailable()


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def qemu_session(vm_reason, dockyard_owners: Owners) -> AsyncIterator[QemuSession]:
    """The session's driver (random owner, private directories, the machine-wide image cache).
    At teardown every host it still has is removed and no qemu process of its owner may be left."""
    if vm_reason:
        pytest.skip(vm_reason)
    ca = TestCA()
    # DOCKYARD_QEMU_TEST_INSTALLER=stand-in: the double even where dockyard-provision-ssh is installed
    root = Path(tempfile.mkdtemp(prefix="dyq-", dir="/tmp"))
    real = None if os.environ.get("DOCKYARD_QEMU_TEST_INSTALLER") == "stand-in" else \
        await asyncio.to_thread(real_installer, root / "kernel")
    installer = real or FakeInstaller(ca, root)
    owner = random_owner("dyq")
    dockyard_owners.record(owner, root)
    drv = QemuProvisioner(make_context(root, owner, installer))
    await drv.setup()
    # build (or find) the image before any test's clock starts
    await image.ensure(CACHE, drv.recipe)
    session = QemuSession(drv, ca, installer, real is not None, root)
    handler = _Warnings()
    handler.messages = session.warnings
    logging.getLogger("dockyard.provision.qemu").addHandler(handler)
    try:
        yield session
    finally:
        logging.getLogger("dockyard.provision.qemu").removeHandler(handler)
        for rec in await asyncio.to_thread(drv._records):
            await drv.remove(drv._host(rec))
        await drv.close()
        left = qemu_processes(owner)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"qemu processes left: {left}"


@pytest.fixture
def make_driver(tmp_path: Path) -> Callable[..., QemuProvisioner]:
    """``make(installer=None, **options)``: a driver on private directories (not set up) with a
    random owner; no VM is booted by making one."""
    def make(installer: EngineInstaller | None = None, **options: str) -> QemuProvisioner:
        root = Path(tempfile.mkdtemp(prefix="dyq-", dir=tmp_path))
        return QemuProvisioner(make_context(root, random_owner("dyq"), installer, **options))

    return make


def leftovers(rec: dict) -> list[str]:
    """What is left of a removed host whose record was ``rec``: its qemu process, directories
    (overlay, keys, QMP socket), record file or ports (checked as qemu binds them)."""
    left = [f"qemu process {pid} ({name})" for pid, name in vm.find_processes(rec["qemu_name"])
            if name == rec["qemu_name"]]
    left += [f"directory {d}" for d in (rec["dir"], rec["run"]) if Path(d).exists()]
    for port in (rec["ssh_port"], rec["engine_port"]):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
            except OSError as exc:
                left.append(f"port {port}: {exc}")
    return left


@pytest_asyncio.fixture(loop_scope="session")
async def removed_hosts_leave_nothing(qemu_session: QemuSession) -> AsyncIterator[None]:
    """For the VM tests (``usefixtures``): each host the session's driver had before the test and
    no longer has after it left no qemu process, directory (overlay, keys, sockets) or port."""
    session = qemu_session
    before = {r.id: dataclasses.asdict(r) for r in await asyncio.to_thread(session.driver._records)}
    yield
    after = {r.id for r in await asyncio.to_thread(session.driver._records)}
    for host_id, rec in before.items():
        if host_id not in after:
            left = await asyncio.to_thread(leftovers, rec)
            assert not left, f"host {rec['name']} was removed but left: {left}"


@pytest.fixture
def guest() -> Callable[[Host, str], str]:
    """``run(host, command)``: ``command`` in the host's VM over SSH, logging in with what
    ``Host.extra`` names (key, port, pinned host key), as the installer does."""
    def run(host: Host, command: str) -> str:
        x = host.extra
        return ssh(SshTarget(address=x["ssh_hostname"], port=x["ssh_port"], user=x["ssh_user"],
                             key_path=x["ssh_key_path"], known_hosts=x["known_hosts"]), command)

    return run


@pytest.fixture
def fake_installer(tmp_path: Path) -> Callable[[TestCA], FakeInstaller]:
    """``make(ca)``: an installer double (its client certificate under ``tmp_path``)."""
    return lambda ca: FakeInstaller(ca, tmp_path)


@pytest.fixture(name="qemu_processes")
def _qemu_processes() -> Callable[[str], list[tuple[int, str]]]:
    """``find(owner)``: qemu processes of the driver with that owner (pid, -name)."""
    return qemu_processes
