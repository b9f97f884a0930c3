"""``dockyard.platforms`` against containerd's documented cases (platforms_test.go
TestParseSelector / TestParseSelectorInvalid / TestFormatAllEncoding, compare_test.go TestOnly /
TestOnlyStrict, the Windows compatibility rules), as tables."""

from __future__ import annotations

import pytest

from dockyard import platforms as P
from dockyard.errors import InvalidArgument
from dockyard.platforms import Platform


@pytest.fixture(autouse=True)
def amd64_linux_host(monkeypatch):
    monkeypatch.setattr(P._platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(P._platform, "system", lambda: "Linux")


# (input, expected Platform, also matched by NewMatcher(parsed), formatted, use FormatAll)
PARSE = [
    ("linux/arm64", Platform("linux", "arm64"),
     [Platform("linux", "aarch64"), Platform("linux", "aarch64", "v8"), Platform("linux", "arm64", "v8")],
     "linux/arm64", False),
    ("linux/arm64/v8", Platform("linux", "arm64", "v8"),
     [Platform("linux", "aarch64"), Platform("linux", "aarch64", "v8"), Platform("linux", "arm64")],
     "linux/arm64/v8", False),
    ("linux/arm", Platform("linux", "arm"),
     [Platform("linux", "arm", "v7"), Platform("linux", "armhf"), Platform("linux", "arm", "7")], "linux/arm", False),
    ("linux/arm/v6", Platform("linux", "arm", "v6"), [Platform("linux", "armel")], "linux/arm/v6", False),
    ("linux/arm/v7", Platform("linux", "arm", "v7"), [Platform("linux", "arm"), Platform("linux", "armhf")],
     "linux/arm/v7", False),
    ("arm", Platform("linux", "arm"), [], "linux/arm", False),
    ("armel", Platform("linux", "arm", "v6"), [], "linux/arm/v6", False),
    ("armhf", Platform("linux", "arm"), [], "linux/arm", False),
    ("Aarch64", Platform("linux", "arm64"), [], "linux/arm64", False),
    ("x86_64", Platform("linux", "amd64"), [], "linux/amd64", False),
    ("Linux/x86_64", Platform("linux", "amd64"), [], "linux/amd64", False),
    ("i386", Platform("linux", "386"), [], "linux/386", False),
    ("linux", Platform("linux", "amd64"), [], "linux/amd64", False),
    ("s390x", Platform("linux", "s390x"), [], "linux/s390x", False),
    ("linux/s390x", Platform("linux", "s390x"), [], "linux/s390x", False),
    ("macOS", Platform("darwin", "amd64"), [], "darwin/amd64", False),
    ("windows", Platform("windows", "amd64"), [], "windows/amd64", False),
    ("windows()", Platform("windows", "amd64"), [], "windows/amd64", True),
    ("windows(10.0.17763)", Platform("windows", "amd64", os_version="10.0.17763"), [],
     "windows(10.0.17763)/amd64", True),
    ("windows(10.0.17763+win32k)", Platform("windows", "amd64", os_version="10.0.17763", os_features=("win32k",)),
     [], "windows(10.0.17763+win32k)/amd64", True),
    ("linux(+gpu)", Platform("linux", "amd64", os_features=("gpu",)), [], "linux(+gpu)/amd64", True),
    ("linux(+gpu+simd)", Platform("linux", "amd64", os_features=("gpu", "simd")), [], "linux(+gpu+simd)/amd64", True),
    ("linux(+unsorted+erofs)", Platform("linux", "amd64", os_features=("unsorted", "erofs")), [],
     "linux(+erofs+unsorted)/amd64", True),
    ("windows(10.0.17763%2Bbuild.42)", Platform("windows", "amd64", os_version="10.0.17763+build.42"), [],
     "windows(10.0.17763%2Bbuild.42)/amd64", True),
    ("windows(50%25done)", Platform("windows", "amd64", os_version="50%done"), [], "windows(50%25done)/amd64", True),
]


@pytest.mark.parametrize(("text", "expected", "matches", "formatted", "v2"), PARSE, ids=[c[0] for c in PARSE])
def test_parse_format_and_match_as_containerd(text, expected, matches, formatted, v2):
    p = P.parse(text)
    assert p == expected
    m = P.ordered([p])
    for other in [expected, *matches]:
        assert m.match(other), other
    out = p.format_all() if v2 else str(p)
    assert out == formatted
    again = P.parse(out)
    assert (again.format_all() if v2 else str(again)) == formatted


@pytest.mark.parametrize("text", ["", "/linux/arm", "linux/arm/", "linux /arm", "linux/&arm", "linux/arm/foo/bar",
                                  "linux/*", "notanos"])
def test_invalid_specifiers(text):
    with pytest.raises(InvalidArgument):
        P.parse(text)


@pytest.mark.parametrize(("plat", "expected"), [
    (Platform("windows", "amd64", os_version="1.0(beta)"), "windows(1.0%28beta%29)/amd64"),
    (Platform("windows", "amd64", os_version="a/b"), "windows(a%2Fb)/amd64"),
    (Platform("linux", "amd64", os_features=("feat+v2",)), "linux(+feat%2Bv2)/amd64"),
    (Platform("windows", "amd64", os_version="10.0+build", os_features=("feat+1",)),
     "windows(10.0%2Bbuild+feat%2B1)/amd64"),
    (Platform("linux", "amd64", os_features=("", "gpu", "", "simd")), "linux(+gpu+simd)/amd64"),
])
def test_format_all_encoding(plat, expected):
    assert plat.format_all() == expected
    if "" not in plat.os_features:
        back = P.parse(expected)
        assert (back.os_version, back.os_features) == (plat.os_version, plat.os_features)


# containerd compare_test.go TestOnly: platform -> (matches, does not match)
ONLY = {
    "linux/amd64": (["linux/amd64", "linux/386"],
                    ["linux/amd64/v2", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"]),
    "linux/amd64/v2": (["linux/amd64", "linux/amd64/v1", "linux/amd64/v2", "linux/386"],
                       ["linux/amd64/v3", "linux/amd64/v4", "linux/arm/v7", "linux/arm64", "windows/amd64"]),
    "linux/amd64/v4": (["linux/amd64/v4", "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"],
                       ["linux/arm64", "windows/amd64"]),
    "linux/386": (["linux/386"], ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"]),
    "windows/amd64": (["windows/amd64", "windows(10.0.17763)/amd64"],
                      ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"]),
    "linux/arm/v8": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
                     ["linux/amd64", "linux/arm/v4", "linux/arm64", "windows/amd64", "windows/arm"]),
    "linux/arm/v7": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
                     ["linux/amd64", "linux/arm/v4", "linux/arm/v8", "linux/arm64", "windows/amd64", "windows/arm"]),
    "linux/arm/v6": (["linux/arm/v5", "linux/arm/v6"],
                     ["linux/amd64", "linux/arm", "linux/arm/v4", "linux/arm/v7", "linux/arm/v8", "linux/arm64"]),
    "linux/arm/v5": (["linux/arm/v5"], ["linux/amd64", "linux/arm", "linux/arm/v4", "linux/arm/v6", "linux/arm64"]),
    "linux/arm/v4": (["linux/arm/v4"], ["linux/amd64", "linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm64"]),
    "linux/arm64/v9": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8", "linux/arm64",
                        "linux/arm64/v8", "linux/arm64/v8.1", "linux/arm64/v8.2", "linux/arm64/v8.3",
                        "linux/arm64/v8.4", "linux/arm64/v8.5", "linux/arm64/v9", "linux/arm64/v9.0"],
                       ["linux/amd64", "linux/arm/v4", "windows/amd64", "windows/arm", "linux/arm64/v8.6"]),
    "linux/arm64/v8.1": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8", "linux/arm64",
                          "linux/arm64/v8", "linux/arm64/v8.1"],
                         ["linux/amd64", "linux/arm/v4", "linux/arm/v9", "linux/arm64/v9", "windows/amd64"]),
    "linux/arm64": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8", "linux/arm64",
                     "linux/arm64/v8"],
                    ["linux/amd64", "linux/arm/v4", "linux/arm/v9", "linux/arm64/v9", "windows/amd64", "windows/arm"]),
}

