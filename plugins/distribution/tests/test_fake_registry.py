"""Pulls through a real dockyardd from a registry that misbehaves on purpose (fakeregistry.py):
a corrupt layer, a connection dropped mid-layer, no Range support, bearer-token auth."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeregistry import FakeRegistry, make_image, start

pytestmark = pytest.mark.integration


@pytest.fixture
def dockyardd(module_dockyardd):  # noqa: ANN001, ANN201 - one daemon for the module
    return module_dockyardd


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    reg = start()
    yield reg
    reg.stop()


def snapshot(daemon) -> set[str]:  # noqa: ANN001
    """Every file under the daemon's data root except the state database (its WAL changes on reads)."""
    root = daemon.root / "data"
    out = set()
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            rel = str(Path(dirpath, f).relative_to(root))
            if not rel.startswith("state.db"):
                out.add(rel)
    return out


def images(daemon) -> list[str]:  # noqa: ANN001
    return daemon.docker("images", "-q", "--no-trunc").stdout.split()


def test_a_layer_with_the_wrong_digest_is_rejected_and_the_store_is_unchanged(fake: FakeRegistry, dockyardd) -> None:
    fake.repos["img"] = {"1": make_image((200_000, 50_000), seed=b"t1")}
    fake.corrupt = True
    before, images_before = snapshot(dockyardd), images(dockyardd)
    out = dockyardd.docker("pull", f"{fake.host}/img:1", check=False)
    assert out.returncode != 0
    assert "failed verification" in out.stderr and "expected sha256:" in out.stderr, out.stderr
    assert snapshot(dockyardd) == before
    assert images(dockyardd) == images_before
    fake.corrupt = False  # the same daemon then pulls the good image
    out = dockyardd.docker("pull", f"{fake.host}/img:1")
    assert "Status: Downloaded newer image for" in out.stdout
    assert len(images(dockyardd)) == len(images_before) + 1


def test_a_pull_interrupted_mid_layer_resumes_with_range(fake: FakeRegistry, dockyardd) -> None:
    img = make_image((400_000,), seed=b"t2")
    fake.repos["img"] = {"1": img}
    fake.drop_after, fake.drop_times = 150_000, 1
    out = dockyardd.docker("pull", f"{fake.host}/img:1")
    assert "Pull complete" in out.stdout and "Downloaded newer image" in out.stdout
    ranges = fake.range_requests()
    assert len(ranges) == 1 and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-", ranges
    assert int(ranges[0][6:].rstrip("-")) > 0
    inspect = dockyardd.docker("image", "inspect", f"{fake.host}/img:1", "--format", "{{json .RootFS.Layers}}").stdout
    assert img.diff_ids[0] in inspect


def test_a_registry_without_range_support_restarts_the_layer(fake: FakeRegistry, dockyardd) -> None:
    fake.repos["img"] = {"1": make_image((300_000,), seed=b"t3")}
    fake.drop_after, fake.drop_times, fake.no_range = 100_000, 1, True
    out = dockyardd.docker("pull", f"{fake.host}/img:1")
    assert "Downloaded newer image" in out.stdout
    assert len(fake.range_requests()) == 1  # asked for a range, got the whole blob, started over


def test_a_pull_that_keeps_failing_leaves_no_partial_blobs(fake: FakeRegistry, dockyardd) -> None:
    fake.repos["img"] = {"1": make_image((300_000,), seed=b"t4")}
    # no Range support: every attempt starts over and is cut at the same place
    fake.drop_after, fake.drop_times, fake.no_range = 100_000, 1000, True
    before, images_before = snapshot(dockyardd), images(dockyardd)
    out = dockyardd.docker("pull", f"{fake.host}/img:1", check=False)
    assert out.returncode != 0
    assert "failed after" in out.stderr and "attempts" in out.stderr, out.stderr
    assert snapshot(dockyardd) == before
    assert images(dockyardd) == images_before


def test_pull_by_digest_multi_layer_and_up_to_date(fake: FakeRegistry, dockyardd) -> None:
    img = make_image((100_000, 80_000, 60_000, 40_000, 20_000), seed=b"t5")
    fake.repos["multi"] = {"1": img}
    out = dockyardd.docker("pull", f"{fake.host}/multi@{img.digest}").stdout
    assert out.count("Pull complete") == 5
    assert f"Digest: {img.digest}" in out
    assert f"Status: Downloaded newer image for {fake.host}/multi@{img.digest}" in out
    out = dockyardd.docker("pull", f"{fake.host}/multi:1").stdout
    assert out.count("Already exists") == 5
    assert f"Status: Downloaded newer image for {fake.host}/multi:1" in out  # a new tag
    out = dockyardd.docker("pull", f"{fake.host}/multi:1").stdout
    assert f"Status: Image is up to date for {fake.host}/multi:1" in out
    digests = dockyardd.docker("image", "inspect", f"{fake.host}/multi:1", "--format", "{{json .RepoDigests}}").stdout
    assert f"{fake.host}/multi@{img.digest}" in digests


