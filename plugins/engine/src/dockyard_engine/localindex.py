"""The offline busybox of a foreign architecture (issue 19 item 2): Debian's ``busybox-static``
for arm64 and armhf, fetched once by ``make install`` (``tools/foreign-busybox.sh``) into
:func:`busybox_dir` ``/<arm64|arm-v7>/busybox``, checked (ELF machine) and listed through
qemu-user for ``dockyard image bootstrap busybox --platform``; the image joins the tag's index
(:func:`dockyard_engine.imageindex.add_to_tag`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dockyard import platforms
from dockyard.errors import InvalidArgument, NotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: ELF e_machine per OCI architecture (what a busybox binary must be to be tagged so).
ELF_MACHINES = {"amd64": 0x3E, "386": 0x03, "arm64": 0xB7, "arm": 0x28, "riscv64": 0xF3, "ppc64le": 0x15,
                "s390x": 0x16}
#: OCI architecture -> qemu-user's machine name (for running a foreign busybox ``--list``).
QEMU = {"arm64": "aarch64", "arm": "arm", "riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x",
        "amd64": "x86_64", "386": "i386"}


def busybox_dir() -> Path:
    return Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox")


def elf_machine(path: str) -> int:
    """The ELF ``e_machine`` of ``path`` (0 when it is no ELF)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return 0
    return int.from_bytes(head[18:20], "big" if head[5] == 2 else "little")


def foreign_busybox(plat: platforms.Platform) -> str:
    """The cached static busybox for ``plat`` (``<dir>/arm64/busybox``, ``<dir>/arm-v7/busybox``)."""
    name = plat.architecture + (f"-{plat.variant}" if plat.variant else "")
    path = busybox_dir() / name / "busybox"
    if not path.is_file():
        raise NotFound(f"no busybox for {plat} in {path.parent}: run `make install` (tools/foreign-busybox.sh "
                       f"fetches Debian's busybox-static for arm64 and armhf)")
    return str(path)


def check_binary(path: str, plat: platforms.Platform) -> None:
    want = ELF_MACHINES.get(plat.architecture)
    got = elf_machine(path)
    if want is not None and got != want:
        raise InvalidArgument(f"{path} is not a {plat} executable (ELF machine {got:#x}, {plat} is {want:#x})")


def runner(plat: platforms.Platform) -> list[str]:
    """How to run a busybox of ``plat`` on this host for ``--list``: directly when native, else
    through qemu-user (no binfmt registration needed)."""
    if platforms.only(platforms.host()).match(plat):
        return []
    qemu = shutil.which(f"qemu-{QEMU.get(plat.architecture, plat.architecture)}-static")
    if qemu is None:
        raise NotFound(f"qemu-{QEMU.get(plat.architecture, plat.architecture)}-static not found: install "
                       f"qemu-user-static to bootstrap a {plat} image")
    return [qemu]


__all__ = ["busybox_dir", "check_binary", "elf_machine", "foreign_busybox", "runner"]