ONLY_STRICT = {
    "linux/amd64": (["linux/amd64"], ["linux/386", "linux/arm/v7", "linux/arm64", "windows/amd64"]),
    "windows(10.0.17763)/amd64": (["windows/amd64", "windows(10.0.17763)/amd64"], ["linux/amd64", "windows/arm"]),
    "linux/arm/v8": (["linux/arm/v8"], ["linux/arm", "linux/arm/v5", "linux/arm/v7", "linux/arm64"]),
    "linux/arm/v7": (["linux/arm", "linux/arm/v7"], ["linux/arm/v5", "linux/arm/v6", "linux/arm/v8", "linux/arm64"]),
    "linux/arm64/v9": (["linux/arm64/v9", "linux/arm64/v9.0"], ["linux/arm/v8", "linux/arm64/v8", "linux/arm64/v8.1"]),
    "linux/arm64/v8.1": (["linux/arm64/v8.1"], ["linux/arm64/v8", "linux/arm64/v9", "linux/arm/v8"]),
    "linux/arm64": (["linux/arm64", "linux/arm64/v8"], ["linux/arm", "linux/arm/v8", "linux/arm64/v9"]),
}


@pytest.mark.parametrize("want", sorted(ONLY))
def test_only(want):
    yes, no = ONLY[want]
    m = P.only(want)
    assert [p for p in yes if not m.match(P.parse(p))] == []
    assert [p for p in no if m.match(P.parse(p))] == []


@pytest.mark.parametrize("want", sorted(ONLY_STRICT))
def test_only_strict(want):
    yes, no = ONLY_STRICT[want]
    m = P.only_strict(want)
    assert [p for p in yes if not m.match(P.parse(p))] == []
    assert [p for p in no if m.match(P.parse(p))] == []


