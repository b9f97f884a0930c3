"""The qemu driver's parts, without booting a VM: the accelerator's choice, qemu's command line,
the ports, the image recipe's cache key, the options, and what prepare refuses."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, Unavailable
from dockyard.specs.provision import HostRequest
from dockyard_plugin_sdk.testing import TestCA
from dockyard_provision_qemu import image, vm
from dockyard_provision_qemu.driver import QemuProvisioner


# ---------------------------------------------------------------------------------- accelerator
def fake_sys(tmp_path: Path, device: bool, *modules: str, mode: int = 0o600) -> tuple[Path, Path]:
    dev = tmp_path / "kvm"
    if device:
        dev.touch(mode=mode)
    mods = tmp_path / "module"
    for m in modules:
        (mods / m).mkdir(parents=True)
    return dev, mods


def test_no_dev_kvm_means_tcg_with_a_warning(tmp_path: Path) -> None:
    dev, mods = fake_sys(tmp_path, False, "kvm_intel")
    accel = vm.choose_accel(device=dev, modules=mods)
    assert accel.name == "tcg"
    assert f"no {dev}" in accel.warning and "software emulation (TCG)" in accel.warning
    assert accel.argv() == ["-accel", "tcg,thread=multi,tb-size=128", "-cpu", "max"]


def test_kvm_pvm_cannot_boot_a_stock_kernel_so_tcg(tmp_path: Path) -> None:
    dev, mods = fake_sys(tmp_path, True, "kvm", "kvm_pvm")
    accel = vm.choose_accel(device=dev, modules=mods)
    assert accel.name == "tcg" and "kvm_pvm" in accel.warning and "PVM guest kernel" in accel.warning


@pytest.mark.parametrize("module", ["kvm_intel", "kvm_amd"])
def test_hardware_kvm_is_used(tmp_path: Path, module: str) -> None:
    dev, mods = fake_sys(tmp_path, True, "kvm", module)
    accel = vm.choose_accel(device=dev, modules=mods)
    assert accel == vm.Accel("kvm") and accel.argv() == ["-accel", "kvm", "-cpu", "host"]


def test_forced_choices(tmp_path: Path) -> None:
    dev, mods = fake_sys(tmp_path, False)
    assert vm.choose_accel("tcg", dev, mods) == vm.Accel("tcg")  # asked for: no warning
    with pytest.raises(Unavailable, match="qemu-accel=kvm"):
        vm.choose_accel("kvm", dev, mods)


async def test_a_vm_without_dev_kvm_is_made_with_tcg_and_says_so(make_driver, fake_installer, monkeypatch, caplog,
                                                                  tmp_path) -> None:
    """The warning reaches the log and the host's record (``Host.extra``: inspect's Driver
    section); qemu is asked for TCG. The launch is stopped there (no boot), and remove cleans."""
    monkeypatch.setattr(vm, "KVM_DEVICE", tmp_path / "no-kvm")
    launched: list[vm.Machine] = []

    async def launch(machine: vm.Machine, timeout: float = 60.0):
        launched.append(machine)
        raise Unavailable("stopped by the test before qemu runs")

    monkeypatch.setattr(vm, "launch", launch)
    monkeypatch.setattr(image, "ensure", _fake_image(tmp_path))
    ca = TestCA()
    drv = make_driver(fake_installer(ca))
    await drv.setup()
    host = await drv.prepare(HostRequest(name="nokvm"))
    with caplog.at_level(logging.WARNING, "dockyard.provision.qemu"), pytest.raises(Unavailable, match="stopped"):
        await drv.create(host, ca.engine_tls(host.addresses), [])
    assert launched and launched[0].accel.name == "tcg"
    argv = launched[0].argv()
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi,tb-size=128"
    assert any(f"no {tmp_path / 'no-kvm'}" in r.getMessage() for r in caplog.records)
    rec = drv._load(host)
    assert rec.accel == "tcg" and "software emulation" in rec.accel_warning
    assert drv._host(rec).extra["accel_warning"] == rec.accel_warning
    st = await drv.state(host)
    assert st.state == "error" and "never started" in st.reason
    await drv.remove(host)
    assert (await drv.state(host)).state == "none" and not Path(rec.dir).exists()


def _fake_image(tmp_path: Path):
    async def ensure(cache, recipe, say=None):
        d = tmp_path / "image"
        d.mkdir(exist_ok=True)
        for f in ("base.raw", "vmlinuz", "initrd.img"):
            (d / f).write_bytes(b"x" * 4096)
        return image.Image(d, "k")

    return ensure


# ---------------------------------------------------------------------------------- command line
def machine(tmp_path: Path, accel: vm.Accel = vm.Accel("tcg")) -> vm.Machine:
    return vm.Machine(name="dyabcdefq-h1", hostname="h1", accel=accel, memory_mb=1024, cpus=2,
                      kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img", disk=tmp_path / "disk.qcow2",
                      ssh_port=22001, engine_port=22002, authorized_keys=tmp_path / "id.pub",
                      host_key=tmp_path / "hostkey", qmp=tmp_path / "qmp.sock", pidfile=tmp_path / "qemu.pid",
                      console=tmp_path / "console.log")


def test_the_guest_reaches_nothing_and_forwards_listen_on_loopback_only(tmp_path: Path) -> None:
    argv = machine(tmp_path).argv()
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.startswith("user,") and "restrict=on" in netdev.split(",")
    forwards = [p for p in netdev.split(",") if p.startswith("hostfwd=")]
    assert forwards == ["hostfwd=tcp:127.0.0.1:22001-:22", "hostfwd=tcp:127.0.0.1:22002-:2376"]
    assert "guestfwd" not in netdev and "smb" not in netdev


def test_command_line(tmp_path: Path) -> None:
    argv = machine(tmp_path).argv()
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-name") + 1].startswith("dyabcdefq-h1,")
    assert ["-m", "1024"] == argv[argv.index("-m"):argv.index("-m") + 2]
    assert ["-smp", "2"] == argv[argv.index("-smp"):argv.index("-smp") + 2]
    assert f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off" in argv
    assert argv[-3:] == ["-pidfile", str(tmp_path / "qemu.pid"), "-daemonize"]
    assert f"file={tmp_path / 'disk.qcow2'},if=virtio,format=qcow2,discard=unmap" in argv
    assert "root=/dev/vda rw console=ttyS0" == argv[argv.index("-append") + 1]
    cfg = [argv[i + 1] for i, a in enumerate(argv) if a == "-fw_cfg"]
    assert cfg == [f"name=opt/dockyard/authorized_keys,file={tmp_path / 'id.pub'}",
                   "name=opt/dockyard/hostname,string=h1",
                   f"name=opt/dockyard/ssh_host_ed25519_key,file={tmp_path / 'hostkey'}"]
    kvm = machine(tmp_path, vm.Accel("kvm")).argv()
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"


# ---------------------------------------------------------------------------------- ports
def test_reserved_ports_are_held_and_outside_the_ephemeral_range() -> None:
    lo, hi = vm.ephemeral_range()
    held = vm.reserve_ports(2)
    try:
        ports = [s.getsockname()[1] for s in held]
        assert len(set(ports)) == 2
        assert all(vm.PORT_RANGE[0] <= p <= vm.PORT_RANGE[1] and not lo <= p <= hi for p in ports)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", ports[0]))
    finally:
        for s in held:
            s.close()


# ---------------------------------------------------------------------------------- the recipe
def test_recipe_packages_hold_what_the_engine_needs() -> None:
    pkgs = image.Recipe(sources=Path("/dev/null")).packages
    for p in ("linux-image-cloud-amd64", "python3", "python3-venv", "crun", "runc", "conmon", "nftables",
              "iproute2", "busybox-static", "openssh-server", "systemd-sysv"):
        assert p in pkgs


def test_cache_key_follows_the_recipe_not_the_build_directory(tmp_path: Path, monkeypatch) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n")
    base = image.Recipe(sources=sources)
    key = base.key()
    assert key == image.Recipe(sources=sources).key()
    assert image.Recipe(sources=sources, extra_packages=("strace",)).key() != key
    assert image.Recipe(sources=sources, size="3G").key() != key
    assert "<tmp>" not in " ".join(base.mmdebstrap_argv("/x")) and "/x/rootfs" in base.mmdebstrap_argv("/x")
    sources.write_text(sources.read_text().replace("deb.debian.org", "mirror.example"))
    assert base.key() != key
    sources.write_text(sources.read_text().replace("mirror.example", "deb.debian.org"))
    assert base.key() == key
    real = image.guest_file
    monkeypatch.setattr(image, "guest_file", lambda name: real(name) + (b"#\n" if name == "vm-seed" else b""))
    assert base.key() != key


def test_image_directory_is_per_key(tmp_path: Path) -> None:
    sources = tmp_path / "s"
    sources.write_text("x")
    a, b = image.Recipe(sources=sources), image.Recipe(sources=sources, extra_packages=("strace",))
    assert image.image_dir(tmp_path, a).dir != image.image_dir(tmp_path, b).dir
    assert image.cached(tmp_path, a) is None


def test_the_guest_files_are_the_drivers_own() -> None:
    seed = image.guest_file("vm-seed").decode()
    assert "opt/dockyard" in seed and "ssh_host_ed25519_key" in seed
    assert "Before=ssh.service" in image.guest_file("vm-seed.service").decode()


async def test_building_without_root_says_how(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    sources = tmp_path / "s"
    sources.write_text("x")
    with pytest.raises(Unavailable, match="needs root.*python -m dockyard_provision_qemu.image"):
        await image.ensure(tmp_path / "cache", image.Recipe(sources=sources))


# ---------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("options", "message"), [
    ({"color": "blue"}, "unknown option"),
    ({"qemu-memory": "lots"}, "whole numbers"),
])
async def test_setup_refuses_bad_driver_options(make_driver, options, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        drv = make_driver(**options)
        await drv.setup()


@pytest.mark.parametrize(("options", "message"), [
    ({"qemu-memory": "100"}, "at least 256"),
    ({"qemu-cpus": "0"}, "between 1 and 64"),
    ({"qemu-disk-size": "1G"}, "at least 2048"),
    ({"qemu-disk-size": "big"}, "not a size"),
    ({"qemu-accel": "hvf"}, "auto, kvm, tcg"),
    ({"subnet": "10.0.0.0/24"}, "per-host options"),
])
async def test_prepare_refuses_bad_host_options(make_driver, fake_installer, options, message) -> None:
    drv = make_driver(fake_installer(TestCA()))
    await drv.setup()
    with pytest.raises(InvalidArgument, match=message):
        await drv.prepare(HostRequest(name="h1", options=options))
    assert not drv._records()


async def test_host_options_and_driver_defaults(make_driver, fake_installer) -> None:
    drv = make_driver(fake_installer(TestCA()), **{"qemu-memory": "2048", "qemu-disk-size": "10G"})
    await drv.setup()
    a = await drv.prepare(HostRequest(name="a"))
    b = await drv.prepare(HostRequest(name="b", options={"qemu-memory": "1536", "qemu-cpus": "1",
                                                          "qemu-disk-size": "4096"}))
    try:
        assert (a.extra["memory"], a.extra["cpu"], a.extra["disk_size"]) == (2048, 2, 10240)
        assert (b.extra["memory"], b.extra["cpu"], b.extra["disk_size"]) == (1536, 1, 4096)
        assert a.addresses == ["127.0.0.1"] and a.engine_url == f"tcp://127.0.0.1:{a.extra['engine_port']}"
        ports = {a.extra["ssh_port"], a.extra["engine_port"], b.extra["ssh_port"], b.extra["engine_port"]}
        assert len(ports) == 4
        with pytest.raises(Conflict):
            await drv.prepare(HostRequest(name="a"))
    finally:
        await drv.remove(a)
        await drv.remove(b)
    for port in ports:  # released: bindable again
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert not drv._records()


# ---------------------------------------------------------------------------------- the installer
async def test_without_an_engine_installer_nothing_is_made(make_driver, qemu_processes) -> None:
    """No plugin provides an EngineInstaller: prepare refuses naming the distribution to
    install, before it reserves a name, a port or a file, and nothing is booted."""
    drv = make_driver(installer=None)
    await drv.setup()
    with pytest.raises(Unavailable) as err:
        await drv.prepare(HostRequest(name="h1"))
    msg = str(err.value)
    assert "EngineInstaller" in msg and "pip install dockyard-provision-ssh" in msg
    assert not drv._records()
    assert not [p for p in drv.context.data_dir.rglob("*") if p.name != "hosts"]
    assert not list(drv.context.run_dir.iterdir())
    assert not qemu_processes(drv.context.owner)
    assert not drv._held


async def test_create_without_an_engine_installer_makes_nothing(make_driver, fake_installer, qemu_processes) -> None:
    """An installer gone between prepare and create (another context): create refuses before
    it builds, boots or writes anything, and remove releases the prepared host."""
    ca = TestCA()
    with_installer = make_driver(fake_installer(ca))
    await with_installer.setup()
    host = await with_installer.prepare(HostRequest(name="h1"))
    from dockyard.specs._base import DriverContext

    ctx = with_installer.context
    without = QemuProvisioner(DriverContext(data_dir=ctx.data_dir, run_dir=ctx.run_dir, owner=ctx.owner,
                                            options=ctx.options))
    with pytest.raises(Unavailable, match="dockyard-provision-ssh"):
        await without.create(host, ca.engine_tls(host.addresses), [])
    rec = json.loads((ctx.data_dir / "hosts" / f"{host.id}.json").read_text())
    assert rec["state"] == "prepared" and not Path(rec["dir"]).exists()
    await with_installer.remove(host)
    await without.remove(host)
    assert not with_installer._records() and not qemu_processes(ctx.owner)


async def test_status(make_driver) -> None:
    drv = make_driver()
    await drv.setup()
    status = dict(drv.status())
    assert status["Image cache"] and status["Hosts"] == "0"
    assert status["Accelerator"].split()[0] in ("kvm", "tcg")


def test_wait_until_gives_up_when_the_vm_dies() -> None:
    async def go() -> None:
        await vm.wait_until(lambda: False, float("inf"), "nothing", lambda: False, lambda: "it died")

    with pytest.raises(Unavailable, match="died while waiting for nothing: it died"):
        asyncio.run(go())


# ---------------------------------------------------------------------------------- boot fallbacks
async def _create_stopped_at_launch(drv, ca, name: str, outcomes: list) -> tuple[list[vm.Machine], Exception]:
    """Create a host whose launches end as ``outcomes`` says (an exception each); return the
    machines qemu was asked for and the create's error."""
    launched: list[vm.Machine] = []

    async def launch(machine: vm.Machine, timeout: float = 60.0):
        launched.append(machine)
        raise outcomes.pop(0)

    host = await drv.prepare(HostRequest(name=name))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vm, "launch", launch)
        with pytest.raises(Unavailable) as err:
            await drv.create(host, ca.engine_tls(host.addresses), [])
    return launched, err.value


