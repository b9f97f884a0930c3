"""The qemu driver's guest image: Debian 12 built from Debian packages with mmdebstrap, cached.

The guest has no network (user-mode networking with ``restrict=on``), so everything the engine
needs is baked in: python3 and python3-venv (the installer makes a venv from uploaded wheels),
crun, runc, conmon, nftables, iproute2, busybox-static (``image bootstrap``), openssh-server
(the installer's way in), systemd. The recipe is shared/recipes/build-vm-image.sh (measured
there: ~35 s), ported to Python rather than shipped as a script, because the driver must

* compute the cache key from exactly what shapes the image: the mmdebstrap command line (suite,
  package list, hooks, dpkg options), the guest files, the mkfs command and the apt sources,
  with the build's temporary paths left out, so an unrelated edit does not rebuild;
* serialise concurrent builds (two VMs created at once, two test sessions) with a lock on the
  cache entry, and publish a build by renaming a finished directory, so a reader never sees a
  half-written image and a killed build leaves only a temporary directory the next build of
  that key removes;
* never leave a mount behind: mmdebstrap (root mode mounts /proc, /sys and /dev in its chroot)
  runs in a private mount namespace of its own (``unshare --mount --propagation private``), so
  whatever it mounts vanishes with it even when it is killed; the driver still checks that
  nothing is mounted below the temporary directory before deleting it;
* kill the whole build (its process group) when the create that asked for it is cancelled.

An image is a directory ``<cache>/bookworm-<key16>/`` holding ``base.raw`` (a bare ext4 file
system, no partition table: the guest's ``/dev/vda``, read-only; each VM gets a qcow2 overlay
on it), ``vmlinuz`` and ``initrd.img`` (direct kernel boot), ``manifest.txt`` (packages and
versions) and ``build.json``. A new recipe gets a new directory, so overlays of VMs made from an
older image keep their backing file. ``python -m dockyard_provision_qemu.image [--cache DIR]``
builds (or finds) the image ahead of time.

Per VM, nothing is baked: ``vm-seed.service`` (before sshd) reads qemu fw_cfg entries
``opt/dockyard/authorized_keys``, ``opt/dockyard/hostname`` and
``opt/dockyard/ssh_host_ed25519_key``, so the driver pins the VM's host key before its first
connection. The image has no SSH host key and an empty machine-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dockyard.errors import Unavailable

log = logging.getLogger("dockyard.provision.qemu")

SUITE = "bookworm"
KERNEL_PACKAGE = "linux-image-cloud-amd64"
#: What the guest gets (Debian package names). Why, beyond the obvious: udev loads the
#: virtio_net/virtio_rng modules and tags the ACPI power button for logind; dbus lets logind run
#: (QMP system_powerdown is a clean poweroff through logind); the rest is the engine's.
PACKAGES = (
    KERNEL_PACKAGE, "systemd-sysv", "udev", "dbus", "openssh-server", "ca-certificates", "kmod",
    "e2fsprogs", "iproute2", "nftables", "python3", "python3-venv", "crun", "runc", "conmon",
    "busybox-static",
)
#: Size of base.raw (sparse); a VM's overlay is bigger and the guest grows / to it.
BASE_SIZE = "2G"
#: Bump when a step after mmdebstrap changes (what is copied out, how).
RECIPE_VERSION = 1
DEFAULT_CACHE = Path("/var/cache/dockyard/qemu")
#: Guest files (package data ``guest/``): where they go in the image, and their mode.
GUEST_FILES = {
    "vm-seed": ("/usr/local/sbin/vm-seed", 0o755),
    "vm-seed.service": ("/etc/systemd/system/vm-seed.service", 0o644),
    "vm-growfs.service": ("/etc/systemd/system/vm-growfs.service", 0o644),
    "10-vm.network": ("/etc/systemd/network/10-vm.network", 0o644),
}
#: Units that only cost boot time (or, for binfmt, would need a module the guest lacks).
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
          "dpkg-db-backup.timer", "fstrim.timer", "systemd-networkd-wait-online.service", "getty@tty1.service",
          "systemd-binfmt.service")
#: Host tools a build needs, and the Debian package each comes from.
BUILD_TOOLS = {"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "unshare": "util-linux",
               "dpkg-query": "dpkg"}
_TMP = "<tmp>"  # the build directory, as it appears in the cache key
_LOCK_POLL = 0.25


@dataclass(frozen=True)
class Image:
    """A built image (a directory of the cache)."""

    dir: Path
    key: str

    @property
    def base(self) -> Path:
        return self.dir / "base.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.txt"

    def complete(self) -> bool:
        try:
            doc = json.loads((self.dir / "build.json").read_text())
        except (OSError, ValueError):
            return False
        return doc.get("key") == self.key and all(p.is_file() and p.stat().st_size > 0
                                                  for p in (self.base, self.kernel, self.initrd))

    def info(self) -> dict[str, object]:
        """``build.json``: key, suite, packages, kernel version, build time..."""
        return json.loads((self.dir / "build.json").read_text())


def default_sources() -> Path:
    """The host's apt sources (deb822 or one-line): what the build downloads from, and what the
    guest's apt is set up with."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    return deb822 if deb822.is_file() and deb822.stat().st_size else Path("/etc/apt/sources.list")


