"""The image service on a fresh kernel with a real layer driver (overlay and vfs), tmp roots.

Archives are built here byte by byte, so every hostile case is exactly the one named: each must
be refused with a clear error, write nothing outside the store, and leave the store (records,
blobs, driver layers, files under the data root) exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dockyard_storage_vfs")

from dockyard.config import Config  # noqa: E402
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound  # noqa: E402
from dockyard.kernel import Kernel  # noqa: E402
from dockyard.model import Container, ContainerConfig, ContainerState, ContainerStatus, HostConfig, new_id  # noqa: E402
from dockyard.services.images import ImageLayer, chain_ids  # noqa: E402
from dockyard.specs import hookimpl  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("layer drivers need root (ownership, overlay mounts)", allow_module_level=True)


# ------------------------------------------------------------------------------ archive builders
def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def entry(name: str, data: bytes | None = b"", kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.linkname = link
    ti.mtime = 1_700_000_000
    return ti, (data if kind == tarfile.REGTYPE else None)


def layer(files: dict[str, bytes]) -> bytes:
    return tar_bytes([entry(n, d) for n, d in sorted(files.items())])


def config_for(layers: list[bytes], cmd: list[str] | None = None, **extra: Any) -> bytes:
    doc = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
           "config": {"Cmd": cmd or ["sh"], "Labels": {"t": "1"}},
           "rootfs": {"type": "layers", "diff_ids": [sha(lay) for lay in layers]},
           "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))]}
    doc.update(extra)
    return json.dumps(doc, sort_keys=True).encode()


def docker_archive(layers: list[bytes], tags: list[str] | None = None, config: bytes | None = None,
                   config_name: str | None = None, layer_names: list[str] | None = None,
                   extra: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
                   skip: set[str] | None = None) -> bytes:
    config = config if config is not None else config_for(layers)
    cname = config_name or (sha(config)[7:] + ".json")
    names = layer_names or [f"{sha(lay)[7:]}/layer.tar" for lay in layers]
    manifest = [{"Config": cname, "RepoTags": tags if tags is not None else ["test/img:1"], "Layers": names}]
    entries = [entry(cname, config)]
    for name, lay in zip(names, layers, strict=False):
        if name not in (skip or set()):
            entries.append(entry(name, lay))
    entries.append(entry("manifest.json", json.dumps(manifest).encode()))
    entries += extra or []
    return tar_bytes(entries)


def oci_archive(layers: list[bytes], name: str = "", compress: bool = True,
                tamper: str = "") -> bytes:
    blobs: dict[str, bytes] = {}
    descs = []
    for lay in layers:
        data = gzip.compress(lay, mtime=0) if compress else lay
        blobs[sha(data)] = data
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(data),
                      "size": len(data)})
    config = config_for(layers)
    blobs[sha(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    desc: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                            "size": len(manifest)}
    if name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": name}
    index = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
    entries = [entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), entry("index.json", index)]
    for d, data in blobs.items():
        if tamper and d == sha(layers[0] if not compress else gzip.compress(layers[0], mtime=0)):
            data = data[:-1] + bytes([data[-1] ^ 1])
        entries.append(entry("blobs/sha256/" + d[7:], data))
    return tar_bytes(entries)


# ------------------------------------------------------------------------------ fixtures
class Recorder:
    def __init__(self) -> None:
        self.refuse: str | None = None
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def dockyard_image_admit(self, kernel: Any, image: Any, source: str) -> None:
        self.seen.append((image.id, source))
        if self.refuse is not None:
            raise DockyardError(self.refuse)


@pytest.fixture(params=["overlay", "vfs"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "overlay":
        pytest.importorskip("dockyard_storage_overlay")
    rec = Recorder()
    kernel = Kernel.build(Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                                         "storage-driver": request.param}), plugins=[rec], autoload=False)
    kernel.open_store()
    try:
        await kernel.driver_ready("storage")
    except DockyardError as exc:
        pytest.skip(f"{request.param} unavailable here: {exc}")
    svc = kernel.images
    await svc.start()
    w = type("World", (), {})()
    w.kernel, w.svc, w.rec, w.tmp = kernel, svc, rec, tmp_path
    w.outside = tmp_path / "outside"
    w.outside.mkdir()
    yield w
    await w.kernel.stop()


async def snapshot(w: Any) -> dict[str, Any]:
    drv = await w.svc.driver()
    root = w.kernel.config.data_root
    files = set()
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if not rel.startswith("state.db"):
                files.add(rel)
    return {"images": sorted((i.id, tuple(i.repo_tags)) for i in w.svc.list()),
            "layers": sorted(r.id for r in w.kernel.open_store().list(ImageLayer)),
            "blobs": w.svc.content.list(), "driver": await drv.list(), "files": files}


def up(w: Any) -> str:
    """A relative path from any layer root to the test's ``outside`` directory."""
    return "../" * 40 + str(w.outside).lstrip("/")


