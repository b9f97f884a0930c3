"""Platforms through the real docker CLI and the API (issue 19 items 1, 4): ``create --platform``
(the ``platform`` parameter) takes an image of that platform or one it runs and answers dockerd's
404 otherwise; ``image inspect`` shows the config's Os/Architecture/Variant; ``/info`` reports
the runtime driver's platforms and ``OSType`` from it. The arm64 image is synthetic (a small
layer, a config saying arm64): nothing foreign runs here (emulation is another item)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard import errors as e
from dockyard_plugin_sdk.testing import Daemon

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("the image store's layer drivers need root", allow_module_level=True)


def synthetic_archive(path: Path, tag: str, arch: str, variant: str = "") -> str:
    """A docker-archive of a one-layer image for ``linux/arch[/variant]``; returns its ID."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        data = f"built for {arch}\n".encode()
        ti = tarfile.TarInfo("etc/platform")
        ti.size, ti.mtime = len(data), 946684800
        tf.addfile(ti, io.BytesIO(data))
    raw_layer = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(raw_layer).hexdigest()
    config = {"architecture": arch, "os": "linux", "created": "2000-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/true"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": "2000-01-01T00:00:00Z", "created_by": "synthetic"}]}
    if variant:
        config["variant"] = variant
    raw_config = json.dumps(config, sort_keys=True).encode()
    image_id = hashlib.sha256(raw_config).hexdigest()
    with tarfile.open(path, "w") as tf:
        for name, blob in ((f"{image_id}.json", raw_config), (f"{diff_id[7:]}/layer.tar", raw_layer),
                           ("manifest.json", json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                                                          "Layers": [f"{diff_id[7:]}/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(blob)
            tf.addfile(ti, io.BytesIO(blob))
    return "sha256:" + image_id


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, start_dockyardd: Callable[..., Daemon]) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("platforms")
    d = start_dockyardd(root / "d")
    d.dockyard("image", "bootstrap", "busybox")
    for tag, arch, variant in (("armbox:1", "arm64", "v8"), ("pibox:1", "arm", "v7")):
        synthetic_archive(root / f"{arch}.tar", tag, arch, variant)
        d.docker("load", "-i", str(root / f"{arch}.tar"))
    yield d
    d.remove_all_containers()
    assert d.stop() == 0


def test_inspect_shows_the_platform(daemon: Daemon) -> None:
    fmt = "{{.Os}}/{{.Architecture}}/{{.Variant}}"
    assert daemon.docker("image", "inspect", "--format", fmt, "armbox:1").stdout.strip() == "linux/arm64/v8"
    assert daemon.docker("image", "inspect", "--format", fmt, "pibox:1").stdout.strip() == "linux/arm/v7"


@pytest.mark.parametrize(("image", "platform"), [
    ("armbox:1", "linux/arm64"), ("armbox:1", "linux/aarch64"), ("armbox:1", "linux/arm64/v8"),
    ("pibox:1", "linux/arm/v7"), ("pibox:1", "linux/arm64"),  # an arm64 host runs 32-bit arm
    ("busybox", "linux/amd64"), ("busybox", "linux/x86_64"),
])
def test_create_takes_an_image_of_the_platform_or_one_it_runs(daemon: Daemon, image: str, platform: str) -> None:
    cid = daemon.docker("create", "--platform", platform, image, "true").stdout.strip()
    daemon.docker("rm", cid)


@pytest.mark.parametrize(("image", "platform", "actual"), [
    ("busybox", "linux/arm64", "linux/amd64"),
    ("armbox:1", "linux/amd64", "linux/arm64"),
    ("armbox:1", "linux/arm/v7", "linux/arm64"),
    ("pibox:1", "linux/arm/v6", "linux/arm/v7"),  # v6 does not run v7
])
def test_another_platform_is_dockerds_404(daemon: Daemon, image: str, platform: str, actual: str) -> None:
    with pytest.raises(e.NotFound) as info:
        daemon.client().post("/containers/create", {"Image": image, "Cmd": ["true"]}, platform=platform)
    assert str(info.value) == (f"image with reference {image} was found but does not match the specified "
                               f"platform: wanted {platform}, actual: {actual}")


def test_a_malformed_platform_is_a_400(daemon: Daemon) -> None:
    with pytest.raises(e.InvalidArgument, match="invalid component"):
        daemon.client().post("/containers/create", {"Image": "busybox"}, platform="linux/&arm")


def test_info_reports_the_runtime_platforms(daemon: Daemon) -> None:
    info = daemon.client().get("/info")
    assert info["OSType"] == "linux"
    assert info["DockyardPlatforms"][0] == {"Platform": "linux/amd64", "Emulated": False}
    assert daemon.docker("info", "--format", "{{.OSType}}").stdout.strip() == "linux"
