"""dockyard.reference: docker-compatible parsing and normalization."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.reference import InvalidReference, Reference, familiar, normalize, parse_normalized

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,canonical,short", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("quay.io/org/repo-name_2.x:v1.0-rc", "quay.io/org/repo-name_2.x:v1.0-rc", "quay.io/org/repo-name_2.x:v1.0-rc"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("My.Registry:443/a__b", "My.Registry:443/a__b:latest", "My.Registry:443/a__b:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
])
def test_normalize(text: str, canonical: str, short: str) -> None:
    ref = parse_normalized(text)
    assert str(ref) == canonical == normalize(text)
    assert ref.familiar() == short == familiar(text)
    assert parse_normalized(canonical) == ref


def test_parts() -> None:
    ref = parse_normalized("localhost:5000/team/app:2")
    assert ref == Reference("localhost:5000", "team/app", "2", None)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    assert str(ref.repository()) == "localhost:5000/team/app"
    assert str(parse_normalized("busybox").with_tag("musl")) == "docker.io/library/busybox:musl"
    assert parse_normalized("busybox", default_tag=False).tag is None
    for bad in ("-bad", "v1\n"):
        with pytest.raises(InvalidReference):
            ref.with_tag(bad)


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("user/App", "lowercase"),
    ("busybox:", "invalid tag"),
    ("busybox:-x", "invalid tag"),
    ("busybox:" + "t" * 129, "invalid tag"),
    ("a" * 64, "64-byte hexadecimal"),
    ("busybox@sha256:abc", "invalid digest"),
    ("busybox@sha256:" + "A" * 64, "invalid sha256 digest"),
    ("busybox@", "invalid digest"),
    ("bad..name", "invalid repository name"),
    ("-lead", "invalid repository name"),
    ("a//b", "invalid repository name"),
    ("reg-.io/x", "invalid registry host"),
    (":tag", "missing repository name"),
    (" busybox", "whitespace"),
    ("x/" + "a" * 260, "longer than 255"),
    ("exa mple/x", "invalid"),
])
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason) as info:
        parse_normalized(text)
    assert isinstance(info.value, InvalidArgument)
    assert info.value.reference == text
