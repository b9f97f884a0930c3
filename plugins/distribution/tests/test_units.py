"""Pure logic: auth challenges, X-Registry-Auth, platforms, media types, progress text, insecure
registries, the CLI credential file."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard_distribution import auth
from dockyard_distribution import mediatypes as mt
from dockyard_distribution.client import RegistryOptions, host_name, is_insecure
from dockyard_distribution.progress import human_size, progress_bar


# ------------------------------------------------------------------ challenges
def test_bearer_challenge_with_comma_in_quoted_scope() -> None:
    (ch,) = auth.parse_challenges('Bearer realm="https://auth.example/token",service="registry.example",'
                                  'scope="repository:library/busybox:pull,push"')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "registry.example",
                         "scope": "repository:library/busybox:pull,push"}


def test_basic_challenge_and_escapes_and_spaces() -> None:
    (ch,) = auth.parse_challenges('Basic realm="say \\"hi\\""')
    assert ch.scheme == "basic" and ch.params["realm"] == 'say "hi"'
    (ch,) = auth.parse_challenges('bearer  realm = "r" ,  error="insufficient_scope"')
    assert ch.params == {"realm": "r", "error": "insufficient_scope"}


def test_several_challenges_and_token68() -> None:
    chs = auth.parse_challenges('Basic abc==, Bearer realm="x",service=y')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[0].params == {"": "abc=="}
    assert chs[1].params == {"realm": "x", "service": "y"}


def test_unquoted_param_values() -> None:
    (ch,) = auth.parse_challenges("Bearer realm=http://127.0.0.1:9/token,service=reg")
    # an unquoted URL stops at characters outside the token grammar; quoted values are the norm
    assert ch.scheme == "bearer" and ch.params.get("realm", "").startswith("http")


# ------------------------------------------------------------------ X-Registry-Auth
def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


def test_registry_auth_header_forms() -> None:
    assert auth.decode_registry_auth(None) is None
    assert auth.decode_registry_auth("e30=") is None  # {} as the CLI sends with no login
    cfg = auth.decode_registry_auth(_b64url({"username": "u", "password": "p?>", "serveraddress": "h:5000"}))
    assert (cfg.username, cfg.password, cfg.serveraddress) == ("u", "p?>", "h:5000")
    unpadded = _b64url({"username": "u", "password": "p"}).rstrip("=")
    assert auth.decode_registry_auth(unpadded).password == "p"
    std = base64.b64encode(json.dumps({"identitytoken": "tok"}).encode()).decode()
    assert auth.decode_registry_auth(std).identitytoken == "tok"
    legacy = auth.decode_registry_auth(_b64url({"auth": base64.b64encode(b"al:ice:x").decode()}))
    assert (legacy.username, legacy.password) == ("al", "ice:x")


def test_registry_auth_header_garbage_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        auth.decode_registry_auth("!!!not base64!!!")
    with pytest.raises(InvalidArgument):
        auth.decode_registry_auth(base64.b64encode(b"[1,2]").decode())


def test_to_header_round_trip() -> None:
    cfg = auth.AuthConfig("u", "p", "127.0.0.1:5000")
    assert auth.decode_registry_auth(cfg.to_header()) == cfg


# ------------------------------------------------------------------ platforms
INDEX = {"manifests": [
    {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "2" * 64,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
    {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "3" * 64,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "4" * 64,
     "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "platform": {"os": "unknown", "architecture": "unknown"},
     "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
]}


@pytest.mark.parametrize(("want", "digit"), [("linux/amd64", "1"), ("linux/arm/v6", "2"), ("linux/arm", "3"),
                                             ("linux/arm/v7", "3"), ("linux/arm64", "4"), ("linux/aarch64", "4"),
                                             ("arm64", "4"), ("linux/arm64/v8", "4"), ("linux/x86_64", "1")])
def test_platform_selection(want: str, digit: str) -> None:
    assert mt.select_manifest(INDEX, mt.Platform.parse(want), "x")["digest"] == "sha256:" + digit * 64


def test_platform_selection_none_matches() -> None:
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x in the manifest list entries"):
        mt.select_manifest(INDEX, mt.Platform.parse("linux/s390x"), "x")
    with pytest.raises(NotFound):  # attestations are never chosen
        mt.select_manifest(INDEX, mt.Platform("unknown", "unknown"), "x")


def test_platform_parse_errors_and_platforms_listing() -> None:
    for bad in ("", "linux//amd64", "a/b/c/d"):
        with pytest.raises(InvalidArgument):
            mt.Platform.parse(bad)
    assert str(mt.Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    plats = mt.index_platforms(INDEX)
    assert {"architecture": "arm", "os": "linux", "variant": "v6"} in plats and len(plats) == 4


# ------------------------------------------------------------------ media types
def test_media_type_detection() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert mt.detect_media_type(body) == mt.OCI_MANIFEST
    assert mt.detect_media_type(body, mt.DOCKER_MANIFEST + "; charset=utf-8") == mt.DOCKER_MANIFEST
    assert mt.detect_media_type(json.dumps({"schemaVersion": 2, "manifests": []}).encode()) == mt.OCI_INDEX
    assert mt.detect_media_type(json.dumps({"mediaType": mt.DOCKER_LIST}).encode()) == mt.DOCKER_LIST
    schema1 = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    with pytest.raises(mt.UnsupportedManifest, match="schema 1"):
        mt.check_manifest_type(mt.detect_media_type(schema1), "x")
    with pytest.raises(mt.UnsupportedManifest, match="unsupported manifest media type"):
        mt.check_manifest_type("application/vnd.example+json", "x")
    with pytest.raises(mt.UnsupportedManifest):
        mt.detect_media_type(b"<html>")
    assert mt.LAYER_COMPRESSION[mt.OCI_LAYER] == "none"
    assert mt.LAYER_COMPRESSION[mt.DOCKER_LAYER] == "gzip"


# ------------------------------------------------------------------ progress text
def test_progress_text_like_dockerd() -> None:
    assert human_size(19968) == "19.97kB" and human_size(1984172) == "1.984MB" and human_size(942) == "942B"
    bar = progress_bar(19968, 1984172)
    assert bar.startswith("[>" + " " * 50 + "] ") and bar.endswith("19.97kB/1.984MB")
    assert progress_bar(1984172, 1984172).startswith("[" + "=" * 50 + ">]")
    assert progress_bar(0, 0) == ""


# ------------------------------------------------------------------ insecure registries
def test_insecure_registries() -> None:
    opts = RegistryOptions(insecure_registries=["reg.example:5000", "10.1.0.0/16"])
    assert is_insecure("127.0.0.1:5000", opts)
    assert is_insecure("[::1]:5000", opts)
    assert is_insecure("reg.example:5000", opts)
    assert not is_insecure("reg.example:5001", opts)
    assert is_insecure("10.1.2.3:443", opts)
    assert not is_insecure("10.2.0.1", opts)
    assert not is_insecure("127.0.0.1:5000", RegistryOptions(loopback_insecure=False))
    assert host_name("[::1]:5000") == "::1" and host_name("h:1") == "h" and host_name("h") == "h"


# ------------------------------------------------------------------ CLI credentials
def test_credentials_file_is_private_and_docker_shaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "cfg"))
    path = auth.save_credentials("127.0.0.1:5000", "alice", "s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:s3cret"
    cfg = auth.credentials_for("127.0.0.1:5000")
    assert (cfg.username, cfg.password, cfg.serveraddress) == ("alice", "s3cret", "127.0.0.1:5000")
    assert auth.credentials_for("127.0.0.1:5001") is None
    assert auth.remove_credentials("127.0.0.1:5000") and auth.credentials_for("127.0.0.1:5000") is None


# ------------------------------------------------------------------ parallel gzip and unpacking
def unpack(blob: bytes, dest: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    from dockyard_distribution.store import Unpacker

    u = Unpacker(dest)
    try:
        for i in range(0, len(blob), chunk):
            u.write(blob[i:i + chunk])
        return u.finish()
    finally:
        u.close()


class _Store:
    """The two paths GzipStream asks an ImageStore for, and what it records."""

    def __init__(self, layer: Path, cache: Path) -> None:
        self.layer, self.cache, self.recorded = layer, cache, []

    def layer_path(self, diff_id: str) -> Path:
        return self.layer

    def compressed_path(self, diff_id: str) -> Path:
        return self.cache / diff_id[7:]

    def _record_local(self, diff_id: str, digest: str, size: int, media_type: str) -> None:
        self.recorded.append((diff_id, digest, size))


@pytest.mark.parametrize("kind", ["random", "text", "mixed", "empty", "small"])
async def test_gzip_stream_round_trip(tmp_path: Path, kind: str) -> None:
    import gzip
    import hashlib
    import os

    from dockyard_distribution.store import GZIP_BLOCK, GzipStream

    data = {"random": os.urandom(3 * GZIP_BLOCK + 5), "text": b"hello layer\n" * 400_000,
            "mixed": os.urandom(GZIP_BLOCK) + bytes(2 * GZIP_BLOCK) + b"end",
            "empty": b"", "small": b"tiny"}[kind]
    (tmp_path / "layer").write_bytes(data)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    gz = GzipStream(_Store(tmp_path / "layer", tmp_path / "cache"), diff_id, None)  # type: ignore[arg-type]
    blob = b"".join([m async for m in gz])
    assert gz.result is not None and gz.result.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert gzip.decompress(blob) == data  # any gzip reader reads the multi-member stream
    if kind == "text":
        assert len(blob) < len(data) // 20
    if kind == "random":
        assert len(blob) < len(data) * 1.01  # stored, not inflated
    for chunk in (1 << 20, 4096, 7):  # members starting and ending anywhere in a chunk
        got = unpack(blob, tmp_path / f"tar-{chunk}", chunk) if len(blob) < 200_000 or chunk != 7 else None
        if got is not None:
            assert got == (diff_id, len(data))
            assert (tmp_path / f"tar-{chunk}").read_bytes() == data


def test_unpacker_rejects_truncated_corrupt_and_zstd(tmp_path: Path) -> None:
    import gzip

    blob = gzip.compress(b"x" * 100_000)
    with pytest.raises(InvalidArgument, match="truncated"):
        unpack(blob[:-10], tmp_path / "t1")
    with pytest.raises(InvalidArgument, match="corrupt"):
        unpack(blob[:10] + b"\xff" * 20 + blob[30:], tmp_path / "t2")
    with pytest.raises(InvalidArgument, match="zstd"):
        unpack(b"\x28\xb5\x2f\xfd" + b"0" * 100, tmp_path / "t3")
    assert unpack(b"plain tar bytes", tmp_path / "t4")[1] == len(b"plain tar bytes")  # uncompressed


# ------------------------------------------------------------------ CLI progress view
def test_progress_view_bars_and_errors() -> None:
    import click

    from dockyard_distribution.cli import ProgressView
    from dockyard_distribution.progress import progress, status

    view = ProgressView(tty=True)
    with view:
        view.progress.console.file = __import__("io").StringIO()
        view.feed({"status": "Pulling from x", "id": "1"})
        view.feed(status("Pulling fs layer", "aaaaaaaaaaaa"))
        view.feed(progress("Downloading", "aaaaaaaaaaaa", 500, 1000))
        task = view.progress.tasks[view.tasks["aaaaaaaaaaaa"]]
        assert (task.completed, task.total, task.description) == (500, 1000, "Downloading")
        view.feed(status("Pull complete", "aaaaaaaaaaaa"))
        assert task.completed == 1000 and task.description == "Pull complete"
        view.feed({"progressDetail": {}, "aux": {"Tag": "1", "Digest": "sha256:x", "Size": 1}})
        assert view.aux == {"Tag": "1", "Digest": "sha256:x", "Size": 1}
        with pytest.raises(click.ClickException, match="boom"):
            view.feed({"error": "boom", "errorDetail": {"message": "boom"}})


async def test_gzip_stream_checks_the_layer_and_keeps_the_blob(tmp_path: Path) -> None:
    import gzip
    import hashlib
    import os

    from dockyard.content import DigestMismatch
    from dockyard_distribution.store import GzipStream

    data = os.urandom(1_500_000) + b"text " * 300_000
    layer = tmp_path / "layer.tar"
    layer.write_bytes(data)
    recorded: list[tuple[str, str, int]] = []

    class Store:
        def layer_path(self, diff_id: str) -> Path:
            return layer

        def compressed_path(self, diff_id: str) -> Path:
            return tmp_path / "cache" / diff_id[7:]

        def _record_local(self, diff_id: str, digest: str, size: int, media_type: str) -> None:
            recorded.append((diff_id, digest, size))

    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    seen: list[int] = []
    gz = GzipStream(Store(), diff_id, seen.append)  # type: ignore[arg-type]
    blob = b"".join([m async for m in gz])
    assert gzip.decompress(blob) == data and seen[-1] == len(data)
    assert gz.result is not None and gz.result.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert gz.result.path.read_bytes() == blob and recorded == [(diff_id, gz.result.digest, len(blob))]
    with pytest.raises(InvalidArgument, match="only once"):
        [m async for m in gz]
    bad = GzipStream(Store(), "sha256:" + "0" * 64, None)  # type: ignore[arg-type]
    with pytest.raises(DigestMismatch, match="corrupt"):
        [m async for m in bad]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [diff_id[7:]]  # no partial left
