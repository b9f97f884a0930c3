"""What only the qemu driver does, on real VMs: the guest is Debian 12 on its own kernel, its
engine is reached through a forward on 127.0.0.1 with mutual TLS, the host key is pinned from
the first connection, the guest reaches no address, TCG says so, and a VM interrupted while it
boots is removed without a trace.

Most cases share the session's running host (conftest.py); each boot costs ~15 s under TCG.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.specs.provision import HostRequest
from dockyard_plugin_sdk.testing import async_wait_for
from dockyard_provision_qemu import vm

pytestmark = [pytest.mark.vm, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.usefixtures("removed_hosts_leave_nothing"), pytest.mark.timeout(900)]


def needs_real_installer(session) -> None:
    if not session.real:
        pytest.skip("a real engine needs dockyard-provision-ssh's EngineInstaller (a stand-in installed this one)")


def docker(url: str, certs: Path, *args: str) -> str:
    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(certs / "docker-config")
    res = subprocess.run([cli, "-H", url, "--tlsverify", "--tlscacert", str(certs / "ca.pem"), "--tlscert",
                          str(certs / "cert.pem"), "--tlskey", str(certs / "key.pem"), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, f"docker {' '.join(args)}: {res.stderr}"
    return res.stdout


async def test_the_guest_is_debian_12_on_its_own_kernel(qemu_session, guest) -> None:
    host = await qemu_session.shared_host()
    out = await asyncio.to_thread(guest, host, "uname -r; . /etc/os-release; echo $PRETTY_NAME; hostname; "
                                               "readlink /proc/1/exe")
    kernel, pretty, hostname, init = out.splitlines()
    assert re.fullmatch(r"6\.1\.0-\d+-cloud-amd64", kernel), kernel
    assert kernel != os.uname().release, "the guest runs this machine's kernel?"
    assert pretty == "Debian GNU/Linux 12 (bookworm)"
    assert hostname == host.name
    assert init.endswith("/systemd")


async def test_docker_info_through_the_forwarded_tls_port(qemu_session) -> None:
    """``docker info`` at ``tcp://127.0.0.1:PORT`` (mutual TLS) is the guest's engine."""
    needs_real_installer(qemu_session)
    host = await qemu_session.shared_host()
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", host.engine_url)
    out = await asyncio.to_thread(docker, host.engine_url, qemu_session.client, "info")
    assert re.search(r"^ Kernel Version: 6\.1\.0-\d+-cloud-amd64$", out, re.M), out
    assert re.search(r"^ Operating System: Debian GNU/Linux 12 \(bookworm\)$", out, re.M), out
    assert re.search(rf"^ Name: {re.escape(host.name)}$", out, re.M), out


async def test_docker_run_busybox_in_the_guest(qemu_session) -> None:
    """The guest has no network: busybox is made offline on its engine (``bootstrap``, through
    its API), then run."""
    needs_real_installer(qemu_session)
    host = await qemu_session.shared_host()
    status, body = await asyncio.to_thread(_post, host.engine_url, "/dockyard/images/bootstrap?name=busybox",
                                           qemu_session.client)
    assert status in (200, 201), body
    out = await asyncio.to_thread(docker, host.engine_url, qemu_session.client, "run", "--rm", "busybox",
                                  "echo", "hi")
    assert out == "hi\n"


