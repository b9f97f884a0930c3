"""Docker Hub mirrors (``registry-mirrors`` / ``--registry-mirror``): validation at load, the
order mirrors -> Docker Hub, skipping a failing mirror, a mirror's path prefix, references of
other registries ignoring mirrors, and a pull through dockyardd served by a mirror.

No traffic leaves the machine: every registry is a fake on 127.0.0.1, the "hub" of the
in-process tests is one of them (``RegistryOptions.hub_host``), and the daemon test's mirror
has the image (it asserts the mirror served it)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeregistry import FakeImage, FakeRegistry, make_image, start

from dockyard.config import Config
from dockyard.errors import InvalidArgument, NotFound, Unavailable
from dockyard.reference import parse_normalized, validate_mirror
from dockyard_distribution import plugin
from dockyard_distribution.client import FileSink, RegistryOptions
from dockyard_distribution.mirrors import first_answer, mirror_client, pull_clients
from dockyard_distribution.transfer import resolve_pull


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once closed: connection refused


@pytest.fixture
def regs() -> Iterator[list[FakeRegistry]]:
    started: list[FakeRegistry] = []

    def make(**kw: object) -> FakeRegistry:
        r = start(**kw)
        started.append(r)
        return r

    yield make  # type: ignore[misc]
    for r in started:
        r.stop()


def served(reg: FakeRegistry) -> list[str]:
    return [p for _m, p, _h in reg.requests if "/manifests/" in p or "/blobs/" in p]


async def pull_plan(options: RegistryOptions, name: str):  # noqa: ANN201
    ref = parse_normalized(name)
    clients = pull_clients(ref, options, None)
    try:
        client, plan = await first_answer(clients, lambda c: resolve_pull(c, ref, None), ref.familiar())
        return client, plan, [c.base_url or c.host for c in clients]
    finally:
        for c in clients:
            await c.close()


def image() -> FakeImage:
    return make_image((20_000,), seed=b"mirror")


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("url,want", [
    ("https://mirror.example", "https://mirror.example/"),
    ("http://127.0.0.1:5000/", "http://127.0.0.1:5000/"),
    ("https://m.example/hub/proxy", "https://m.example/hub/proxy/"),
])
def test_valid_mirrors_are_shown_with_one_trailing_slash(url: str, want: str) -> None:
    assert validate_mirror(url) == want


@pytest.mark.parametrize("url,match", [
    ("mirror.example", "unsupported scheme ''"),
    ("ftp://mirror.example", "unsupported scheme 'ftp'"),
    ("https://m.example/?a=b", "query or fragment"),
    ("https://m.example/#x", "query or fragment"),
    ("https://u:secret@m.example", "username/password not allowed"),
    ("https://", "has no host"),
    ("https://m.example:99999", "not a valid URI"),
])
def test_invalid_mirrors_are_refused(url: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match="^invalid mirror: .*" + match) as info:
        validate_mirror(url)
    assert "secret" not in str(info.value)


def test_an_invalid_mirror_is_rejected_at_config_load(tmp_path: Path) -> None:
    from dockyard.kernel import Kernel

    good = Kernel.build(Config({"data-root": str(tmp_path), "registry-mirrors": ["https://m.example"]}),
                        plugins=[plugin], autoload=False)
    good.validate_config()
    bad = Kernel.build(Config({"data-root": str(tmp_path), "registry-mirrors": ["https://m.example", "ftp://x"]}),
                       plugins=[plugin], autoload=False)
    with pytest.raises(InvalidArgument, match="invalid mirror: unsupported scheme 'ftp'"):
        bad.validate_config()


# ------------------------------------------------------------------ endpoints
async def test_a_docker_io_pull_is_served_by_the_mirror_and_hub_is_not_asked(regs, tmp_path: Path) -> None:
    img = image()
    mirror, hub = regs(prefix="/hub"), regs()
    mirror.repos["library/x"] = {"tag": img}
    opts = RegistryOptions(mirrors=[f"http://{mirror.host}/hub/"], hub_host=hub.host, retries=0)
    client, plan, order = await pull_plan(opts, "x:tag")
    assert order == [f"http://{mirror.host}/hub", hub.host]
    assert plan.top.digest == img.digest
    assert served(mirror)[0] == "/hub/v2/library/x/manifests/tag"  # the prefix is kept
    assert hub.requests == []
    # the layers come from the mirror too
    async with mirror_client(f"http://{mirror.host}/hub", opts) as c:
        await c.download_blob("library/x", plan.layers[0]["digest"], None, FileSink(tmp_path / "l"))
    assert (tmp_path / "l").read_bytes() == img.layers[0]


async def test_failing_mirrors_are_skipped_in_order(regs) -> None:
    img = image()
    missing, broken, good, hub = regs(), regs(manifest_status=503), regs(), regs()
    good.repos["library/x"] = {"tag": img}
    refused = f"http://127.0.0.1:{closed_port()}"
    opts = RegistryOptions(mirrors=[refused, f"http://{missing.host}", f"http://{broken.host}",
                                    f"http://{good.host}"], hub_host=hub.host, retries=0)
    client, plan, _order = await pull_plan(opts, "docker.io/library/x:tag")
    assert client.base_url == f"http://{good.host}" and plan.top.digest == img.digest
    assert served(missing) == ["/v2/library/x/manifests/tag"]  # 404: next
    assert served(broken) == ["/v2/library/x/manifests/tag"]  # 503: next
    assert hub.requests == []


async def test_docker_hub_is_last_and_its_error_is_the_pull_error(regs) -> None:
    img = image()
    empty, hub = regs(), regs()
    hub.repos["library/x"] = {"tag": img}
    opts = RegistryOptions(mirrors=[f"http://{empty.host}"], hub_host=hub.host, retries=0)
    client, plan, _ = await pull_plan(opts, "x:tag")
    assert client.host == hub.host and client.base_url == "" and plan.top.digest == img.digest
    # the "hub" unreachable too: a clear error naming it, nothing else tried
    gone = f"127.0.0.1:{closed_port()}"
    opts = RegistryOptions(mirrors=[f"http://{empty.host}"], hub_host=gone, retries=0)
    with pytest.raises(Unavailable, match=f"cannot reach registry {gone}"):
        await pull_plan(opts, "x:tag")
    # a tag no endpoint has: the hub's NotFound
    opts = RegistryOptions(mirrors=[f"http://{empty.host}"], hub_host=hub.host, retries=0)
    with pytest.raises(NotFound, match="manifest for nope:tag not found"):
        await pull_plan(opts, "nope:tag")


async def test_other_registries_ignore_mirrors(regs) -> None:
    img = image()
    mirror, other = regs(), regs()
    mirror.repos["library/x"] = {"tag": img}
    other.repos["library/x"] = {"tag": img}
    opts = RegistryOptions(mirrors=[f"http://{mirror.host}"], hub_host=f"127.0.0.1:{closed_port()}", retries=0)
    client, _plan, order = await pull_plan(opts, f"{other.host}/library/x:tag")
    assert order == [other.host] and client.host == other.host
    assert mirror.requests == []


async def test_plain_http_mirrors_only_on_loopback_or_insecure_registries() -> None:
    opts = RegistryOptions(retries=0)
    async with mirror_client("http://10.255.255.1:5000", opts) as c:
        with pytest.raises(Unavailable, match="plain HTTP is used only for loopback or a registry listed"):
            await c.endpoint()  # refused before any connection
    # listed as insecure: the mirror's own scheme and address are used
    opts = RegistryOptions(insecure_registries=["10.0.0.0/8"], retries=0)
    c = mirror_client("http://10.255.255.1:5000/p", opts)
    assert c.base_url == "http://10.255.255.1:5000/p"
    await c.close()


# ------------------------------------------------------------------ through dockyardd
@pytest.mark.integration
def test_dockyardd_pulls_docker_io_through_its_mirror_and_info_shows_it(regs, dockyardd_factory) -> None:
    img = image()
    mirror = regs(prefix="/m")
    mirror.repos["library/mirrored"] = {"tag": img}
    url = f"http://{mirror.host}/m"
    d = dockyardd_factory("mir", config={"registry-mirrors": [url], "storage-driver": "vfs"})
    info = json.loads(d.docker("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout)
    assert info == [url + "/"]
    out = d.docker("pull", "mirrored:tag")
    assert f"Digest: {img.digest}" in out.stdout, out.stdout
    assert "/m/v2/library/mirrored/manifests/tag" in served(mirror)
    assert any(p.startswith("/m/v2/library/mirrored/blobs/") for p in served(mirror))
