"""Multi-platform images (issue 19 item 1) through the docker CLI against Debian's
docker-registry on 127.0.0.1: an OCI index of synthetic images (small layers, configs saying
amd64, arm64, arm/v7) put there by skopeo; ``pull --platform`` per platform into one tag,
``create --platform`` picking the member, dockerd's error for a platform the index lacks,
``rmi`` removing every platform, ``dockyard image inspect --platforms``. Nothing foreign runs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import SKOPEO, Registry

from dockyard import errors as e

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PLATFORMS = (("amd64", ""), ("arm64", "v8"), ("arm", "v7"))


def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_index(root: Path, tag: str) -> dict[str, str]:
    """An OCI layout at ``root`` whose ``tag`` is an index of one synthetic image per platform;
    returns the config digest (image ID) per architecture."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entries, ids = [], {}
    for arch, variant in PLATFORMS:
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as tf:
            data = f"{arch}{variant}\n".encode()
            ti = tarfile.TarInfo("etc/arch")
            ti.size, ti.mtime = len(data), 946684800
            tf.addfile(ti, io.BytesIO(data))
        raw = layer.getvalue()
        lay = _blob(root, raw)
        config = {"architecture": arch, "os": "linux", "created": "2000-01-01T00:00:00Z",
                  "config": {"Cmd": ["/bin/true"]}, "rootfs": {"type": "layers", "diff_ids": [lay["digest"]]}}
        if variant:
            config["variant"] = variant
        cfg = _blob(root, json.dumps(config, sort_keys=True).encode())
        ids[arch] = cfg["digest"]
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **lay}]}
        man = _blob(root, json.dumps(manifest).encode())
        plat = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **man, "platform": plat})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    idx = _blob(root, json.dumps(index).encode())
    top = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **idx,
                                              "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (root / "index.json").write_text(json.dumps(top))
    ids["index"] = idx["digest"]
    return ids