def apt_options() -> list[str]:
    """The few settings of the host's apt configuration a build needs to reach its mirror
    (mmdebstrap runs apt with its own config): a snapshot mirror's Release files are past
    Valid-Until, and a proxy. Nothing else is copied."""
    try:
        out = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keep = ("Acquire::Check-Valid-Until ", "Acquire::Check-Date ", "Acquire::http::Proxy ",
            "Acquire::https::Proxy ")
    return [line for line in out.splitlines() if line.startswith(keep)]


@dataclass(frozen=True)
class Recipe:
    """What an image is built from. ``extra_packages`` adds Debian packages (driver option
    ``image-packages``); ``sources`` is the apt sources file (option ``image-sources``)."""

    sources: Path = field(default_factory=default_sources)
    extra_packages: tuple[str, ...] = ()
    suite: str = SUITE
    size: str = BASE_SIZE

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*PACKAGES, *self.extra_packages)))

    def mmdebstrap_argv(self, tmp: str, aptopts: Sequence[str] = ()) -> list[str]:
        """The mmdebstrap command building ``<tmp>/rootfs`` (guest files in ``<tmp>/guest``).

        Essential hooks run before the kernel package is installed, so its initramfs holds
        only the virtio and ext4 modules plus e2fsck (6 MB instead of ~30 MB). Customize hooks:
        no build-time SSH host keys (each VM gets its own through fw_cfg), the guest units,
        systemd-networkd with DHCP on any ethernet link, boot-time-only units masked, qemu's
        user-mode DNS, and dpkg's unsafe-io dropped again for the guest's own apt."""
        installs = [f'install -m {mode:o} "{tmp}/guest/{name}" "$1{dest}"' for name, (dest, mode) in GUEST_FILES.items()]
        return [
            "mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
            f"--include={','.join(self.packages)}",
            *[f"--aptopt={opt}" for opt in aptopts],
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=force-unsafe-io",
            '--essential-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"',
            '--essential-hook=printf "MODULES=list\\nFSTYPE=ext4\\n" >"$1/etc/initramfs-tools/conf.d/vm.conf"',
            '--essential-hook=printf "%s\\n" virtio_pci virtio_blk ext4 '
            '>"$1/usr/share/initramfs-tools/modules.d/vm-virtio"',
            '--essential-hook=echo "/dev/vda / ext4 rw,noatime 0 1" >"$1/etc/fstab"',
            '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
            '--customize-hook=printf "HostKey /etc/ssh/ssh_host_ed25519_key\\n" >"$1/etc/ssh/sshd_config.d/vm.conf"',
            '--customize-hook=mkdir -p "$1/usr/local/sbin" "$1/etc/systemd/network"',
            *[f"--customize-hook={cmd}" for cmd in installs],
            '--customize-hook=chroot "$1" systemctl enable vm-seed.service vm-growfs.service systemd-networkd.service',
            f'--customize-hook=chroot "$1" systemctl mask {" ".join(MASKED)}',
            '--customize-hook=echo debian >"$1/etc/hostname"; '
            'printf "127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n" >"$1/etc/hosts"',
            '--customize-hook=echo "nameserver 10.0.2.3" >"$1/etc/resolv.conf"',
            '--customize-hook=: >"$1/etc/machine-id"',
            '--customize-hook=sed -i "/^force-unsafe-io$/d" "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"',
            self.suite, f"{tmp}/rootfs", str(self.sources),
        ]

    def mkfs_argv(self, tmp: str) -> list[str]:
        """ext4 straight from the directory: no partition table, no loop device, no mount."""
        return ["mkfs.ext4", "-q", "-F", "-L", "vmroot", "-d", f"{tmp}/rootfs", f"{tmp}/base.raw", self.size]

    def key(self) -> str:
        """The cache key: the recipe's commands (without the build's temporary paths and the
        options that only reach the mirror), the guest files, the apt sources' content."""
        h = hashlib.sha256()
        h.update(f"recipe {RECIPE_VERSION}\n".encode())
        for arg in (*self.mmdebstrap_argv(_TMP), *self.mkfs_argv(_TMP)):
            h.update(arg.encode() + b"\0")
        for name in sorted(GUEST_FILES):
            h.update(name.encode() + b"\0" + guest_file(name) + b"\0")
        try:
            h.update(self.sources.read_bytes())
        except OSError as exc:
            raise Unavailable(f"the apt sources file {self.sources} cannot be read ({exc.strerror}); "
                              "set the qemu driver's option image-sources") from None
        return h.hexdigest()


