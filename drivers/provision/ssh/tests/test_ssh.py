"""What only the ssh driver and its installer do, against real sshd targets (conftest.py).

Each test's targets are checked at teardown: no process left in a target, no mount under its
install root, and nothing of its or its engines' owners on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from dockyard import provisioning
from dockyard.config import Config
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.kernel import Kernel
from dockyard.model import Host
from dockyard.specs.provision import EngineInstall, EngineInstaller, HostRequest
from dockyard_plugin_sdk.testing import TestCA, async_wait_for
from dockyard_provision_ssh.driver import SshProvisioner
from dockyard_provision_ssh.installer import SshEngineInstaller, connect


def mtls(url: str, path: str, certs: Path, method: str = "GET") -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://"))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=60)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def docker(url: str, certs: Path, *args: str) -> str:
    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(certs.parent / "docker-config")
    res = subprocess.run([cli, "--tlsverify", "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "cert.pem"),
                          "--tlskey", str(certs / "key.pem"), "-H", url, *args],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, f"docker {' '.join(args)}: {res.stderr}"
    return res.stdout


def bootstrap(url: str, certs: Path) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("the offline busybox image needs /bin/busybox (busybox-static)")
    status, body = mtls(url, "/dockyard/images/bootstrap?name=busybox", certs, "POST")
    assert status in (200, 201), body


async def no_engine_files(target) -> None:
    assert not os.path.exists(target.install_root), os.listdir(target.install_root)


# ---------------------------------------------------------------------------------- the whole path
async def test_provision_through_a_kernel_then_docker_run_over_tls(target, tmp_path) -> None:
    """``-d ssh`` as the machine feature runs it: a kernel loads the driver from the registry,
    the installer comes from this distribution's ``dockyard_provides``; then the docker CLI
    over mutual TLS runs busybox on the target's engine."""
    config = Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r"),
                            "plugins": {"allow": ["ssh"]}})
    kernel = Kernel.build(config, environ={})
    try:
        driver = await kernel.driver_ready("provision", "ssh")
        assert isinstance(driver, SshProvisioner)
        provided = driver.context.need(EngineInstaller)
        assert isinstance(provided, SshEngineInstaller) and driver.installer is provided
        assert provided.cache_dir == tmp_path / "d" / "provision" / "ssh" / "wheelhouse"
        ca = TestCA()
        name = target.track("web1")
        host = await provisioning.provision(kernel, driver, HostRequest(name=name, options=target.options()),
                                            lambda h: ca.engine_tls(h.addresses))
        assert host.engine_url == f"tcp://{target.address}:2376" and host.addresses == [target.address]
        certs = ca.write_client(tmp_path / "certs")
        await asyncio.to_thread(bootstrap, host.engine_url, certs)
        out = await asyncio.to_thread(docker, host.engine_url, certs, "run", "--rm", "busybox", "echo", "hi")
        assert out == "hi\n"
        # Docker Machine's provisioning: the machine is named after the host
        assert target.hostname() == name and target.etc_file("hostname") == f"{name}\n"
        assert f"127.0.1.1\t{name}" in target.etc_file("hosts")
        home = Path(target.install_root) / name
        assert (home / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600
        assert (home / "tls").stat().st_mode & 0o777 == 0o700
        daemon = json.loads((home / "daemon.json").read_text())
        assert daemon["tlsverify"] is True and "tcp://0.0.0.0:2376" in daemon["hosts"]

        await driver.remove(host)
        assert (await driver.state(host)).state == "none"
        await no_engine_files(target)
        assert target.hostname() == "target0" and target.etc_file("hostname") == "target0\n"
        assert name not in target.etc_file("hosts")
        assert not target.processes()
    finally:
        await kernel.stop()


async def test_install_again_updates_flags_and_certificates_without_reinstalling(target, tmp_path) -> None:
    installer = SshEngineInstaller(tmp_path / "cache")
    ssh = target.ssh_target()
    name = target.track("idem")
    url = f"tcp://{target.address}:2376"

    async def install(ca: TestCA, *flags: str) -> list[str]:
        lines: list[str] = []
        spec = EngineInstall(name=name, listen=("tcp://0.0.0.0:2376",), engine_url=url,
                             tls=ca.engine_tls([target.address]), engine_flags=flags)
        await installer.install(ssh, spec, lines.append)
        return lines

    first_ca, second_ca = TestCA(), TestCA()
    t0 = time.monotonic()
    first = await install(first_ca)
    print(f"first install: {time.monotonic() - t0:.2f}s")
    assert any("uploaded the wheelhouse" in line for line in first) and any("installed offline" in line for line in first)
    t0 = time.monotonic()
    second = await install(second_ca, "--label", "again=yes")
    again = time.monotonic() - t0
    assert any("has this wheelhouse already" in line for line in second), second
    assert any("is there already" in line for line in second), second
    assert not any("installed offline" in line or "uploaded" in line for line in second), second
    certs = second_ca.write_client(tmp_path / "certs2")
    status, body = await asyncio.to_thread(mtls, url, "/info", certs)
    assert status == 200 and "again=yes" in json.loads(body)["Labels"]
    with pytest.raises((ssl.SSLError, OSError)):  # the first CA's clients are refused now
        await asyncio.to_thread(mtls, url, "/_ping", first_ca.write_client(tmp_path / "certs1"))
    print(f"second install (new flags and certificates, restart): {again:.2f}s")
    print("\n".join(first + second))
    await installer.uninstall(ssh, name)
    await no_engine_files(target)
    await installer.uninstall(ssh, name)  # nothing left: nothing happens


async def test_stop_leaves_containers_running_and_remove_takes_them(ssh_driver, target, tmp_path) -> None:
    """KillMode=process: stopping the engine never kills its containers (live-restore); remove
    takes them, their cgroups, mounts, links and nft tables with it."""
    ca = TestCA()
    name = target.track("busy")
    host = await ssh_driver.prepare(HostRequest(name=name, options=target.options()))
    host = await ssh_driver.create(host, ca.engine_tls(host.addresses), [])
    certs = ca.write_client(tmp_path / "certs")
    await asyncio.to_thread(bootstrap, host.engine_url, certs)
    cid = (await asyncio.to_thread(docker, host.engine_url, certs, "run", "-d", "-p", "8080:80", "busybox",
                                   "sleep", "600")).strip()
    pid = int(await asyncio.to_thread(docker, host.engine_url, certs, "inspect", "-f", "{{.State.Pid}}", cid))
    await ssh_driver.stop(host)
    assert (await ssh_driver.state(host)).state == "stopped"
    assert b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes(), "the container did not outlive its engine"
    await ssh_driver.start(host)
    assert (await ssh_driver.state(host)).state == "running"
    assert int(await asyncio.to_thread(docker, host.engine_url, certs, "inspect", "-f", "{{.State.Pid}}", cid)) == pid
    await ssh_driver.remove(host)

    def gone() -> bool:  # (a zombie waiting for its new parent to reap it counts as gone)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat[stat.rindex(")") + 2] in "ZX"

    await async_wait_for(gone, 10, "the container to be killed")
    assert not target.processes()
    assert not target.mounts_under_root()
    await no_engine_files(target)


# ---------------------------------------------------------------------------------- clear failures
async def provision(driver: SshProvisioner, name: str, options: dict[str, str], flags=()) -> Host:
    ca = TestCA()
    host = await driver.prepare(HostRequest(name=name, options=options))
    try:
        return await driver.create(host, ca.engine_tls(host.addresses), list(flags))
    except BaseException:
        await driver.remove(host)  # what dockyard.provisioning.provision does
        raise


async def test_a_wrong_key_is_refused_and_leaves_nothing(ssh_driver, target, tmp_path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh
    other = asyncssh.generate_private_key("ssh-ed25519")
    other.write_private_key(str(tmp_path / "other_key"))
    with pytest.raises(Unavailable, match=r"root@.* refused the key .*other_key \(permission denied\)"):
        await provision(ssh_driver, target.track("wrongkey"), target.options(**{"ssh-key": str(tmp_path / "other_key")}))
    assert not ssh_driver._records()
    await no_engine_files(target)


async def test_an_unreachable_address_fails_fast_and_leaves_nothing(ssh_driver, target) -> None:
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match=rf"cannot reach {target.unreachable}:22 over SSH"):
        await provision(ssh_driver, "gone", target.options(**{"ssh-address": target.unreachable}))
    assert time.monotonic() - t0 < 20
    assert not ssh_driver._records()


async def test_another_host_key_than_the_pinned_one_is_refused(ssh_driver, target) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(Unavailable, match="is not the one pinned"):
        await provision(ssh_driver, target.track("pinned"), target.options(**{"ssh-host-key": impostor}))
    await no_engine_files(target)


async def test_an_unknown_host_key_is_never_accepted_silently(ssh_driver, target) -> None:
    opts = target.options()
    del opts["ssh-host-key"]
    with pytest.raises(InvalidArgument, match="not pinned.*ssh-accept-new-host-key=yes"):
        await ssh_driver.prepare(HostRequest(name="tofu", options=opts))


async def test_accept_new_records_the_first_key_and_pins_it(ssh_driver, target) -> None:
    opts = target.options(**{"ssh-accept-new-host-key": "yes"})
    del opts["ssh-host-key"]
    host = await ssh_driver.prepare(HostRequest(name="tofu", options=opts))
    rec = ssh_driver._load(host)
    assert rec.accept_new and not Path(rec.known_hosts).exists()
    await ssh_driver._pin_first_key(rec)
    recorded = Path(rec.known_hosts).read_text().split()
    assert recorded == [target.address, *target.host_key_pub.split()[:2]]
    conn = await connect(rec.target)  # later connections check the recorded key
    conn.close()
    await ssh_driver.remove(host)
    assert not Path(rec.known_hosts).exists()


async def test_a_missing_debian_package_is_named_and_nothing_is_left(ssh_driver, targets) -> None:
    """The target's dpkg (first on the PATH its sshd gives sessions) reports conmon missing;
    the target reaches no package mirror (no route off this machine), so apt is not tried."""
    target = targets.make(shims=True)
    target.write_shim("dpkg", "#!/bin/sh\n# this target has no conmon\n"
                              '[ "$1" = -s ] && [ "$2" = conmon ] && { echo "dpkg-query: package \'conmon\' is not '
                              'installed and no information is available" >&2; exit 1; }\nexec /usr/bin/dpkg "$@"\n')
    with pytest.raises(Unavailable) as err:
        await provision(ssh_driver, target.track("nopkg"), target.options())
    message = str(err.value)
    assert "lacks the Debian packages the engine needs: conmon;" in message, message
    assert "no package mirror answers" in message and "apt-get install conmon" in message, message
    assert not ssh_driver._records()
    await no_engine_files(target)


async def test_a_target_without_python3_is_named(ssh_driver, targets) -> None:
    """Sessions whose PATH (the target's sshd_config) holds shells and dpkg but no python3. What
    was uploaded before the agent could not run (SFTP needs no shell) is removed over SFTP."""
    target = targets.make(path="shims")
    for tool in ("sh", "bash", "env", "dpkg"):
        os.symlink(shutil.which(tool), target.dir / "shims" / tool)
    with pytest.raises(Unavailable, match=r"has no python3 \(Debian package python3\)"):
        await provision(ssh_driver, target.track("nopy"), target.options())
    assert not ssh_driver._records()
    await no_engine_files(target)


async def test_an_engine_that_does_not_start_is_reported_with_its_log(ssh_driver, target) -> None:
    with pytest.raises(Unavailable, match=r"(?s)exited with status 2 before it answered.*--no-such-flag"):
        await provision(ssh_driver, target.track("broken"), target.options(), flags=["--no-such-flag"])
    assert not ssh_driver._records()
    await no_engine_files(target)
    assert not target.processes()