async def test_kvm_that_cannot_start_the_vm_falls_back_to_tcg(make_driver, fake_installer, monkeypatch,
                                                               tmp_path, caplog) -> None:
    monkeypatch.setattr(vm, "choose_accel", lambda want="auto", *a: vm.Accel("kvm"))
    monkeypatch.setattr(image, "ensure", _fake_image(tmp_path))
    ca = TestCA()
    drv = make_driver(fake_installer(ca))
    await drv.setup()
    outcomes = [Unavailable("qemu: failed to set MSR 0x10a to 0x69"), Unavailable("stopped by the test")]
    with caplog.at_level(logging.WARNING, "dockyard.provision.qemu"):
        launched, err = await _create_stopped_at_launch(drv, ca, "fallback", outcomes)
    assert [m.accel.name for m in launched] == ["kvm", "tcg"] and "stopped by the test" in str(err)
    rec = drv._records()[0]
    assert rec.accel == "tcg" and "KVM failed to start the VM" in rec.accel_warning and "MSR" in rec.accel_warning
    assert any("KVM failed" in r.getMessage() for r in caplog.records)
    await drv.remove(drv._host(rec))


async def test_a_port_taken_meanwhile_gets_another(make_driver, fake_installer, monkeypatch, tmp_path) -> None:
    """qemu cannot bind a forward (someone took the port after prepare): new ports, a new
    known_hosts line, the certificate still fits (it names 127.0.0.1, not a port)."""
    monkeypatch.setattr(image, "ensure", _fake_image(tmp_path))
    ca = TestCA()
    drv = make_driver(fake_installer(ca))
    await drv.setup()
    outcomes = [vm.PortTaken("qemu: Could not set up host forwarding rule 'tcp:127.0.0.1:1-:22'"),
                Unavailable("stopped by the test")]
    launched, _err = await _create_stopped_at_launch(drv, ca, "ports", outcomes)
    first, second = launched
    assert {first.ssh_port, first.engine_port}.isdisjoint({second.ssh_port, second.engine_port})
    rec = drv._records()[0]
    assert (rec.ssh_port, rec.engine_port) == (second.ssh_port, second.engine_port)
    assert Path(rec.dir, "known_hosts").read_text().startswith(f"[127.0.0.1]:{second.ssh_port} ssh-ed25519 ")
    assert drv._host(rec).engine_url == f"tcp://127.0.0.1:{second.engine_port}"
    await drv.remove(drv._host(rec))
    assert not Path(rec.dir).exists()