# ------------------------------------------------------------------------------ loading
async def test_load_docker_archive_and_save_round_trip(world: Any) -> None:
    w = world
    l1, l2 = layer({"a.txt": b"one"}), layer({"b.txt": b"two", "a.txt": b"changed"})
    lines = await w.svc.load(docker_archive([l1, l2], tags=["test/img:1", "test/img:2"]))
    assert lines == ["Loaded image: test/img:1", "Loaded image: test/img:2"]
    img = w.svc.resolve("test/img:1")
    assert img.id == sha(config_for([l1, l2]))
    assert img.repo_tags == ["docker.io/test/img:1", "docker.io/test/img:2"]
    assert img.layers == [sha(l1), sha(l2)] and img.size == 3 + 3 + 7
    assert img.config.cmd == ["sh"] and img.config.labels == {"t": "1"}
    for ref in (img.id, img.id[7:19], img.id[:14], "docker.io/test/img:2", "test/img:1"):
        assert w.svc.resolve(ref).id == img.id
    with pytest.raises(NotFound, match="No such image: test/img:3"):
        w.svc.resolve("test/img:3")
    # The merged view of the top layer.
    drv = await w.svc.driver()
    top = chain_ids(img.layers)[-1]
    assert await drv.exists(top)
    # Save and load into a second store: same image ID, same blobs.
    chunks: list[bytes] = []
    await w.svc.save(["test/img:1"], chunks.append)
    archive = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["test/img:1"] and manifest[0]["Config"] == img.id[7:] + ".json"
    assert "repositories" in names and len(manifest[0]["Layers"]) == 2
    await w.svc.remove("test/img:2")
    await w.svc.remove("test/img:1")
    assert w.svc.list() == [] and w.svc.content.list() == [] and await drv.list() == []
    assert await w.svc.load(archive) == ["Loaded image: test/img:1"]
    assert w.svc.resolve("test/img:1").id == img.id
    actions = [(e.action, e.actor_id) for e in w.kernel.events.history if e.type == "image"]
    assert ("load", img.id) in actions and ("save", img.id) in actions
    assert ("untag", img.id) in actions and ("delete", img.id) in actions


async def test_load_oci_layout_gzip_layers(world: Any) -> None:
    w = world
    l1 = layer({"etc/hello": b"hi"})
    assert await w.svc.load(oci_archive([l1], name="docker.io/library/oci-test:v1")) == \
        ["Loaded image: oci-test:v1"]
    img = w.svc.resolve("oci-test:v1")
    assert img.layers == [sha(l1)] and img.manifest_digest.startswith("sha256:")
    # Unnamed (skopeo's oci-archive:X.tar without a reference): loaded by ID.
    l2 = layer({"x": b"y"})
    lines = await w.svc.load(oci_archive([l2], compress=False))
    assert lines == [f"Loaded image ID: {sha(config_for([l2]))}"]
    # The layer blob kept is the uncompressed tar: save works from it.
    chunks: list[bytes] = []
    await w.svc.save(["oci-test:v1"], chunks.append)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        m = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert tf.extractfile(m[0]["Layers"][0]).read() == l1  # type: ignore[union-attr]


async def test_gzipped_archive_and_shared_layers(world: Any) -> None:
    w = world
    base = layer({"base": b"b" * 100})
    await w.svc.load(gzip.compress(docker_archive([base], tags=["a:1"])))
    await w.svc.load(docker_archive([base, layer({"top": b"t"})], tags=["b:1"]))
    df = w.svc.df()
    shared = {img.repo_tags[0]: s for img, _n, s in df["images"]}
    assert shared == {"docker.io/library/a:1": 100, "docker.io/library/b:1": 100}
    assert df["layers_size"] == 101
    await w.svc.remove("a:1")
    drv = await w.svc.driver()
    assert chain_ids([sha(base)])[0] in await drv.list()  # still used by b:1


