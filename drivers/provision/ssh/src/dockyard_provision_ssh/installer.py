"""The SSH engine installer: :class:`dockyard.specs.provision.EngineInstaller` over asyncssh.

One install, one SSH connection (host key pinned: :func:`connect`), these steps, each reported
as a progress line:

1. the wheelhouse (:mod:`.wheelhouse`: this machine's installed distributions, cached by
   content) is made while the connection is being set up;
2. the agent and the supervisor (``remote/``, stdlib scripts) are uploaded by SFTP to
   ``<root>/<name>/lib``; the agent checks the target: CPython of the wheelhouse's version,
   the Debian packages the engine needs (``dpkg -s``; missing ones installed with apt-get when
   a package mirror answers, otherwise an :class:`~dockyard.errors.Unavailable` listing them);
3. the wheelhouse is uploaded (SFTP) unless the target has that key already, and the venv made
   from it offline (``python3 -m venv --without-pip``; pip run from its own wheel with
   ``--no-index --find-links``) unless it was made from that key already;
4. the TLS material (key 0600), ``daemon.json``, the engine's command line, the host name and
   the supervisor unit are written: where systemd is PID 1, the ``systemd`` supervisor backend's
   daemon unit, rendered here through the kernel (:meth:`SshEngineInstaller.unit_files`);
   elsewhere the agent's background supervisor;
5. the engine is (re)started and waited for on its unix socket; then this machine checks the
   TCP listener at ``engine_url`` (:func:`verify_engine`).

A second install with the same key uploads nothing and installs nothing: it rewrites the
configuration and restarts the engine (new flags, new certificates).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
import shlex
import ssl
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.specs.provision import EngineInstall, EngineInstaller, EngineTLS, HostState, SshTarget
from dockyard.specs.supervisor import DaemonUnit, Supervisors

if TYPE_CHECKING:
    import asyncssh

    from dockyard_provision_ssh import wheelhouse

log = logging.getLogger("dockyard.provision.ssh")

DEFAULT_ROOT = "/opt/dockyard"
#: The Debian packages an engine needs on its machine: the interpreter, an OCI runtime, the
#: container monitor, the firewall and link tools its network driver calls, and the static
#: busybox the offline ``busybox`` image is made from. Alternatives: ``crun|runc``.
PACKAGES: tuple[tuple[str, ...], ...] = (("python3",), ("crun", "runc"), ("conmon",), ("nftables",),
                                         ("iproute2",), ("busybox-static",))
CONNECT_TIMEOUT = 15.0
START_TIMEOUT = 60.0
#: Longest install home: the engine's exec root is ``<home>/run`` and its deepest unix socket
#: (``arch/linux/a/<12>/attach``) must fit in sun_path's 108 bytes.
MAX_HOME = 60


def _asyncssh() -> Any:
    """asyncssh, imported on first use (about 130 ms: a kernel that never installs an engine
    does not pay it) without its DSA deprecation warnings (cryptography >= 43)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh

    return asyncssh


def _resource(name: str) -> bytes:
    return importlib.resources.files("dockyard_provision_ssh.remote").joinpath(name).read_bytes()


def home_of(target: SshTarget, name: str) -> str:
    return str(PurePosixPath(target.install_root or DEFAULT_ROOT) / name)


class SshError(Unavailable):
    """The target could not be reached or refused us (address, key, host key)."""


