"""The test CA, and the ``netns_hosts`` fixture seen from a third party's project (a child
pytest, the plugin coming in through its ``pytest11`` entry point): hosts made through the
netns provision driver, reached over mutual TLS, removed at teardown without a trace."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import TestCA, netns_hosts_unavailable


# ---------------------------------------------------------------------------------- TestCA
async def _serve_once(tls_files: tuple[bytes, bytes, bytes], tmp_path: Path) -> tuple[asyncio.Server, int]:
    ca, cert, key = tls_files
    (tmp_path / "s-cert.pem").write_bytes(cert)
    (tmp_path / "s-key.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s-cert.pem", tmp_path / "s-key.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.decode())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


def _echo(port: int, certs: Path, client_cert: bool = True) -> bytes:
    import socket

    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"hello\n")
            return s.recv(64)


async def test_the_test_ca_makes_an_engine_and_a_client_that_trust_each_other(tmp_path: Path) -> None:
    ca = TestCA()
    tls = ca.engine_tls(["127.0.0.1", "engine.test"])
    certs = ca.write_client(tmp_path / "client")
    assert oct((certs / "key.pem").stat().st_mode & 0o777) == "0o600"
    server, port = await _serve_once((tls.pem("ca_cert"), tls.pem("cert"), tls.pem("key")), tmp_path)
    try:
        assert await asyncio.to_thread(_echo, port, certs) == b"hello\n"
        try:  # no client certificate: refused (TLS 1.3: after the handshake, so maybe a bare close)
            echoed = await asyncio.to_thread(_echo, port, certs, False)
        except OSError:
            echoed = b""
        assert echoed == b"", "a client without a certificate was served"
        other = TestCA().write_client(tmp_path / "other")  # another CA's client and trust
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(_echo, port, other)
    finally:
        server.close()
        await server.wait_closed()


async def test_an_engine_certificate_names_only_its_addresses(tmp_path: Path) -> None:
    ca = TestCA()
    tls = ca.engine_tls(["10.0.0.7"])  # not 127.0.0.1
    server, port = await _serve_once((tls.pem("ca_cert"), tls.pem("cert"), tls.pem("key")), tmp_path)
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            await asyncio.to_thread(_echo, port, ca.write_client(tmp_path / "client"))
    finally:
        server.close()
        await server.wait_closed()


async def test_a_manager_certificate_serves_and_dials(tmp_path: Path) -> None:
    ca = TestCA()
    manager = ca.write_manager(tmp_path / "manager", ["127.0.0.1"])
    assert oct((manager / "key.pem").stat().st_mode & 0o777) == "0o600"
    files = tuple((manager / f).read_bytes() for f in ("ca.pem", "cert.pem", "key.pem"))
    server, port = await _serve_once(files, tmp_path)  # it serves (serverAuth, SAN 127.0.0.1) ...
    try:
        assert await asyncio.to_thread(_echo, port, ca.write_client(tmp_path / "client")) == b"hello\n"
    finally:
        server.close()
        await server.wait_closed()
    tls = ca.engine_tls(["127.0.0.1"])  # ... and an engine takes it as a client (clientAuth)
    server, port = await _serve_once((tls.pem("ca_cert"), tls.pem("cert"), tls.pem("key")), tmp_path)
    try:
        assert await asyncio.to_thread(_echo, port, manager) == b"hello\n"
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------------- netns_hosts
def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_author.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n"
                                         "asyncio_default_fixture_loop_scope = function\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_netns_hosts_for_a_third_party_project(tmp_path: Path) -> None:
    source = """
        import asyncio
        import shutil

        import pytest

        async def test_two_hosts(netns_hosts, dockyard_owners, no_leaks):
            a, b = await netns_hosts.create(2)
            assert (a.name, b.name) == ("h1", "h2") and a.address != b.address
            for h in (a, b):
                info = await asyncio.to_thread(h.client().get, "/info")
                assert info["Name"] == h.name
            assert netns_hosts.kernel.config.owner in dockyard_owners.tokens
            if shutil.which("docker") and shutil.which("busybox"):
                await asyncio.to_thread(a.bootstrap)
                out = await asyncio.to_thread(a.docker, "run", "--rm", "busybox", "sh", "-c",
                                              f"nc -w 5 {b.address} 2376 </dev/null && echo reached")
                assert out.stdout == "reached\\n"

        async def test_five_at_once_and_one_removed(netns_hosts):
            hosts = await netns_hosts.create(5, prefix="n")
            assert len({h.address for h in hosts}) == 5
            await netns_hosts.remove(hosts[0])
            assert len(netns_hosts.hosts) == 4
        """
    proc = run_pytest(tmp_path, source, "-rs", "--dockyard-leak-check")
    out = proc.stdout + proc.stderr
    reason = netns_hosts_unavailable()
    if reason is not None:
        assert "2 skipped" in out and reason in out, out
        return
    assert proc.returncode == 0 and "2 passed" in out, out
    assert "nothing left behind" in out, out


# ---------------------------------------------------------------------------------- leaks of a host's engine
def _escape(pid: int, name: str) -> list[Path]:
    """Move ``pid`` into cgroup ``name`` at the root of every hierarchy: where a host's engine
    puts a container when the host's cgroup-parent is lost (``/dockyard-<owner>-<id>``), out of
    the host's cgroup, so removing the host does not kill it. Returns the directories made."""
    from dockyard.mounts import read_mounts

    made = []
    for m in read_mounts():
        if m.fstype not in ("cgroup", "cgroup2") or not m.point.startswith("/sys/fs/cgroup"):
            continue
        d = Path(m.point) / name
        d.mkdir(exist_ok=True)
        made.append(d)
        for f in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset takes no process before these
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((Path(m.point) / f).read_text())
        (d / "cgroup.procs").write_text(str(pid))
    return made