@pytest.fixture
def multi(registry: Registry, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if SKOPEO is None:
        pytest.skip("skopeo is not installed")
    ids = oci_index(tmp_path / "layout", "1")
    name = f"{registry.host}/multi:1"
    registry.skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:1", f"docker://{name}")
    return name, ids


def test_pull_per_platform_into_one_tag_create_picks_rmi_removes_all(dockyardd, multi) -> None:
    d = dockyardd
    name, ids = multi
    out = d.docker("pull", "--platform", "linux/arm64", name).stdout
    index_digest = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Digest: "))
    fmt = "{{.Id}} {{.Os}}/{{.Architecture}}"
    assert d.docker("image", "inspect", "--format", fmt, name).stdout.split() == [ids["arm64"], "linux/arm64"]
    assert d.docker("image", "inspect", "--format", "{{.Variant}}", name).stdout.strip() == "v8"
    d.docker("pull", name)  # the host's platform joins the same tag, which now shows it
    assert d.docker("image", "inspect", "--format", fmt, name).stdout.split() == [ids["amd64"], "linux/amd64"]
    rows = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")[:-1]
    assert f"{name} {ids['amd64'][7:19]}" in rows
    client = d.client()
    info = json.loads(d.dockyard("image", "inspect", "--platforms", name).stdout)
    assert info["Index"] == index_digest and info["MediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["platform"]["architecture"], m["Present"]) for m in info["Manifests"]] == \
        [("amd64", True), ("arm64", True), ("arm", False)]
    # arm/v7 is listed but absent: dockerd's 404 (on which the CLI pulls that platform)
    with pytest.raises(e.NotFound, match="does not match the specified platform: wanted linux/arm/v7"):
        client.post("/containers/create", {"Image": name, "Cmd": ["true"]}, platform="linux/arm/v7")
    d.docker("pull", "--platform", "linux/arm/v7", name)
    for platform, arch in (("linux/arm64", "arm64"), ("linux/amd64", "amd64"), ("linux/arm/v7", "arm"),
                           ("linux/arm64/v8", "arm64"), ("linux/arm/v8", "arm")):  # arm v8 runs v7
        cid = client.post("/containers/create", {"Image": name, "Cmd": ["true"]}, platform=platform)["Id"]
        assert client.get(f"/containers/{cid}/json")["Image"] == ids[arch], platform
        client.delete(f"/containers/{cid}")
    assert d.docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == ids["amd64"]
    out = d.docker("pull", "--platform", "linux/s390x", name, check=False)
    assert out.returncode != 0
    assert "no matching manifest for linux/s390x in the manifest list entries" in out.stderr
    d.docker("rmi", name)
    assert d.docker("images", "-aq").stdout.strip() == ""


def test_save_load_keeps_every_platform_and_skopeo_reads_it(dockyardd, multi, registry: Registry,
                                                            tmp_path: Path) -> None:
    d = dockyardd
    name, ids = multi
    d.docker("pull", "--platform", "linux/arm64", name)
    d.docker("pull", "--platform", "linux/arm/v7", name)
    archive = tmp_path / "multi.tar"
    d.docker("save", "-o", str(archive), name)
    with tarfile.open(archive) as tf:
        top = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        (entry,) = top["manifests"]
        assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert entry["annotations"]["io.containerd.image.name"] == name
        nested = json.load(tf.extractfile("blobs/sha256/" + entry["digest"][7:]))  # type: ignore[arg-type]
        assert sorted(m["platform"]["architecture"] for m in nested["manifests"]) == ["arm", "arm64"]
        (docker_entry,) = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert docker_entry["RepoTags"] == [name]  # any docker load gets the tag's own image
    d.docker("rmi", name)
    assert d.docker("load", "-i", str(archive)).stdout.strip() == f"Loaded image: {name}"
    info = json.loads(d.dockyard("image", "inspect", "--platforms", name).stdout)
    assert sorted((m["platform"]["architecture"], m["ImageID"]) for m in info["Manifests"]) == \
        [("arm", ids["arm"]), ("arm64", ids["arm64"])]
    client = d.client()
    cid = client.post("/containers/create", {"Image": name, "Cmd": ["true"]}, platform="linux/arm/v7")["Id"]
    assert client.get(f"/containers/{cid}/json")["Image"] == ids["arm"]
    client.delete(f"/containers/{cid}")
    # skopeo reads the saved layout (nested index) and copies both platforms to the registry
    registry.skopeo("copy", "--all", "--dest-tls-verify=false", f"oci-archive:{archive}:1",
                    f"docker://{registry.host}/roundtrip:1")
    d.docker("rmi", name)
    d.docker("pull", "--platform", "linux/arm/v7", f"{registry.host}/roundtrip:1")
    fmt = "{{.Id}} {{.Architecture}}"
    assert d.docker("image", "inspect", "--format", fmt, f"{registry.host}/roundtrip:1").stdout.split() == \
        [ids["arm"], "arm"]


def test_manifest_create_add_inspect_push_rm(dockyardd, multi, registry: Registry) -> None:
    d = dockyardd
    name, ids = multi
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        d.docker("pull", "--platform", platform, name)
    d.docker("tag", name, "local/amd:1")  # the amd64 platform (the tag's image on this host)
    listed = f"{registry.host}/assembled:1"
    d.dockyard("manifest", "create", listed, "local/amd:1", ids["arm64"])
    d.dockyard("manifest", "add", "--arch", "arm", "--variant", "v7", listed, ids["arm"])
    doc = json.loads(d.dockyard("manifest", "inspect", listed).stdout)
    assert [(m["platform"]["architecture"], m["platform"].get("variant", "")) for m in doc["manifests"]] == \
        [("amd64", ""), ("arm64", "v8"), ("arm", "v7")]
    again = d.dockyard("manifest", "create", listed, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    digest = d.dockyard("manifest", "push", listed).stdout.strip().splitlines()[-1]
    raw = registry.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{listed}").stdout
    pushed = json.loads(raw)
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    assert pushed["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert sorted(m["platform"]["architecture"] for m in pushed["manifests"]) == ["amd64", "arm", "arm64"]
    out = d.docker("push", listed).stdout  # docker push of a tag naming an index pushes the index
    assert f"1: digest: {digest} " in out
    d.dockyard("manifest", "rm", listed)
    assert d.dockyard("manifest", "inspect", listed, check=False).returncode != 0
    d.docker("rmi", "-f", *sorted(set(d.docker("images", "-aq").stdout.split())))  # pushed: name@digest refs
    assert d.docker("images", "-aq").stdout.strip() == ""
    d.docker("pull", "--platform", "linux/arm64", listed)  # what was pushed comes back per platform
    assert d.docker("image", "inspect", "--format", "{{.Id}}", listed).stdout.strip() == ids["arm64"]
