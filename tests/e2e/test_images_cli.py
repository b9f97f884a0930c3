"""Images and volumes through real clients: the docker CLI, docker-py, podman, skopeo and the
``dockyard`` CLI against a real dockyardd (own roots and socket per test).

Archives from podman come from the shared podman's offline ``docker.io/library/busybox:latest``
(``bash /work/shared/peers/setup-peers.sh``). Nothing is removed from that podman except the
test-unique name ``test_save_loads_into_podman`` loads into it.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("the image store's layer drivers need root", allow_module_level=True)

PODMAN_IMAGE = "docker.io/library/busybox:latest"


def _podman_has_busybox() -> bool:
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``podman save`` and ``skopeo copy ... oci-archive:`` outputs of podman's busybox."""
    if not _podman_has_busybox() or shutil.which("skopeo") is None:
        pytest.skip("podman with docker.io/library/busybox:latest and skopeo are needed "
                    "(bash /work/shared/peers/setup-peers.sh)")
    d = tmp_path_factory.mktemp("archives")
    out = {"podman": d / "podman.tar", "oci": d / "oci.tar", "oci-named": d / "oci-named.tar"}
    subprocess.run(["podman", "save", "-o", str(out["podman"]), PODMAN_IMAGE], check=True, capture_output=True)
    src = f"containers-storage:{PODMAN_IMAGE}"
    subprocess.run(["skopeo", "copy", "-q", src, f"oci-archive:{out['oci']}"], check=True, capture_output=True)
    subprocess.run(["skopeo", "copy", "-q", src, f"oci-archive:{out['oci-named']}:docker.io/library/ocibox:1"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory,
                  start_dockyardd: Callable[..., Daemon]) -> Iterator[Daemon]:
    """One dockyardd for the module (start-up dominates these tests); each test resets it."""
    d = start_dockyardd(tmp_path_factory.mktemp("images-e2e") / "d")
    yield d
    assert d.stop() == 0


@pytest.fixture
def dockyardd(shared_daemon: Daemon) -> Daemon:
    """The module's daemon with no images and no volumes."""
    d = shared_daemon
    ids = d.docker("images", "-aq").stdout.split()
    if ids:
        d.docker("rmi", "-f", *sorted(set(ids)))
    d.docker("volume", "prune", "-f")
    assert d.docker("images", "-aq").stdout.strip() == "" and d.docker("volume", "ls", "-q").stdout.strip() == ""
    return d


def podman_image_id() -> str:
    res = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", PODMAN_IMAGE],
                         capture_output=True, text=True, check=True)
    return "sha256:" + res.stdout.strip()


