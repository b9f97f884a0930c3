"""The image build: cached and reused, and never a mount left behind, even when it fails or is
cancelled midway (mmdebstrap runs in a private mount namespace). These run mmdebstrap against
the host's apt mirror, as root, in a private cache directory; the cached image itself is
checked in the machine-wide cache the VM tests use."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from dockyard.errors import Unavailable
from dockyard.mounts import read_mounts
from dockyard_plugin_sdk.testing import async_wait_for
from dockyard_provision_qemu import image

pytestmark = pytest.mark.vm


@pytest.fixture(autouse=True)
def _can_build() -> None:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root")
    if image.missing_tools():
        pytest.skip(f"building the image needs {', '.join(image.missing_tools())}")


def mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [m.point for m in read_mounts() if m.point.startswith(prefix)]


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_the_cached_image_is_reused_and_complete(qemu_session) -> None:
    """The session built (or found) the image; asking again returns at once, and it holds what
    a direct kernel boot needs, the engine's packages and no SSH host key."""
    t0 = time.monotonic()
    img = await image.ensure(qemu_session.driver.cache, qemu_session.driver.recipe)
    assert time.monotonic() - t0 < 5.0  # found, not built again (a build takes minutes)
    assert img.complete() and img.dir.name.startswith("bookworm-")
    info = img.info()
    assert info["key"] == img.key and info["kernel"].endswith("-cloud-amd64")
    installed = {line.split()[0] for line in img.manifest.read_text().splitlines()}
    assert set(image.PACKAGES) <= installed
    assert oct(img.base.stat().st_mode & 0o777) == "0o444"
    assert not list(img.dir.parent.glob(f".tmp-{img.key[:16]}-*")), "a finished build left its directory"


async def test_a_failed_build_says_why_and_leaves_no_mount_and_no_directory(tmp_path: Path) -> None:
    """A mirror nobody answers on (port 9 of this machine): mmdebstrap fails at once."""
    cache = tmp_path / "cache"
    sources = tmp_path / "sources.list"
    sources.write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    recipe = image.Recipe(sources=sources)
    with pytest.raises(Unavailable, match="the image build failed: mmdebstrap exited") as err:
        await image.ensure(cache, recipe)
    assert "127.0.0.1" in str(err.value)  # the tail of its output names what failed
    assert not mounts_below(cache)
    assert [p.name for p in cache.iterdir()] == [f".lock-{recipe.key()[:16]}"]


async def test_a_cancelled_build_leaves_no_mount_no_process_and_no_directory(tmp_path: Path) -> None:
    """Cancelled once mmdebstrap has mounted /proc in its chroot (seen from its own mount
    namespace): its process group is killed, the namespace and its mounts go with it, and the
    temporary directory is deleted. The host's mount table never saw a mount."""
    cache = tmp_path / "cache"
    task = asyncio.create_task(image.ensure(cache, image.Recipe()))

    def chroot_proc_mounted() -> bool:
        if task.done():
            raise AssertionError(f"the build ended early: {task.exception() or 'finished'}")
        for pid in processes_naming(str(cache)):
            try:
                if "/rootfs/proc " in Path(f"/proc/{pid}/mountinfo").read_text():
                    return True
            except OSError:
                continue
        return False

    try:
        await async_wait_for(chroot_proc_mounted, 180, "mmdebstrap to mount /proc in its chroot")
        assert not mounts_below(cache), "the build's mounts are visible outside its namespace"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not mounts_below(cache)
    assert not [p for p in cache.iterdir() if not p.name.startswith(".lock-")]
    await async_wait_for(lambda: not processes_naming(str(cache)), 10, "the build's processes to exit")
