"""The registry client against docker-registry: TLS with a custom CA (certs.d), basic auth,
monolithic and chunked uploads, HEAD checks, cross-repository mounts, manifests and indexes;
then a platform-selecting pull of that index through dockyardd."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard.content import DigestMismatch
from dockyard.errors import NotFound, Unavailable
from dockyard_distribution.auth import AuthConfig
from dockyard_distribution.client import RegistryClient, RegistryOptions, Unauthorized
from dockyard_distribution.mediatypes import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_INDEX

pytestmark = pytest.mark.integration


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer(name: str, data: bytes) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    tar = buf.getvalue()
    return gzip.compress(tar, mtime=0), sha(tar)


async def push_image(client: RegistryClient, repo: str, tag: str, arch: str, tmp: Path) -> tuple[bytes, str]:
    blob, diff_id = layer(f"{arch}.txt", (f"built for {arch}\n" * 5000).encode())
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    for data in (blob, config):
        path = tmp / sha(data)[7:]
        path.write_bytes(data)
        if not await client.blob_exists(repo, sha(data)):
            await client.upload_blob(repo, sha(data), len(data), path)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha(config)},
                           "layers": [{"mediaType": DOCKER_LAYER, "size": len(blob), "digest": sha(blob)}]}).encode()
    digest = await client.put_manifest(repo, tag, manifest, DOCKER_MANIFEST)
    return manifest, digest


async def test_tls_with_a_custom_ca_and_basic_auth(registry_factory, tmp_path: Path) -> None:
    reg = registry_factory("tls", tls=True, user="carol", password="pw")
    certs = tmp_path / "certs.d"
    strict = RegistryOptions(certs_dir=certs, loopback_insecure=False, retries=0)
    async with RegistryClient(reg.host, strict, AuthConfig("carol", "pw")) as c:
        with pytest.raises(Unavailable, match="certificate verify failed|x509"):
            await c.login()
    (certs / reg.host).mkdir(parents=True)
    (certs / reg.host / "ca.crt").write_bytes(reg.certs.ca.read_bytes())
    async with RegistryClient(reg.host, strict, AuthConfig("carol", "pw")) as c:
        await c.login()
        assert (await c.endpoint()).url == f"https://{reg.host}"
    async with RegistryClient(reg.host, strict, AuthConfig("carol", "wrong")) as c:
        with pytest.raises(Unauthorized):
            await c.login()
    async with RegistryClient(reg.host, strict) as c:  # anonymous
        with pytest.raises(Unauthorized):
            await c.get_manifest("x", "1")
    # a plain-HTTP registry is refused unless it is insecure
    plain = registry_factory("plain")
    async with RegistryClient(plain.host, RegistryOptions(loopback_insecure=False)) as c:
        with pytest.raises(Unavailable, match="insecure-registries"):
            await c.endpoint()
    async with RegistryClient(plain.host, RegistryOptions(loopback_insecure=False,
                                                          insecure_registries=[plain.host])) as c:
        assert (await c.endpoint()).url == f"http://{plain.host}"


async def test_uploads_heads_mounts_and_manifests(registry, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, not a multiple of the chunk size
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = sha(data)
    chunked = RegistryOptions(chunk_size=100_000)
    async with RegistryClient(registry.host, chunked) as c:
        seen: list[int] = []
        assert not await c.blob_exists("a/one", digest)
        await c.upload_blob("a/one", digest, len(data), path, progress=seen.append)
        assert await c.blob_exists("a/one", digest)
        assert seen[-1] == len(data) and len(seen) >= 11  # one PATCH per chunk at least
        # a wrong digest is refused by the registry
        with pytest.raises(DigestMismatch):
            await c.upload_blob("a/one", "sha256:" + "0" * 64, len(data), path)
        # cross-repository mount: no bytes sent
        assert not await c.blob_exists("b/two", digest)
        assert await c.mount_blob("b/two", digest, "a/one") is None
        assert await c.blob_exists("b/two", digest)
        # mounting what the source lacks opens an ordinary upload instead
        other = b"other blob"
        loc = await c.mount_blob("b/two", sha(other), "a/one")
        assert loc and "/v2/b/two/blobs/uploads/" in loc
        (tmp_path / "other").write_bytes(other)
        await c.upload_blob("b/two", sha(other), len(other), tmp_path / "other", location=loc)
        assert await c.blob_exists("b/two", sha(other))
        # downloads verify what they get
        out = tmp_path / "down"
        await c.download_blob("b/two", digest, len(data), out)
        assert out.read_bytes() == data
        with pytest.raises(NotFound):
            await c.download_blob("b/two", "sha256:" + "1" * 64, None, tmp_path / "missing")
        assert not (tmp_path / "missing").exists()


async def test_index_pull_selects_the_platform(registry, dockyardd, tmp_path: Path) -> None:
    async with RegistryClient(registry.host, RegistryOptions()) as c:
        amd, amd_digest = await push_image(c, "multi", "amd64-only", "amd64", tmp_path)
        arm, arm_digest = await push_image(c, "multi", "arm64-only", "arm64", tmp_path)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd_digest, "size": len(amd),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm_digest, "size": len(arm),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]}).encode()
        index_digest = await c.put_manifest("multi", "1", index, OCI_INDEX)
        got = await c.get_manifest("multi", "1")
        assert got.media_type == OCI_INDEX and got.digest == index_digest
    out = dockyardd.docker("pull", "--platform", "linux/arm64", f"{registry.host}/multi:1").stdout
    assert f"Digest: {index_digest}" in out
    arch = dockyardd.docker("image", "inspect", f"{registry.host}/multi:1", "--format", "{{.Architecture}}").stdout
    assert arch.strip() == "arm64"
    dockyardd.docker("pull", f"{registry.host}/multi:1")  # the host's platform (amd64 here)
    arch = dockyardd.docker("image", "inspect", f"{registry.host}/multi:1", "--format", "{{.Architecture}}").stdout
    assert arch.strip() == "amd64"
    bad = dockyardd.docker("pull", "--platform", "linux/s390x", f"{registry.host}/multi:1", check=False)
    assert bad.returncode != 0 and "no matching manifest for linux/s390x" in bad.stderr
    wrong = dockyardd.docker("pull", "--platform", "linux/arm64", f"{registry.host}/multi:amd64-only", check=False)
    assert wrong.returncode != 0 and "does not match the specified platform" in wrong.stderr