def guest_file(name: str) -> bytes:
    return resources.files("dockyard_provision_qemu").joinpath("guest", name).read_bytes()


def image_dir(cache: Path, recipe: Recipe) -> Image:
    key = recipe.key()
    return Image(cache / f"{recipe.suite}-{key[:16]}", key)


def cached(cache: Path, recipe: Recipe) -> Image | None:
    """The cached image of ``recipe``, or None."""
    image = image_dir(cache, recipe)
    return image if image.complete() else None


def missing_tools() -> list[str]:
    return [f"{tool} (Debian package {pkg})" for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None]


async def ensure(cache: Path, recipe: Recipe, say: Callable[[str], None] = log.info) -> Image:
    """The image of ``recipe`` in ``cache``, built first if it is not there (under a lock:
    a concurrent caller waits for the build and reuses it)."""
    image = image_dir(cache, recipe)
    if image.complete():
        return image
    if os.geteuid() != 0:
        raise Unavailable(f"the qemu driver's image is not in {cache} and building it needs root (mmdebstrap "
                          f"in root mode); build it once as root: python -m dockyard_provision_qemu.image "
                          f"--cache {cache}")
    missing = missing_tools()
    if missing:
        raise Unavailable(f"building the qemu driver's image needs {', '.join(missing)}: "
                          "apt-get install mmdebstrap e2fsprogs util-linux")
    await asyncio.to_thread(cache.mkdir, mode=0o755, parents=True, exist_ok=True)
    lock = await asyncio.to_thread(os.open, str(cache / f".lock-{image.key[:16]}"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL)  # another process builds this image: wait for its lock
        if image.complete():
            return image
        await _build(image, recipe, say)
        return image
    finally:
        os.close(lock)


async def _build(image: Image, recipe: Recipe, say: Callable[[str], None]) -> None:
    cache = image.dir.parent
    prefix = f".tmp-{image.key[:16]}-"
    for stale in cache.glob(prefix + "*"):  # a killed build of this key (we hold its lock)
        await asyncio.to_thread(_remove_tree, stale)
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix, dir=cache))
    t0 = time.monotonic()
    try:
        tmp.chmod(0o755)  # apt's _apt user must reach the lists directory below it
        (tmp / "guest").mkdir()
        for name in GUEST_FILES:
            (tmp / "guest" / name).write_bytes(guest_file(name))
        aptopts = await asyncio.to_thread(apt_options)
        say(f"building the Debian {recipe.suite} image {image.dir.name} with mmdebstrap "
            f"({len(recipe.packages)} packages from {recipe.sources}); the first build takes about a minute")
        # A private mount namespace: mmdebstrap's /proc, /sys and /dev mounts die with it.
        argv = ["unshare", "--mount", "--propagation", "private", "--", *recipe.mmdebstrap_argv(str(tmp), aptopts)]
        await _run(argv, "mmdebstrap", timeout=1800)
        root = tmp / "rootfs"
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise Unavailable(f"the image build made no kernel or initrd in {root}/boot")
        shutil.copyfile(kernels[-1], tmp / "vmlinuz")
        shutil.copyfile(initrds[-1], tmp / "initrd.img")
        manifest = await _run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                               "${Package} ${Version}\n"], "dpkg-query", timeout=60)
        (tmp / "manifest.txt").write_text(manifest)
        await _run(recipe.mkfs_argv(str(tmp)), "mkfs.ext4", timeout=600)
        (tmp / "base.raw").chmod(0o444)  # overlays only read it
        await asyncio.to_thread(_remove_tree, root)
        await asyncio.to_thread(shutil.rmtree, tmp / "guest")
        seconds = round(time.monotonic() - t0, 1)
        (tmp / "build.json").write_text(json.dumps({
            "key": image.key, "suite": recipe.suite, "packages": list(recipe.packages),
            "kernel": kernels[-1].name.removeprefix("vmlinuz-"), "sources": str(recipe.sources),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
            "recipe_version": RECIPE_VERSION}, indent=2))
        if image.dir.exists():  # an incomplete directory (build.json missing): ours to replace
            await asyncio.to_thread(_remove_tree, image.dir)
        os.rename(tmp, image.dir)
        say(f"image {image.dir} built in {seconds} s ({len(manifest.splitlines())} packages, "
            f"kernel {kernels[-1].name.removeprefix('vmlinuz-')})")
    finally:
        if tmp.exists():
            await asyncio.to_thread(_remove_tree, tmp)