async def test_what_a_hosts_engine_leaves_is_seen_by_the_leak_check(netns_hosts, dockyard_owners) -> None:
    """A netns host's engine has an owner token of its own; hosts made through the SDK record
    it, so a container that escaped the host's cgroup and outlived the host (found once as a
    ``sleep 600`` after CI, unseen) is reported: its cgroup, and the process in it."""
    import shutil

    from dockyard_plugin_sdk.testing import owner_of_data_root, snapshot_host, wait_for, wait_for_no_leaks

    if not shutil.which("docker") or not shutil.which("busybox"):
        pytest.skip("needs the docker CLI and busybox (the offline image)")
    before = await asyncio.to_thread(snapshot_host)
    [h] = await netns_hosts.create(1, prefix="leak")
    token = owner_of_data_root(Path(h.host.extra["root"]) / "data")  # derived here, not taken from the driver
    assert token in dockyard_owners.tokens
    await asyncio.to_thread(h.bootstrap)
    cid = (await asyncio.to_thread(h.docker, "run", "-d", "busybox", "sleep", "600")).stdout.strip()
    pid = int((await asyncio.to_thread(h.docker, "inspect", "-f", "{{.State.Pid}}", cid)).stdout)
    made = await asyncio.to_thread(_escape, pid, f"dockyard-{token}-{cid}")
    try:
        await netns_hosts.remove(h)
        assert os.path.exists(f"/proc/{pid}"), "the escaped container died with its host"
        leaks = await asyncio.to_thread(wait_for_no_leaks, before, 0.2, snapshot_host, dockyard_owners.owns)
        assert {str(d) for d in made} <= set(leaks.items["cgroups"]), leaks.describe()
        assert f"{pid} sleep 600" in leaks.describe()
    finally:
        os.kill(pid, 9)
        await asyncio.to_thread(wait_for, lambda: _gone(pid), 10, "the escaped container's end")
        for d in made:
            await asyncio.to_thread(wait_for, lambda d=d: _rmdir(d), 10, f"{d} removed")


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts: it holds no cgroup)."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