async def connect(target: SshTarget, timeout: float = CONNECT_TIMEOUT) -> asyncssh.SSHClientConnection:
    """An SSH connection to ``target``. Its host key must be in ``target.known_hosts`` (an
    OpenSSH known_hosts file): an unknown or changed key is refused, never accepted. No
    ssh-agent, no ``~/.ssh/config``, no password: only ``target.key_path``."""
    if not target.known_hosts:
        raise InvalidArgument(f"no known_hosts file pins the host key of {target.address}: an SSH "
                              "installer never accepts an unknown host key")
    if not target.key_path:
        raise InvalidArgument(f"no SSH key to log in to {target.user}@{target.address} with")
    asyncssh = _asyncssh()
    try:
        return await asyncssh.connect(
            target.address, port=target.port, username=target.user, client_keys=[target.key_path],
            known_hosts=target.known_hosts, agent_path=None, config=[], password=None,
            kbdint_auth=False, connect_timeout=timeout, login_timeout=timeout, keepalive_interval=15)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SshError(f"the host key of {target.address}:{target.port} is not the one pinned in "
                       f"{target.known_hosts} ({exc.reason}): refusing to connect") from exc
    except asyncssh.PermissionDenied as exc:
        raise SshError(f"{target.user}@{target.address}:{target.port} refused the key {target.key_path} "
                       f"(permission denied)") from exc
    except asyncssh.Error as exc:
        raise SshError(f"ssh to {target.address}:{target.port} failed: {exc.reason}") from exc
    except (OSError, TimeoutError) as exc:
        what = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SshError(f"cannot reach {target.address}:{target.port} over SSH: {what}") from exc


class NoPython(Unavailable):
    """The target's sessions find no ``python3``: the agent cannot run there."""


class Session:
    """One connection to a target and the agent commands run over it."""

    def __init__(self, conn: asyncssh.SSHClientConnection, target: SshTarget, home: str) -> None:
        self.conn, self.target, self.home = conn, target, home

    @property
    def agent(self) -> str:
        return f"{self.home}/lib/agent.py"

    async def call(self, command: str, args: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
        """Run the agent's ``command`` with ``args``; its JSON answer. An answer with ``error``
        raises :class:`Unavailable` naming the target."""
        cmd = f"exec python3 {shlex.quote(self.agent)} {command}"
        async def run() -> Any:
            proc = await self.conn.create_process(cmd)
            try:
                proc.stdin.write(json.dumps(args))
                proc.stdin.write_eof()
            except (BrokenPipeError, ConnectionError):  # it ended first (no python3): its status says why
                pass
            return await proc.wait(check=False)

        try:
            res = await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            raise Unavailable(f"{self.target.address}: the agent's {command} did not finish within {timeout:g}s") \
                from None
        stdout, stderr = str(res.stdout or ""), str(res.stderr or "")
        if res.exit_status == 127:
            raise NoPython(f"{self.target.address} has no python3 (Debian package python3): {stderr.strip()}")
        try:
            answer = json.loads(stdout)
        except ValueError:
            raise Unavailable(f"{self.target.address}: the agent's {command} failed (status {res.exit_status}): "
                              f"{(stderr or stdout).strip()[-2000:]}") from None
        if answer.get("error"):
            raise Unavailable(f"{self.target.address}: {answer['error']}")
        return answer

    async def upload_scripts(self, sftp: asyncssh.SFTPClient) -> None:
        await sftp.makedirs(f"{self.home}/lib", exist_ok=True)
        for name in ("agent.py", "supervise.py"):
            async with sftp.open(f"{self.home}/lib/{name}", "wb") as fh:
                await fh.write(_resource(name))

    async def upload_wheelhouse(self, sftp: asyncssh.SFTPClient, house: wheelhouse.Wheelhouse) -> bool:
        """Upload the wheelhouse unless the target has it (its ``.complete`` marker); True when
        something was uploaded."""
        dest = f"{PurePosixPath(self.home).parent}/.wheels/{house.key}"
        if await sftp.exists(f"{dest}/.complete"):
            return False
        partial = f"{dest}.partial"
        if await sftp.exists(partial):
            await sftp.rmtree(partial)
        await sftp.makedirs(partial, exist_ok=True)
        await sftp.put([str(house.path / w) for w in house.wheels], partial, max_requests=128)
        if await sftp.exists(dest):
            await sftp.rmtree(dest)
        await sftp.rename(partial, dest)
        async with sftp.open(f"{dest}/.complete", "w") as fh:
            await fh.write(house.key + "\n")
        return True


def _pem_text(tls: EngineTLS) -> dict[str, str]:
    try:
        return {part: tls.pem(part).decode() for part in ("ca_cert", "cert", "key")}
    except OSError as exc:
        raise InvalidArgument(f"cannot read the engine's TLS material: {exc}") from exc


# ---------------------------------------------------------------------------------- verifying
def verify_engine(url: str, tls: EngineTLS, timeout: float = 30.0) -> None:
    """Check the engine's TCP listener at ``url`` from this machine: the TLS handshake succeeds
    with a certificate chained to ``tls.ca_cert`` and valid for the URL's host, that certificate
    is exactly ``tls.cert`` (the one just installed, not an older engine's), and a client
    without a certificate gets no answer to ``GET /_ping`` (client certificates are required).

    ``EngineInstall`` carries the engine's own material, not a client certificate, so a
    mutual-TLS ``/_ping`` is not possible here; ``/_ping`` was answered on the engine's unix
    socket on the target just before. Blocking: run it in a thread."""
    import socket

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    parts = urlsplit(url.replace("tcp://", "https://", 1))
    host, port = parts.hostname or "", parts.port or 2376
    want = x509.load_pem_x509_certificate(tls.pem("cert")).public_bytes(Encoding.DER)
    ctx = ssl.create_default_context(cadata=tls.pem("ca_cert").decode())
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=host) as conn:
                got = conn.getpeercert(binary_form=True)
                try:
                    conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n")
                    answer = conn.recv(64)
                except (OSError, ssl.SSLError):
                    answer = b""
            break
        except ssl.SSLCertVerificationError as exc:
            raise Unavailable(f"the engine at {url} presents a certificate that does not verify: "
                              f"{exc.verify_message}") from exc
        except (OSError, ssl.SSLError) as exc:
            if time.monotonic() > deadline:
                raise Unavailable(f"the engine at {url} cannot be reached from this machine: {exc}") from exc
            time.sleep(0.1)
    if got != want:
        raise Unavailable(f"the engine at {url} presents another certificate than the one installed "
                          "(is another engine listening there?)")
    if answer.startswith(b"HTTP/"):
        raise Unavailable(f"the engine at {url} answered a client without a certificate: it does not "
                          "verify clients (--tlsverify)")