def _remove_tree(path: Path) -> None:
    """Delete a build directory, refusing to descend through anything mounted below it."""
    from dockyard.mounts import read_mounts

    prefix = str(path).rstrip("/") + "/"
    mounted = [m.point for m in read_mounts() if m.point.startswith(prefix) or m.point == str(path)]
    if mounted:
        raise Unavailable(f"not deleting {path}: mounted below it: {', '.join(mounted)}")
    shutil.rmtree(path, ignore_errors=True)


async def _run(argv: list[str], what: str, timeout: float) -> str:
    """Run a build step in its own process group; its stdout is returned, its stderr logged at
    debug level and its tail put in the error. Cancelled or timed out: the group is killed."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
                                                start_new_session=True)
    tail: list[str] = []

    async def read_err() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            log.debug("%s: %s", what, line)
            tail.append(line)
            del tail[:-30]

    try:
        async with asyncio.timeout(timeout):
            out, _ = await asyncio.gather(proc.stdout.read(), read_err())  # type: ignore[union-attr]
            status = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if status != 0:
        raise Unavailable(f"the image build failed: {what} exited {status}:\n" + "\n".join(tail[-15:]))
    return out.decode(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dockyard_provision_qemu.image",
                                     description="Build (or find) the qemu driver's Debian image in its cache.")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache directory (default {DEFAULT_CACHE})")
    parser.add_argument("--sources", type=Path, default=None, help="apt sources file (default: the host's)")
    parser.add_argument("--packages", default="", help="extra Debian packages, comma separated")
    parser.add_argument("-v", "--verbose", action="store_true", help="show mmdebstrap's output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    recipe = Recipe(sources=args.sources or default_sources(),
                    extra_packages=tuple(p for p in args.packages.replace(" ", ",").split(",") if p))
    t0 = time.monotonic()
    try:
        image = asyncio.run(ensure(args.cache, recipe))
    except Unavailable as exc:
        print(f"error: {exc}")
        return 1
    print(f"{image.dir} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