def _post(url: str, path: str, certs: Path) -> tuple[int, bytes]:
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://", 1))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=300)
    try:
        conn.request("POST", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def test_the_host_key_is_pinned_from_the_first_connection(qemu_session, guest, tmp_path) -> None:
    """The VM's host key is the driver's (through fw_cfg): what ``known_hosts`` pins is what the
    guest serves, and a connection expecting another key is refused."""
    host = await qemu_session.shared_host()
    x = host.extra
    pinned = Path(x["known_hosts"]).read_text().split()
    assert pinned[0] == f"[127.0.0.1]:{x['ssh_port']}" and pinned[1] == "ssh-ed25519"
    served = (await asyncio.to_thread(guest, host, "cat /etc/ssh/ssh_host_ed25519_key.pub")).split()
    assert served[:2] == pinned[1:3]
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{x['ssh_port']} {' '.join(Path(str(other) + '.pub').read_text().split()[:2])}\n")
    res = await asyncio.to_thread(subprocess.run, [
        "ssh", "-i", x["ssh_key_path"], "-p", str(x["ssh_port"]), "-o", "BatchMode=yes", "-o",
        f"UserKnownHostsFile={wrong}", "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "Host key verification failed" in res.stderr


async def test_the_guest_reaches_no_address(qemu_session, guest) -> None:
    """restrict=on: not this machine (10.0.2.2 is its loopback, where the VM's own SSH forward
    listens), not the world."""
    host = await qemu_session.shared_host()
    probe = ("python3 -c 'import socket,sys\n"
             "for a in sys.argv[1:]:\n"
             "    h, p = a.rsplit(\":\", 1)\n"
             "    try:\n"
             "        socket.create_connection((h, int(p)), timeout=5).close(); print(a, \"connected\")\n"
             "    except OSError as e:\n"
             "        print(a, \"refused\", e)' "
             f"10.0.2.2:{host.extra['ssh_port']} 1.1.1.1:443 192.0.2.1:80")
    out = await asyncio.to_thread(guest, host, probe)
    assert "connected" not in out, out
    assert len(out.splitlines()) == 3


async def test_forwards_listen_on_loopback_only(qemu_session) -> None:
    host = await qemu_session.shared_host()
    ports = {host.extra["ssh_port"], host.extra["engine_port"]}
    listening = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port = local.split(":")
        if state == "0A" and int(port, 16) in ports:
            listening[int(port, 16)] = addr
    assert listening == {p: "0100007F" for p in ports}, listening  # 127.0.0.1, nothing else
    assert not any(int(line.split()[1].split(":")[-1], 16) in ports
                   for line in Path("/proc/net/tcp6").read_text().splitlines()[1:] if line.split()[3] == "0A")


async def test_software_emulation_is_reported(qemu_session) -> None:
    """Here /dev/kvm cannot boot Debian's kernel (or is missing): the host says TCG in its
    state, its record (inspect's Driver section) and the log. With hardware KVM: no warning."""
    host = await qemu_session.shared_host()
    st = await qemu_session.driver.state(host)
    expected = vm.choose_accel()
    assert st.state == "running"
    assert host.extra["accel"] == expected.name
    if expected.name == "tcg":
        assert "software emulation (TCG)" in st.reason
        assert host.extra["accel_warning"] == expected.warning
        assert any(expected.warning in m for m in qemu_session.warnings)
    else:
        assert not st.reason and not host.extra["accel_warning"]


async def test_a_vm_interrupted_while_booting_is_removed_without_trace(qemu_session) -> None:
    """A create cancelled once qemu runs (the VM booting, nothing installed): remove ends the
    VM and deletes its overlay, keys and sockets; its ports are free (the fixture checks)."""
    drv = qemu_session.driver
    host = await drv.prepare(HostRequest(name="dyqcut" + os.urandom(2).hex()))
    rec = drv._load(host)
    task = asyncio.create_task(drv.create(host, qemu_session.ca.engine_tls(host.addresses), []))
    try:
        def launched() -> bool:  # the VM's pid is recorded once the launcher has exited
            return task.done() or bool(drv._load(host).pid)

        await async_wait_for(launched, 60, "qemu to run the VM")
        assert not task.done(), task
        assert Path(rec.dir, "disk.qcow2").exists()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert vm.find_processes(rec.qemu_name), "cancelling the create ended the VM: remove has nothing to show"
    assert (await drv.state(host)).state == "error"
    await drv.remove(host)
    assert (await drv.state(host)).state == "none"
    assert not vm.find_processes(rec.qemu_name)
    assert not Path(rec.dir).exists() and not Path(rec.run).exists()