def test_missing_manifest_is_404_before_streaming(fake: FakeRegistry, dockyardd) -> None:
    out = dockyardd.docker("pull", f"{fake.host}/nothere:1", check=False)
    assert out.returncode == 1
    assert f"manifest for {fake.host}/nothere:1 not found: manifest unknown: manifest unknown" in out.stderr


def test_bearer_token_auth_with_login(fake: FakeRegistry, dockyardd) -> None:
    fake.repos["private/img"] = {"1": make_image((50_000,), seed=b"t6")}
    fake.token, fake.user, fake.password = "tok-123", "bob", "pw"
    out = dockyardd.docker("pull", f"{fake.host}/private/img:1", check=False)
    assert out.returncode != 0 and "unauthorized" in out.stderr.lower(), out.stderr
    bad = dockyardd.docker("login", fake.host, "-u", "bob", "--password-stdin", input=b"wrong\n", check=False)
    assert bad.returncode != 0
    dockyardd.docker("login", fake.host, "-u", "bob", "--password-stdin", input=b"pw\n")
    out = dockyardd.docker("pull", f"{fake.host}/private/img:1")
    assert "Downloaded newer image" in out.stdout
    token_calls = [p for m, p, h in fake.requests if p.startswith("/token")]
    assert token_calls and "scope=repository:private/img:pull" in token_calls[-1]
    assert any(h.get("Authorization") == "Bearer tok-123" for m, p, h in fake.requests if "/blobs/" in p)


def test_concurrent_downloads_respect_the_limit(fake: FakeRegistry, dockyardd_factory) -> None:
    d = dockyardd_factory("limited", config={"max-concurrent-downloads": 2})
    fake.repos["many"] = {"1": make_image((30_000,) * 6, seed=b"many")}
    fake.delay = 0.3
    out = d.docker("pull", f"{fake.host}/many:1").stdout
    assert out.count("Pull complete") == 6
    assert "Waiting" in out  # layers queued behind the limit say so, as with dockerd
    assert fake.max_in_flight == 2


def test_a_layer_that_unpacks_to_another_diff_id_is_rejected(fake: FakeRegistry, dockyardd) -> None:
    import json

    from fakeregistry import DOCKER_MANIFEST, FakeImage, sha

    good = make_image((60_000,), seed=b"t7")
    config = json.loads(good.config)
    config["rootfs"]["diff_ids"] = ["sha256:" + "ab" * 32]  # the config lies about the layer
    raw_config = json.dumps(config).encode()
    manifest = json.loads(good.manifest)
    manifest["config"].update(size=len(raw_config), digest=sha(raw_config))
    assert manifest["mediaType"] == DOCKER_MANIFEST
    fake.repos["liar"] = {"1": FakeImage(json.dumps(manifest).encode(), raw_config, good.layers, good.diff_ids)}
    before, images_before = snapshot(dockyardd), images(dockyardd)
    out = dockyardd.docker("pull", f"{fake.host}/liar:1", check=False)
    assert out.returncode != 0 and "unpacks to" in out.stderr and "expects sha256:abab" in out.stderr, out.stderr
    assert snapshot(dockyardd) == before and images(dockyardd) == images_before


async def test_identity_token_uses_the_refresh_token_grant(fake: FakeRegistry) -> None:
    from dockyard_distribution.auth import AuthConfig
    from dockyard_distribution.client import RegistryClient, RegistryOptions, Unauthorized

    img = make_image((10_000,), seed=b"t8")
    fake.repos["idt"] = {"1": img}
    fake.token, fake.refresh_token = "access-9", "refresh-xyz"
    async with RegistryClient(fake.host, RegistryOptions(), AuthConfig(identitytoken="refresh-xyz")) as c:
        got = await c.get_manifest("idt", "1")
        assert got.digest == img.digest
    posts = [(m, p) for m, p, h in fake.requests if p.startswith("/token")]
    assert posts and all(m == "POST" for m, _ in posts)
    async with RegistryClient(fake.host, RegistryOptions(), AuthConfig(identitytoken="stale")) as c:
        with pytest.raises(Unauthorized):
            await c.get_manifest("idt", "1")


def test_a_registry_that_goes_away_mid_layer_fails_cleanly(fake: FakeRegistry, dockyardd) -> None:
    fake.repos["gone"] = {"1": make_image((250_000, 250_000), seed=b"t9")}
    fake.drop_after, fake.drop_times, fake.die_mid_layer = 120_000, 1, True
    before, images_before = snapshot(dockyardd), images(dockyardd)
    out = dockyardd.docker("pull", f"{fake.host}/gone:1", check=False)
    assert out.returncode != 0 and "failed after" in out.stderr, out.stderr
    assert snapshot(dockyardd) == before and images(dockyardd) == images_before