def images(d: Daemon) -> list[str]:
    return sorted(d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")[:-1])


# ------------------------------------------------------------------------------ load, save
def test_docker_load_podman_save_and_skopeo_oci(dockyardd: Daemon, archives: dict[str, Path]) -> None:
    d = dockyardd
    pid = podman_image_id()
    out = d.docker("load", "-i", str(archives["podman"])).stdout
    assert out.strip() == "Loaded image: busybox:latest"
    assert images(d) == [f"busybox:latest {pid[7:19]}"]
    assert d.docker("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip() == pid
    # skopeo's OCI archive without a name: the same image, reported by ID.
    out = d.docker("load", "-i", str(archives["oci"])).stdout
    assert out.strip() == f"Loaded image ID: {pid}"
    out = d.docker("load", "-i", str(archives["oci-named"])).stdout
    assert out.strip() == "Loaded image: ocibox:1"
    assert images(d) == sorted([f"busybox:latest {pid[7:19]}", f"ocibox:1 {pid[7:19]}"])
    # Non-quiet load (stdin, progress on a pipe) still ends with the result line.
    d.docker("rmi", "ocibox:1")
    res = d.docker("load", input=archives["oci-named"].read_bytes())
    assert "Loaded image: ocibox:1" in res.stdout
    events = d.past_events("1m", "type=image")
    assert f"image load {pid}" in events


def test_save_loads_into_podman(dockyardd: Daemon, tmp_path: Path) -> None:
    d = dockyardd
    if not _podman_has_busybox():
        pytest.skip("podman is needed")
    d.dockyard("image", "bootstrap", "busybox")
    name = f"dockyard-e2e-{secrets.token_hex(4)}/saved:1"
    d.docker("tag", "busybox", name)
    archive = tmp_path / "saved.tar"
    d.docker("save", "-o", str(archive), name)
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [name]
    loaded = ""
    try:
        res = subprocess.run(["podman", "load", "-i", str(archive)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        loaded = next(line.split("Loaded image: ", 1)[1].strip() for line in res.stdout.splitlines()
                      if "Loaded image" in line)
        assert loaded.endswith(name)
        run = subprocess.run(["podman", "run", "--rm", "--network", "none", loaded, "sh", "-c",
                              "echo ran in podman; cat /etc/passwd"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "ran in podman" in run.stdout and "nobody:x:65534" in run.stdout
    finally:
        if loaded:
            subprocess.run(["podman", "rmi", loaded], capture_output=True)


# ------------------------------------------------------------------------------ the other verbs
def test_images_inspect_history_tag_rmi_import(dockyardd: Daemon, tmp_path: Path) -> None:
    d = dockyardd
    d.dockyard("image", "bootstrap")
    inspect = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]
    assert inspect["RepoTags"] == ["busybox:latest"] and inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["RootFS"]["Type"] == "layers" and len(inspect["RootFS"]["Layers"]) == 1
    assert inspect["Os"] == "linux" and inspect["Size"] > 1_000_000
    image_id = inspect["Id"]
    hist = d.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", "busybox").stdout.splitlines()
    assert hist[0] == f'{image_id}|CMD ["sh"]' and hist[1].startswith("<missing>|dockyard image bootstrap")
    d.docker("tag", "busybox", "127.0.0.1:5000/dy/tagged:v1")
    assert d.docker("image", "inspect", "--format", "{{.Id}}", "127.0.0.1:5000/dy/tagged:v1").stdout.strip() == image_id
    assert d.docker("images", "--filter", "reference=127.0.0.1:5000/dy/*", "--format",
                    "{{.Repository}}:{{.Tag}}").stdout.split() == ["127.0.0.1:5000/dy/tagged:v1"]
    assert d.docker("rmi", "127.0.0.1:5000/dy/tagged:v1").stdout.strip() == "Untagged: 127.0.0.1:5000/dy/tagged:v1"
    res = d.docker("rmi", "nothere:1", check=False)
    assert res.returncode != 0 and "No such image: nothere:1" in res.stderr
    # import with changes, from stdin
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello\n"
        ti = tarfile.TarInfo("./greeting")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    out = d.docker("import", "-c", 'CMD ["cat", "/greeting"]', "-c", "ENV A=b", "-m", "e2e import", "-",
                   "imported:1", input=buf.getvalue()).stdout.strip()
    assert out.startswith("sha256:")
    ins = json.loads(d.docker("image", "inspect", "imported:1").stdout)[0]
    assert ins["Id"] == out and ins["Config"]["Cmd"] == ["cat", "/greeting"] and ins["Config"]["Env"] == ["A=b"]
    assert ins["Comment"] == "e2e import"
    # dangling after re-tagging, then prune
    d.docker("tag", "busybox", "imported:1")
    assert d.docker("images", "-q", "--filter", "dangling=true").stdout.split() == [out[7:19]]
    prune = d.docker("image", "prune", "-f").stdout
    assert f"deleted: {out}" in prune
    removed = d.docker("rmi", "imported:1", "busybox").stdout
    assert "Untagged: imported:1" in removed and f"Deleted: {image_id}" in removed
    assert images(d) == []
    actions = d.past_events("1m", "type=image")
    for action in ("tag", "untag", "delete", "import"):
        assert f"image {action} " in actions


def test_volumes_cli_and_system_df(dockyardd: Daemon) -> None:
    d = dockyardd
    assert d.docker("volume", "create", "--label", "cap=1", "e2e-vol").stdout.strip() == "e2e-vol"
    assert d.docker("volume", "create", "e2e-vol").stdout.strip() == "e2e-vol"  # idempotent
    anon = d.docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    ls = d.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.split("\n")[:-1]
    assert sorted(ls) == sorted(["local e2e-vol", f"local {anon}"])
    assert d.docker("volume", "ls", "-q", "--filter", "label=cap=1").stdout.split() == ["e2e-vol"]
    assert sorted(d.docker("volume", "ls", "-q", "-f", "dangling=true").stdout.split()) == sorted(["e2e-vol", anon])
    ins = json.loads(d.docker("volume", "inspect", "e2e-vol").stdout)[0]
    assert ins["Labels"] == {"cap": "1"} and ins["Driver"] == "local" and ins["Scope"] == "local"
    assert ins["Mountpoint"].endswith("/e2e-vol/_data") and os.path.isdir(ins["Mountpoint"])
    Path(ins["Mountpoint"], "data").write_bytes(b"x" * 5000)
    d.dockyard("image", "bootstrap")
    df = d.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Size}}").stdout
    assert "Images 1 1.98" in df and "Local Volumes 2 5kB" in df
    verbose = d.docker("system", "df", "-v").stdout
    assert "busybox" in verbose and "e2e-vol" in verbose
    res = d.docker("volume", "inspect", "nope", check=False)
    assert res.returncode != 0 and "no such volume" in res.stderr
    assert d.docker("volume", "rm", "e2e-vol").stdout.strip() == "e2e-vol"
    assert d.docker("volume", "prune", "-f").stdout.count(anon) == 1
    assert d.docker("volume", "ls", "-q").stdout.strip() == ""
    assert "volume destroy e2e-vol" in d.past_events("1m", "type=volume")


def test_docker_py_images_api(dockyardd: Daemon, tmp_path: Path) -> None:
    docker = pytest.importorskip("docker", reason="docker-py is not installed")
    d = dockyardd
    d.dockyard("image", "bootstrap")
    client = docker.DockerClient(base_url=d.host, version="1.41")
    try:
        img = client.images.get("busybox")
        assert img.tags == ["busybox:latest"] and img.attrs["Config"]["Cmd"] == ["sh"]
        assert img.tag("pyimg", "1")
        assert sorted(t for i in client.images.list() for t in i.tags) == ["busybox:latest", "pyimg:1"]
        assert [i.tags for i in client.images.list(name="pyimg")] == [["busybox:latest", "pyimg:1"]]
        data = b"".join(img.save(named=True))
        client.images.remove("busybox")
        client.images.remove("pyimg:1")
        assert client.images.list() == []
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [img.id]
        assert client.images.get("busybox").id == img.id
        hist = client.images.get("busybox").history()
        assert hist[0]["Id"] == img.id and hist[0]["CreatedBy"] == 'CMD ["sh"]'
        new = client.api.import_image_from_data(data, repository="pyimport", tag="2", changes=["CMD echo"])
        assert "sha256:" in json.dumps(new)
        assert client.images.get("pyimport:2").attrs["Config"]["Cmd"] == ["/bin/sh", "-c", "echo"]
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("missing:1")
        assert client.images.prune(filters={"dangling": False})["SpaceReclaimed"] > 0
        vol = client.volumes.create("pyvol", labels={"a": "b"})
        assert client.volumes.get("pyvol").attrs["Labels"] == {"a": "b"}
        vol.remove()
        assert client.df()["LayersSize"] == 0
    finally:
        client.close()


def test_dockyard_cli(dockyardd: Daemon, tmp_path: Path) -> None:
    d = dockyardd
    assert "busybox:latest sha256:" in d.dockyard("image", "bootstrap").stdout
    ls = d.dockyard("image", "ls").stdout
    assert "busybox" in ls and "latest" in ls
    archive = tmp_path / "bb.tar"
    d.dockyard("image", "save", "-o", str(archive), "busybox")
    d.dockyard("image", "tag", "busybox", "other:2")
    assert "Untagged: other:2" in d.dockyard("image", "rm", "other:2").stdout
    out = d.dockyard("image", "rm", "busybox").stdout
    assert "Deleted: sha256:" in out
    res = d.dockyard("image", "load", "-i", str(archive))
    assert "Loaded image: busybox:latest" in res.stdout
    assert json.loads(d.dockyard("image", "inspect", "busybox").stdout)[0]["RepoTags"] == ["busybox:latest"]
    assert "CMD" in d.dockyard("image", "history", "busybox").stdout
    res = d.dockyard("image", "rm", "nothere", check=False)
    assert res.returncode == 1 and "No such image: nothere:latest" in res.stderr
    assert d.dockyard("volume", "create", "--label", "x=1", "clivol").stdout.strip() == "clivol"
    assert "clivol" in d.dockyard("volume", "ls").stdout
    assert json.loads(d.dockyard("volume", "inspect", "clivol").stdout)[0]["Labels"] == {"x": "1"}
    assert d.dockyard("volume", "rm", "clivol").stdout.strip() == "clivol"


def test_hostile_load_and_no_registry(dockyardd: Daemon, tmp_path: Path) -> None:
    d = dockyardd
    d.dockyard("image", "bootstrap")
    before = images(d)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        ti = tarfile.TarInfo("../../../../../../tmp/dockyard-e2e-pwned")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    lay = layer.getvalue()
    import hashlib

    diff = "sha256:" + hashlib.sha256(lay).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w") as tf:
        for name, data in ((hashlib.sha256(cfg).hexdigest() + ".json", cfg), ("l/layer.tar", lay),
                           ("manifest.json", json.dumps([{"Config": hashlib.sha256(cfg).hexdigest() + ".json",
                                                          "RepoTags": ["evil:1"], "Layers": ["l/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    res = d.docker("load", input=outer.getvalue(), check=False)
    assert res.returncode != 0 and "path contains '..'" in res.stderr
    assert not os.path.exists("/tmp/dockyard-e2e-pwned")
    assert images(d) == before
    # A registry name on loopback where nothing listens (port 9): tests never reach outside.
    # With the distribution plugin the pull fails to connect; without it the front answers
    # 501 "no registry support yet". Either way nothing changes.
    res = d.docker("pull", "127.0.0.1:9/alpine:3", check=False)
    assert res.returncode != 0 and ("no registry support yet" in res.stderr or "registry" in res.stderr)
    assert images(d) == before


def test_early_refusal_still_reports_the_error(dockyardd: Daemon, tmp_path: Path) -> None:
    d = dockyardd
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x01" * (20 << 20))  # refused at the first header, 20 MB still to send
    res = d.docker("load", "-i", str(junk), check=False)
    assert res.returncode != 0 and "invalid archive" in res.stderr
    assert images(d) == []