# ---------------------------------------------------------------------------------- the installer
class SshEngineInstaller(EngineInstaller):
    """Installs and runs dockyardd on a Debian machine reached over SSH (see the module doc).

    ``cache_dir`` holds the wheelhouses (by content key); ``roots`` are the distributions the
    target's venv gets (default: ``dockyard``, the default set, when installed here).
    ``supervisors`` are the kernel's supervisor backends (:meth:`dockyard.kernel.Kernel.supervisors`):
    on a target whose PID 1 is systemd the engine's unit is the ``systemd`` backend's daemon
    unit, rendered here and written by the agent (the agent has no unit of its own).
    """

    def __init__(self, cache_dir: Path, roots: Sequence[str] | None = None,
                 packages: Sequence[Sequence[str]] = PACKAGES, supervisors: Supervisors | None = None) -> None:
        self.supervisors = supervisors
        self.cache_dir = Path(cache_dir)
        self.roots = tuple(roots) if roots else None
        self.packages = [list(p) for p in packages]
        self._build_lock = asyncio.Lock()

    async def wheelhouse(self) -> tuple[wheelhouse.Wheelhouse, bool]:
        # imported at the first install: every daemon holds this installer (dockyard_provides)
        # and most never install an engine (importlib.metadata's scan, zipfile: #21 item 10)
        from dockyard_provision_ssh import wheelhouse as house

        async with self._build_lock:
            return await asyncio.to_thread(house.build, self.cache_dir, self.roots)

    async def install(self, target: SshTarget, spec: EngineInstall,
                      progress: Callable[[str], None] | None = None) -> None:
        t0 = time.monotonic()

        def say(line: str) -> None:
            line = f"[{time.monotonic() - t0:5.2f}s] {line}"
            log.info("%s: %s", spec.name, line)
            if progress is not None:
                progress(line)

        home = home_of(target, spec.name)
        if len(home) > MAX_HOME:
            raise InvalidArgument(f"the install directory {home} is longer than {MAX_HOME} characters: the "
                                  "engine's unix sockets below it would not fit in sun_path")
        tls = _pem_text(spec.tls)
        say(f"connecting to {target.user}@{target.address}:{target.port} (host key pinned in {target.known_hosts})")
        conn_task = asyncio.ensure_future(connect(target))
        try:
            house, built = await self.wheelhouse()
        except BaseException:
            conn_task.cancel()
            await asyncio.gather(conn_task, return_exceptions=True)
            raise
        say(f"wheelhouse {house.key}: {len(house.wheels)} wheels, {house.size / 1e6:.1f} MB "
            f"({'built' if built else 'cached'})")
        conn = await conn_task
        try:
            await self._install(conn, target, spec, home, house, tls, say)
        except _asyncssh().Error as exc:
            raise Unavailable(f"the SSH connection to {target.address} failed during the install: "
                              f"{exc.reason}") from exc
        except OSError as exc:
            raise Unavailable(f"the SSH connection to {target.address} failed during the install: {exc}") from exc
        await asyncio.to_thread(verify_engine, spec.engine_url, spec.tls)
        say(f"{spec.engine_url} serves mutual TLS with the installed certificate: done")

    async def _install(self, conn: asyncssh.SSHClientConnection, target: SshTarget, spec: EngineInstall,
                       home: str, house: wheelhouse.Wheelhouse, tls: dict[str, str],
                       say: Callable[[str], None]) -> None:
        async with conn:
            session = Session(conn, target, home)
            async with conn.start_sftp_client() as sftp:
                await session.upload_scripts(sftp)
                checked = await session.call("check", {"packages": self.packages, "apt": True})
                say(f"target: Python {checked['python']} on {checked['machine']}, supervisor: {checked['supervisor']}"
                    + (f"; apt: {checked['apt']}" if checked.get("apt") else ""))
                if checked["missing"]:
                    names = " ".join(p.split("|")[0] for p in checked["missing"])
                    raise Unavailable(
                        f"{target.address} lacks the Debian packages the engine needs: "
                        f"{', '.join(checked['missing'])}; they were not installed: {checked['apt'] or 'apt not tried'}. "
                        f"Install them on the target (apt-get install {names}) and run the install again")
                if house.python and checked["python"] != house.python:
                    raise Unavailable(
                        f"{target.address} runs Python {checked['python']}, but this machine's wheels are built "
                        f"for CPython {house.python} (the target's python3 must be the same minor version)")
                t1 = time.monotonic()
                if await session.upload_wheelhouse(sftp, house):
                    say(f"uploaded the wheelhouse ({house.size / 1e6:.1f} MB) in {time.monotonic() - t1:.2f}s")
                else:
                    say("the target has this wheelhouse already")
            venv = await session.call("venv", {"home": home, "key": house.key, "pip_wheel": house.pip_wheel,
                                               "roots": list(house.roots)})
            say(f"venv {venv['venv']}: installed offline in {venv['seconds']}s" if venv["installed"]
                else f"venv {venv['venv']} is there already")
            units = self.unit_files(home, spec, house.key) if checked["supervisor"] == "systemd" else []
            configured = await session.call("configure", {
                "home": home, "name": spec.name, "key": house.key, "hostname": spec.name, "tls": tls, "listen": list(spec.listen),
                "flags": list(spec.engine_flags), "env": dict(spec.engine_env), "unit_files": units})
            say(f"wrote the TLS material, daemon.json and the host name; engine under {configured['supervisor']}")
            await session.call("restart", {"home": home, "name": spec.name, "timeout": START_TIMEOUT},
                               timeout=START_TIMEOUT + 60)
            say("the engine answers on its socket")

    def unit_files(self, home: str, spec: EngineInstall, key: str) -> list[dict[str, str]]:
        """The engine's systemd unit (``dockyard-<name>.service``), from the kernel's ``systemd``
        supervisor backend: ``Type=notify``, ``KillMode=process`` (stopping the engine never
        kills its containers), restarted when it dies, its output appended to ``log/dockyardd.log``
        (what :meth:`engine_state` shows). Its command line is the one the agent records in
        ``engine.json``, with the listeners and PID file of ``daemon.json`` as flags."""
        if self.supervisors is None:
            raise Unavailable(f"{spec.name}: the target runs systemd, but this installer was given no supervisor "
                              "backends (dockyard.kernel.Kernel.supervisors)")
        try:
            systemd = self.supervisors.get("systemd")
        except DockyardError as exc:
            raise Unavailable(f"{spec.name}: the target runs systemd and its unit comes from a supervisor backend: "
                              f"{exc}") from exc
        venv = f"{PurePosixPath(home).parent}/.venvs/{key}"
        unit = DaemonUnit(
            name=f"dockyard-{spec.name}", description=f"dockyard engine {spec.name} (installed by dockyard-provision-ssh)",
            dockyardd=(f"{venv}/bin/dockyardd", "--config-file", f"{home}/daemon.json", *spec.engine_flags),
            hosts=(*spec.listen, f"unix://{home}/run/dockyard.sock"), pidfile=f"{home}/run/dockyardd.pid",
            environment=tuple(spec.engine_env), socket_activation=False, log_file=f"{home}/log/dockyardd.log")
        return [{"path": f.path, "text": f.text} for f in systemd.daemon_files(unit)]

    async def _call(self, target: SshTarget, name: str, command: str, limit: float = 120,
                    **args: Any) -> dict[str, Any]:
        home = home_of(target, name)
        conn = await connect(target)
        async with conn:
            session = Session(conn, target, home)
            if command in ("state", "uninstall"):
                # nothing installed (never, or removed): nothing to report or remove
                async with conn.start_sftp_client() as sftp:
                    if not await sftp.exists(home):
                        return {"state": "none", "problems": []}
                    if command == "uninstall":  # this version's agent removes what it installs
                        await session.upload_scripts(sftp)
                    elif not await sftp.exists(session.agent):
                        return {"state": "error", "reason": f"{home} on {target.address} holds no agent: "
                                                            "a broken installation"}
            try:
                return await session.call(command, {"home": home, "name": name, **args}, limit)
            except NoPython:
                if command != "uninstall":
                    raise
            # the agent never ran there, so no engine did: what the install uploaded goes by SFTP
            async with conn.start_sftp_client() as sftp:
                await sftp.rmtree(home)
                root = str(PurePosixPath(home).parent)
                if not [e for e in await sftp.listdir(root) if e not in (".", "..", ".wheels", ".venvs")]:
                    for shared in (".wheels", ".venvs"):
                        if await sftp.exists(f"{root}/{shared}"):
                            await sftp.rmtree(f"{root}/{shared}")
                    await sftp.rmdir(root)
            return {"problems": []}

    async def start_engine(self, target: SshTarget, name: str) -> None:
        await self._call(target, name, "start", START_TIMEOUT + 60, timeout=START_TIMEOUT)

    async def stop_engine(self, target: SshTarget, name: str) -> None:
        await self._call(target, name, "stop")

    async def engine_state(self, target: SshTarget, name: str) -> HostState:
        try:
            answer = await self._call(target, name, "state", 60)
        except SshError as exc:
            return HostState("error", str(exc))
        return HostState(answer["state"], answer.get("reason", ""))

    async def update_tls(self, target: SshTarget, name: str, tls: EngineTLS) -> None:
        """Replace the engine's TLS material; it serves it from its next start."""
        await self._call(target, name, "tls", tls=_pem_text(tls))

    async def uninstall(self, target: SshTarget, name: str) -> None:
        """Stop the engine, kill what it left running (containers, their monitors), remove its
        cgroups, mounts, links and nft tables (named with the engine's owner token, which the
        agent derives from the data root as the engine does), its files, its unit and the host
        name it set. Nothing installed: nothing happens."""
        answer = await self._call(target, name, "uninstall", 180)
        if answer.get("problems"):
            raise Unavailable(f"{target.address}: engine {name} uninstalled, but some of it is left: "
                              f"{'; '.join(answer['problems'])}")


def engine_owner(target: SshTarget, name: str) -> str:
    """The owner token of the engine ``name`` on ``target`` (what its kernel objects carry).
    The engine derives it from the resolved data root; the install root is used as given (a
    symlinked root gives another token)."""
    from dockyard.config import Config

    return Config(values={"data-root": f"{home_of(target, name)}/data"}).owner


__all__ = ["DEFAULT_ROOT", "PACKAGES", "SshEngineInstaller", "SshError", "connect", "engine_owner",
           "verify_engine"]