@pytest.mark.parametrize(("want", "order"), [
    ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]),
    ("linux/arm64", ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
    ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
])
def test_fallbacks_rank_in_order(want, order):
    assert [str(p) for p in P.vector(P.parse(want))] == order
    m = P.only(want)
    candidates = list(reversed(order))
    assert str(m.best(candidates, P.parse)) == order[0]
    assert str(m.best(candidates[:-1], P.parse)) == order[1]


def test_best_prefers_exact_variant_then_fallback_and_skips_others():
    entries = [{"platform": {"os": "linux", "architecture": "arm", "variant": "v6"}, "n": 1},
               {"platform": {"os": "linux", "architecture": "amd64"}, "n": 2},
               {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}, "n": 3},
               {"platform": {"os": "unknown", "architecture": "unknown"}, "n": 4}]
    key = lambda e: Platform.from_descriptor(e["platform"])  # noqa: E731
    assert P.only("linux/arm/v7").best(entries, key)["n"] == 3
    assert P.only("linux/arm/v6").best(entries, key)["n"] == 1
    assert P.only("linux/arm64").best(entries, key)["n"] == 3  # 32-bit fallback of an arm64 host
    assert P.only("linux/arm/v5").best(entries, key) is None


@pytest.mark.parametrize(("host", "image", "ok"), [
    ("10.0.17763.1", "10.0.17763.5", True),    # before WS2022: same build, any revision
    ("10.0.17763.1", "10.0.14393.1", False),
    ("10.0.20348.1", "10.0.17763.1", False),   # older than the stable-ABI LTSC
    ("10.0.22621.1", "10.0.20348.9", True),    # Windows 11 runs WS2022 images
    ("10.0.22621.1", "10.0.26100.1", False),   # never a newer image
    ("10.0.20348.1", "6.3.9600.1", False),     # another major.minor
    ("10.0.20348.1", "", True),                # no version: matches
    ("", "10.0.17763.1", True),
])
def test_windows_os_version(host, image, ok):
    assert P.windows_compatible(host, image) is ok
    want = Platform("windows", "amd64", os_version=host)
    assert P.only(want).match(Platform("windows", "amd64", os_version=image)) is ok


def test_windows_best_prefers_the_newest_compatible_build():
    entries = [Platform("windows", "amd64", os_version=v) for v in ("10.0.17763.1", "10.0.20348.7", "10.0.20348.9")]
    best = P.only(Platform("windows", "amd64", os_version="10.0.22621.1")).best(entries, lambda p: p)
    assert best.os_version == "10.0.20348.9"


@pytest.mark.parametrize(("machine", "expected"), [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64"), ("armv7l", "linux/arm/v7"), ("armv6l", "linux/arm/v6"),
    ("i686", "linux/i686"), ("riscv64", "linux/riscv64"), ("ppc64le", "linux/ppc64le"), ("s390x", "linux/s390x"),
])
def test_host(machine, expected):
    assert str(P.host(machine)) == expected


def test_runnable_native_emulated_or_not():
    class RP:  # a runtime driver's arch.Platform shape
        def __init__(self, os, architecture, variant="", emulated=False):
            self.os, self.architecture, self.variant, self.emulated = os, architecture, variant, emulated

    r = P.Runnable.of([RP("linux", "amd64"), RP("linux", "arm64", emulated=True), RP("linux", "arm", "v7", True)])
    assert r.how("linux/amd64") == "native"
    assert r.how("linux/386") == "native"
    assert r.how("linux/arm64/v8") == "emulated"
    assert r.how("linux/arm/v6") == "emulated"
    assert r.how("linux/arm/v8") == ""  # emulated arm64 (qemu-aarch64) runs no 32-bit arm
    assert r.how("linux/riscv64") == ""
    assert r.how("windows/amd64") == ""
    assert P.Runnable.of(["linux/arm64"]).how("linux/arm/v7") == "native"  # an arm64 host running 32-bit


def test_messages_are_dockerds():
    assert P.no_match_message(P.parse("linux/arm64")) == \
        "no matching manifest for linux/arm64 in the manifest list entries"
    assert P.no_match_message(P.parse("windows(10.0.22631)/amd64")) == \
        "no matching manifest for windows(10.0.22631)/amd64 in the manifest list entries"
    assert P.mismatch_message("busybox", P.parse("linux/arm64"), P.parse("linux/amd64")) == (
        "image with reference busybox was found but does not match the specified platform: "
        "wanted linux/arm64, actual: linux/amd64")


def test_descriptor_round_trip():
    p = Platform("windows", "amd64", "", "10.0.20348.1", ("win32k",))
    assert p.descriptor() == {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1",
                              "os.features": ["win32k"]}
    assert Platform.from_descriptor(p.descriptor()) == p
    assert Platform.from_descriptor(None) == Platform("", "")