# ------------------------------------------------------------------------------ hostile archives
def _hostile(w: Any, case: str) -> tuple[bytes, str]:
    """``(archive, expected error fragment)`` for hostile case ``case``."""
    good = layer({"ok": b"fine"})
    out = up(w)
    if case == "tar-slip":
        return docker_archive([layer({"../../../../evil": b"x"})]), "'..'"
    if case == "absolute-path":
        return docker_archive([layer({str(w.outside / "abs"): b"x"})]), "absolute path"
    if case == "symlink-then-file":
        lay = tar_bytes([entry("link", kind=tarfile.SYMTYPE, link=str(w.outside)), entry("link/pwned", b"x")])
        return docker_archive([lay]), "link"
    if case == "symlink-relative-escape":
        lay = tar_bytes([entry("up", kind=tarfile.SYMTYPE, link=out), entry("up/pwned", b"x")])
        return docker_archive([lay]), "link"
    if case == "hardlink-outside":
        lay = tar_bytes([entry("h", kind=tarfile.LNKTYPE, link="../../../../../etc/passwd")])
        return docker_archive([lay]), "'..'"
    if case == "wrong-layer-digest":
        cfg = config_for([layer({"other": b"1"})])
        return docker_archive([good], config=cfg), "layer digest mismatch"
    if case == "wrong-config-digest":
        return docker_archive([good], config_name="ab" * 32 + ".json"), "config digest mismatch"
    if case == "manifest-missing-blob":
        return docker_archive([good], skip={f"{sha(good)[7:]}/layer.tar"}), "missing from the archive"
    if case == "truncated-tar":
        big = layer({"big": os.urandom(3 << 20)})
        data = docker_archive([big])
        return data[: len(data) // 2], "truncated"
    if case == "duplicate-entries":
        return docker_archive([good], extra=[entry("manifest.json", b"[]")]), "duplicate entry"
    if case == "huge-header-size":
        ti, _ = entry("huge.bin")
        ti.size = 1 << 40
        buf = io.BytesIO()
        buf.write(ti.tobuf(tarfile.PAX_FORMAT))
        buf.write(b"\0" * 4096)
        return docker_archive([good])[:-1024] + buf.getvalue(), "truncated"
    if case == "whiteout-escape":
        return docker_archive([layer({"ok": b"1"}), layer({"../.wh.ok": b""})]), "'..'"
    if case == "whiteout-dotdot":
        return docker_archive([layer({"ok": b"1"}), layer({"a/.wh...": b""})]), "whiteout"
    if case == "device-node":
        ti, _ = entry("dev/mem", kind=tarfile.CHRTYPE)
        ti.devmajor, ti.devminor = 1, 1
        return docker_archive([tar_bytes([(ti, None)])]), "device"
    if case == "outer-tar-slip":
        data = docker_archive([good], extra=[entry("../../escape", b"x")])
        return data, "unsafe archive member"
    if case == "outer-absolute":
        return docker_archive([good], extra=[entry(str(w.outside / "x"), b"x")]), "unsafe archive member"
    if case == "outer-device":
        ti, _ = entry("dev", kind=tarfile.CHRTYPE)
        return docker_archive([good], extra=[(ti, None)]), "unexpected entry type"
    if case == "outer-link-escape":
        return docker_archive([good], layer_names=["l/layer.tar"], skip={"l/layer.tar"},
                              extra=[entry("l/layer.tar", kind=tarfile.SYMTYPE, link="../../outside.tar")]), \
            "outside the archive"
    if case == "corrupt-header":
        data = docker_archive([good])
        end = len(data) - 1024 * 5
        return data[:end] + b"\x01" * 512 + b"\0" * (1024 * 5 - 512), "corrupt or truncated"
    if case == "oci-tampered-blob":
        return oci_archive([good], tamper="x"), "digest mismatch"
    if case == "config-not-json":
        cfg = b"{not json"
        return docker_archive([good], config=cfg), "invalid image config"
    if case == "not-a-tar":
        return b"hello, this is no archive" * 100, "invalid archive"
    if case == "second-layer-bad":  # the first layer applies, the second is refused: roll back
        return docker_archive([layer({"fine": b"1"}), layer({"../x": b"2"})]), "'..'"
    raise AssertionError(case)


HOSTILE = ["tar-slip", "absolute-path", "symlink-then-file", "symlink-relative-escape", "hardlink-outside",
           "wrong-layer-digest", "wrong-config-digest", "manifest-missing-blob", "truncated-tar",
           "duplicate-entries", "huge-header-size", "whiteout-escape", "whiteout-dotdot", "device-node",
           "outer-tar-slip", "outer-absolute", "outer-device", "outer-link-escape", "corrupt-header",
           "oci-tampered-blob", "config-not-json", "not-a-tar", "second-layer-bad"]


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_archive_is_refused_and_changes_nothing(world: Any, case: str) -> None:
    w = world
    await w.svc.load(docker_archive([layer({"keep": b"k"})], tags=["keep:1"]))
    before = await snapshot(w)
    archive, fragment = _hostile(w, case)
    with pytest.raises(InvalidArgument) as info:
        await w.svc.load(archive)
    assert fragment.lower() in str(info.value).lower(), str(info.value)
    assert await snapshot(w) == before
    assert list(w.outside.iterdir()) == []
    assert not any(e.action == "load" and e.actor_id != w.svc.resolve("keep:1").id
                   for e in w.kernel.events.history)


async def test_hostile_import_is_refused(world: Any) -> None:
    w = world
    before = await snapshot(w)
    for data in (layer({"../slip": b"x"}), tar_bytes([entry("l", kind=tarfile.SYMTYPE, link=str(w.outside)),
                                                       entry("l/x", b"1")]), b""):
        with pytest.raises(InvalidArgument):
            await w.svc.import_image(data, repo="bad", tag="1")
    assert await snapshot(w) == before
    assert list(w.outside.iterdir()) == []


async def test_admit_hook_refusal_leaves_store_unchanged(world: Any) -> None:
    w = world
    before = await snapshot(w)
    w.rec.refuse = "signature check failed"
    with pytest.raises(DockyardError, match="signature check failed"):
        await w.svc.load(docker_archive([layer({"a": b"1"})]))
    assert await snapshot(w) == before
    w.rec.refuse = None
    await w.svc.load(docker_archive([layer({"a": b"1"})]))
    assert [s for _i, s in w.rec.seen] == ["load", "load"]


# ------------------------------------------------------------------------------ import, bootstrap, commit
async def test_import_with_changes(world: Any) -> None:
    w = world
    rootfs = gzip.compress(layer({"bin/tool": b"#!/bin/sh\n", "etc/conf": b"c"}))
    img = await w.svc.import_image(rootfs, repo="docker.io/library/imp", tag="v2", message="from test",
                                   changes=['CMD ["tool","--x"]', "ENV A=1 B=two", "ENTRYPOINT /bin/sh",
                                            "WORKDIR /srv", "EXPOSE 80 53/udp", 'LABEL k=v "x y"=z',
                                            "USER nobody", 'VOLUME ["/data"]'])
    assert img.repo_tags == ["docker.io/library/imp:v2"] and img.comment == "from test"
    c = img.config
    assert c.cmd == ["tool", "--x"] and c.env == ["A=1", "B=two"] and c.entrypoint == ["/bin/sh", "-c", "/bin/sh"]
    assert c.working_dir == "/srv" and c.exposed_ports == ["53/udp", "80/tcp"] and c.labels == {"k": "v", "x y": "z"}
    assert c.user == "nobody" and c.volumes == ["/data"]
    assert w.svc.history("imp:v2")[0]["Comment"] == "from test"
    with pytest.raises(InvalidArgument, match="not a valid change"):
        await w.svc.import_image(layer({"a": b"1"}), changes=["RUN rm -rf /"])
    actions = [e.action for e in w.kernel.events.history if e.type == "image"]
    assert actions[-2:] == ["import", "tag"]


async def test_bootstrap_busybox_is_offline_and_reproducible(world: Any) -> None:
    w = world
    if not os.access("/bin/busybox", os.X_OK):
        pytest.skip("busybox-static is not installed")
    img = await w.svc.bootstrap("busybox")
    assert img.repo_tags == ["docker.io/library/busybox:latest"] and img.config.cmd == ["sh"]
    again = await w.svc.bootstrap("busybox")
    assert again.id == img.id and len(w.svc.list()) == 1
    drv = await w.svc.driver()
    root = Path(await drv.mount(w.svc.top_layer(img)))
    try:
        assert os.readlink(root / "bin" / "sh") == "busybox"
        assert (root / "bin" / "busybox").stat().st_size == Path("/bin/busybox").stat().st_size
        assert "nobody:x:65534" in (root / "etc" / "passwd").read_text()
        assert (root / "etc" / "group").read_text().startswith("root:x:0:")
        for d in ("tmp", "root", "proc", "sys", "dev"):
            assert (root / d).is_dir()
        assert (root / "tmp").stat().st_mode & 0o1777 == 0o1777
    finally:
        await drv.unmount(w.svc.top_layer(img))
    # A fresh store builds the very same image.
    await w.svc.remove("busybox")
    assert (await w.svc.bootstrap("busybox")).id == img.id


async def test_commit_container_layer(world: Any) -> None:
    w = world
    await w.svc.load(docker_archive([layer({"etc/base": b"base"})], tags=["base:1"]))
    base = w.svc.resolve("base:1")
    cid = new_id()
    root = Path(await w.svc.prepare_rootfs(cid, "base:1"))
    (root / "new.txt").write_text("added")
    os.unlink(root / "etc" / "base")
    container = Container(id=cid, name="c1", image_id=base.id,
                          config=ContainerConfig(image="base:1", cmd=["sh", "-c", "true"], env=["X=1"]),
                          host_config=HostConfig())
    img = await w.svc.commit(container=container, repo="committed", tag="v1", author="me", comment="msg",
                             changes=["ENV Y=2"])
    assert img.parent == base.id and img.layers[0] == base.layers[0] and len(img.layers) == 2
    assert img.author == "me" and img.comment == "msg" and img.config.env == ["X=1", "Y=2"]
    assert w.svc.history("committed:v1")[0]["CreatedBy"] == "sh -c true"
    assert w.svc.history("committed:v1")[0]["Id"] == img.id
    assert w.svc.history("committed:v1")[1]["Id"] == base.id
    # Its layer holds the change and the deletion as a whiteout.
    with tarfile.open(w.svc.content.path(img.layers[1])) as tf:
        names = tf.getnames()
    assert "new.txt" in names and "etc/.wh.base" in names
    # The base is the committed image's parent: a hard conflict even with force.
    with pytest.raises(Conflict, match="image has dependent child images"):
        await w.svc.remove(base.id, force=True)
    await w.svc.remove_rootfs(cid)
    # Removing the child prunes the (untagged) parent too, unless noprune.
    await w.svc.remove("base:1")
    assert w.svc.resolve(base.id).repo_tags == []
    records = await w.svc.remove("committed:v1")
    assert {"Deleted": img.id} in records and {"Deleted": base.id} in records
    assert w.svc.list() == [] and w.svc.content.list() == []


async def test_a_containers_removal_collects_what_an_image_removal_left(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image removed with ``-f`` while a container's layer builds on it keeps its layers
    until that container's removal collects them; a removal with nothing left to collect does
    not list every image, layer and blob again (``_gc_owed``)."""
    w = world
    await w.svc.load(docker_archive([layer({"a": b"1"})], tags=["gone:1"]))
    img = w.svc.resolve("gone:1")
    drv = await w.svc.driver()
    cid = new_id()
    await w.svc.prepare_rootfs(cid, "gone:1")
    c = _container(w, img.id)
    assert {"Deleted": img.id} in await w.svc.remove("gone:1", force=True)
    assert chain_ids(img.layers)[0] in await drv.list()  # kept: the container's layer builds on it
    with w.kernel.open_store().transaction() as tx:
        tx.delete(Container, c.id)
    await w.svc.remove_rootfs(cid)
    assert await drv.list() == [] and w.svc.content.list() == []

    await w.svc.load(docker_archive([layer({"b": b"2"})], tags=["kept:1"]))
    runs: list[int] = []
    real_gc = w.svc.gc

    async def counted_gc(*args: Any, **kwargs: Any) -> int:
        runs.append(1)
        return int(await real_gc(*args, **kwargs))

    monkeypatch.setattr(w.svc, "gc", counted_gc)
    cid = new_id()
    await w.svc.prepare_rootfs(cid, "kept:1")
    await w.svc.remove_rootfs(cid)
    assert runs == [] and await drv.list() == [chain_ids(w.svc.resolve("kept:1").layers)[-1]]


# ------------------------------------------------------------------------------ tags, rmi, prune
def _container(w: Any, image_id: str, running: bool = False) -> Container:
    c = Container(id=new_id(), name=f"c{new_id()[:6]}", image_id=image_id, config=ContainerConfig(image="x"),
                  host_config=HostConfig(),
                  state=ContainerState(status=ContainerStatus.RUNNING if running else ContainerStatus.EXITED))
    with w.kernel.open_store().transaction() as tx:
        tx.put(c)
    return c


async def test_tag_and_remove_rules(world: Any) -> None:
    w = world
    await w.svc.load(docker_archive([layer({"a": b"1"})], tags=["busybox:latest"]))
    img = w.svc.resolve("busybox")
    await w.svc.tag("busybox", "docker.io/library/other", "t")
    assert w.svc.resolve("other:t").id == img.id
    # Two tags: removing one only untags.
    assert await w.svc.remove("other:t") == [{"Untagged": "other:t"}]
    c = _container(w, img.id)
    with pytest.raises(Conflict) as info:
        await w.svc.remove("busybox")
    assert str(info.value) == (f'conflict: unable to remove repository reference "busybox" (must force) - '
                               f"container {c.id[:12]} is using its referenced image {img.id[7:19]}")
    with pytest.raises(Conflict, match="must be forced.*stopped container"):
        await w.svc.remove(img.id[7:19])
    # Force by name with only a stopped container: untagged and deleted (as dockerd).
    records = await w.svc.remove("busybox", force=True)
    assert records[0] == {"Untagged": "busybox:latest"} and {"Deleted": img.id} in records
    # A running container keeps the image (dangling) even with force.
    await w.svc.load(docker_archive([layer({"b": b"2"})], tags=["run:1"]))
    img2 = w.svc.resolve("run:1")
    _container(w, img2.id, running=True)
    assert await w.svc.remove("run:1", force=True) == [{"Untagged": "run:1"}]
    assert w.svc.resolve(img2.id).repo_tags == []
    with pytest.raises(Conflict, match="cannot be forced.*running container"):
        await w.svc.remove(img2.id, force=True)
    with pytest.raises(NotFound, match="No such image: nothere:1"):
        await w.svc.remove("nothere:1")


async def test_tag_moves_and_prune(world: Any) -> None:
    w = world
    await w.svc.load(docker_archive([layer({"a": b"1"})], tags=["app:1"]))
    old = w.svc.resolve("app:1")
    lines = await w.svc.load(docker_archive([layer({"a": b"2"})], tags=["app:1"]))
    assert lines[0] == f"The image app:1 already exists, renaming the old one with ID {old.id} to empty string"
    assert w.svc.resolve(old.id).repo_tags == []
    await w.svc.load(docker_archive([layer({"c": b"3"})], tags=["keep:1"], config=config_for(
        [layer({"c": b"3"})], Labels=None, config={"Labels": {"keep": "yes"}})))
    records, reclaimed = await w.svc.prune()
    assert records[0] == {"Deleted": old.id} and reclaimed == 1
    assert {i.repo_tags[0] for i in w.svc.list()} == {"docker.io/library/app:1", "docker.io/library/keep:1"}
    records, _ = await w.svc.prune(dangling_only=False, match=lambda i: "keep" not in i.config.labels)
    assert [i.repo_tags for i in w.svc.list()] == [["docker.io/library/keep:1"]]
    assert {"Untagged": "app:1"} in records


async def test_start_sweeps_orphan_layers(world: Any, tmp_path: Path) -> None:
    w = world
    drv = await w.svc.driver()
    path = tmp_path / "orphan.tar"
    path.write_bytes(layer({"o": b"1"}))
    await drv.apply("sha256:" + "ab" * 32, None, str(path))  # as if a load crashed before its records
    await drv.prepare("container-layer", None)  # not an image layer: left alone
    await w.svc.start()
    assert await drv.list() == ["container-layer"]
    await drv.remove("container-layer")


async def test_concurrent_loads_and_restart(world: Any) -> None:
    w = world
    base = layer({"shared": b"s" * 1000})
    a = docker_archive([base, layer({"a": b"1"})], tags=["ca:1"])
    b = docker_archive([base, layer({"b": b"2"})], tags=["cb:1"])
    import asyncio

    results = await asyncio.gather(w.svc.load(a), w.svc.load(b), w.svc.load(a))
    assert results == [["Loaded image: ca:1"], ["Loaded image: cb:1"], ["Loaded image: ca:1"]]
    snap = await snapshot(w)
    assert len(snap["images"]) == 2 and len(snap["layers"]) == 3
    # A new kernel on the same roots sees the same store; start() changes nothing.
    await w.kernel.stop()
    w.kernel = Kernel.build(w.kernel.config, autoload=False)
    w.kernel.open_store()
    w.svc = w.kernel.images
    await w.svc.start()
    assert await snapshot(w) == snap
    assert w.svc.resolve("cb:1").size == 1001
