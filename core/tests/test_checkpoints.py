"""dockyard.checkpoints: the portable archive layout (podman's), read hostile-archive safe."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard import checkpoints as layout
from dockyard.errors import InvalidArgument


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], compress: bool = True) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(buf.getvalue()) if compress else buf.getvalue())
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _good() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    status = layout.network_status({"podman": layout.Address("10.88.0.5/16", "10.88.0.1", "aa:bb:cc:dd:ee:ff")})
    return [_file("checkpoint/inventory.img", b"x"),
            _file("config.dump", json.dumps({"id": "c1", "name": "n", "rootfsImageID": "abc"}).encode()),
            _file("spec.dump", b"{}"), _file("network.status", json.dumps(status).encode()),
            _file("deleted.files", b'["/etc/motd"]')]


def test_a_good_archive_is_read(tmp_path: Path) -> None:
    arc = layout.read_archive(_archive(tmp_path / "a.tar.gz", _good()), tmp_path / "x")
    assert arc.config["name"] == "n" and arc.ours is None
    assert arc.networks["podman"].ip == "10.88.0.5" and arc.networks["podman"].mac == "aa:bb:cc:dd:ee:ff"
    assert arc.deleted == ["/etc/motd"] and (arc.images / "inventory.img").read_bytes() == b"x"
    plain = layout.read_archive(_archive(tmp_path / "b.tar", _good(), compress=False), tmp_path / "y")
    assert plain.config["id"] == "c1"


@pytest.mark.parametrize("member", [
    _file("../escape", b"x"),
    _file("/etc/evil", b"x"),
    _file("checkpoint/../../escape", b"x"),
])
def test_names_that_leave_the_archive_are_refused(tmp_path: Path, member: tuple[tarfile.TarInfo, bytes]) -> None:
    with pytest.raises(InvalidArgument):
        layout.read_archive(_archive(tmp_path / "a.tar.gz", [member, *_good()]), tmp_path / "x")
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("checkpoint")
    link.type, link.linkname = kind, "/etc"  # an absolute symlink a later member would write through
    with pytest.raises(InvalidArgument, match="only files and directories"):
        layout.read_archive(_archive(tmp_path / "a.tar.gz", [(link, None), *_good()]), tmp_path / "x")


def test_an_archive_without_a_dump_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="inventory.img"):
        layout.read_archive(_archive(tmp_path / "a.tar.gz", _good()[1:]), tmp_path / "x")


def test_a_containers_documents_are_read_before_its_dump(tmp_path: Path) -> None:
    """A migration's target gets config.dump and network.status before the source freezes
    anything: read_documents reads them without checkpoint/ (read_archive still wants it)."""
    from dockyard.model import Container, ContainerConfig, EndpointSettings, HostConfig

    c = Container(id="c" * 64, name="/kv", image_id="sha256:" + "a" * 64, config=ContainerConfig(image="busybox", cmd=["sh"]),
                  host_config=HostConfig(runtime="runc"))
    c.networks = {"bridge": EndpointSettings(ipv4_address="172.17.0.5", ip_prefix_len=16, gateway="172.17.0.1",
                                             mac_address="02:42:ac:11:00:05")}
    for member, doc in layout.container_documents(c, {"ociVersion": "1.0.2"}).items():
        (tmp_path / member).write_text(json.dumps(doc))
    arc = layout.read_documents(tmp_path)
    assert arc.ours is not None and arc.ours["name"] == "/kv"
    assert arc.config["rootfsImageID"] == "a" * 64 and arc.config["spec"] == {"ociVersion": "1.0.2"}
    assert arc.networks["bridge"].ip == "172.17.0.5" and arc.networks["bridge"].gateway == "172.17.0.1"
    with pytest.raises(InvalidArgument, match="inventory.img"):
        layout.read_archive(tmp_path, tmp_path)


def test_deleted_files_never_follow_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("binary")
    (root / "bin" / "vi").symlink_to("/bin/busybox")
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (root / "bin" / "up").symlink_to(str(outside))
    arc = layout.Archive(root=tmp_path, deleted=["/bin/vi", "/bin/up", "/../outside"])
    layout.apply_rootfs_diff(arc, root)
    assert not (root / "bin" / "vi").is_symlink() and (root / "bin" / "busybox").read_text() == "binary"
    assert outside.read_text() == "keep"


def test_a_layer_diff_becomes_rootfs_diff_and_deleted_files(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tf:
        for name, data in (("made", b"hello"), ("etc/.wh.motd", b""), ("tmp/.wh..wh..opq", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    deleted = layout.layer_to_rootfs_diff(layer, tmp_path / "rootfs-diff.tar", root_mode=0o555)
    assert deleted == ["/etc/motd"]
    with tarfile.open(tmp_path / "rootfs-diff.tar") as tf:
        assert [(m.name, oct(m.mode)) for m in tf][0] == (".", "0o555")
        assert [m.name for m in tf][1:] == ["made"]
