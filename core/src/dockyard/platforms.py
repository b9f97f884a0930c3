"""OCI platforms: parsing, normalization and matching with containerd's fallbacks.

One module every area uses to decide "does an image built for P run here / on that node":
the distribution plugin picks an index entry, the image store picks a member of a stored
index, the container service picks a runtime, the swarm scheduler filters nodes. The rules
are containerd's ``platforms`` package (``Parse``, ``Normalize``, ``Only``, ``OnlyStrict``,
the Windows ``os.version`` matcher), so dockyard chooses the manifest dockerd would:

- Normalization: ``x86_64``/``x86-64`` → ``amd64`` (``v1`` is no variant), ``aarch64`` →
  ``arm64`` (``v8`` is no variant), ``armhf`` → ``arm/v7``, ``armel`` → ``arm/v6``, ``arm``
  without a variant is ``v7``, ``i386`` → ``386``, ``macos`` → ``darwin``.
- Fallbacks (:func:`only`): ``amd64/vN`` also runs ``vN-1`` … ``v1`` then ``386``; ``arm64``
  (``v8``) also runs 32-bit ``arm/v8`` … ``v5`` (an arm64 host that runs 32-bit); ``arm64/v9.x``
  runs ``v9.{x-1}`` … ``v9`` and ``v8.{x+5}`` … ``v8``; ``arm/v7`` runs ``v6`` and ``v5``. Earlier
  entries of the vector rank better.
- Windows: a request carrying ``os.version`` matches an image of the same major.minor whose
  build is the host's (hosts before Windows Server 2022) or between the newest stable-ABI LTSC
  build (20348) and the host's; an empty version on either side matches.

Stdlib only, no I/O except :func:`host`, which reads ``platform.machine()`` (and
``/proc/cpuinfo`` for 32-bit ARM).

.. versionadded:: 0.3
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from dockyard.errors import InvalidArgument

T = TypeVar("T")

KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
                      "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"})
KNOWN_ARCH = frozenset({"386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64",
                        "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64",
                        "s390", "s390x", "sparc", "sparc64", "wasm"})
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_OS_RE = re.compile(r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$")
#: Windows builds: before Windows Server 2022 (20348) process isolation needs the host's build;
#: from it on, images of a stable-ABI LTSC release run on any later host.
_WS2022 = 20348
_COMPAT_LTSC = (20348,)


@dataclass(frozen=True)
class Platform:
    """An OCI platform (``os``, ``architecture``, ``variant``, ``os.version``, ``os.features``).

    ``str()`` is containerd's ``Format`` (``linux/arm64``, ``linux/arm/v7``), the form dockerd's
    errors use; :meth:`format_all` adds the Windows version and features
    (``windows(10.0.20348)/amd64``).
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        if not self.os:
            return "unknown"
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def format_all(self) -> str:
        if not self.os:
            return "unknown"
        opts = _encode(self.os_version) + "".join("+" + _encode(f) for f in sorted(self.os_features) if f)
        head = f"{self.os}({opts})" if opts else self.os
        return "/".join(p for p in (head, self.architecture, self.variant) if p)

    def normalized(self) -> Platform:
        return normalize(self)

    def descriptor(self) -> dict[str, Any]:
        """The OCI ``platform`` object of an index entry (empty fields left out)."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_descriptor(cls, plat: Any) -> Platform:
        """From an OCI ``platform`` object or an image config (``os``, ``architecture``,
        ``variant``, ``os.version``, ``os.features``); not normalized."""
        if not isinstance(plat, dict):
            return cls("", "")
        feats = plat.get("os.features") or ()
        return cls(str(plat.get("os") or ""), str(plat.get("architecture") or ""), str(plat.get("variant") or ""),
                   str(plat.get("os.version") or ""),
                   tuple(str(f) for f in feats) if isinstance(feats, (list, tuple)) else ())


# ------------------------------------------------------------------------------------ normalize
def normalize_os(os_: str) -> str:
    os_ = (os_ or _host_os()).lower()
    return "darwin" if os_ == "macos" else os_


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """containerd's ``normalizeArch``: the canonical ``(architecture, variant)``."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant.endswith(".0"):  # v9.0 is v9 (containerd's matcher treats them alike)
            variant = variant[:-2]
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    """containerd's ``Normalize``: canonical os, architecture and variant; features sorted, unique."""
    arch, variant = normalize_arch(p.architecture, p.variant)
    return replace(p, os=normalize_os(p.os), architecture=arch, variant=variant,
                   os_features=tuple(sorted(set(p.os_features))))


# ------------------------------------------------------------------------------------ parse
def parse(specifier: str) -> Platform:
    """containerd's ``Parse``: ``os``, ``arch``, ``os/arch``, ``os/arch/variant``, with
    ``os(version+feature...)`` (``windows(10.0.17763)/amd64``). A lone OS takes the host's
    architecture, a lone architecture the host's OS. Raises InvalidArgument worded as
    containerd's errors."""
    if not isinstance(specifier, str) or not specifier:
        raise InvalidArgument(f'"{specifier}": unknown operating system or architecture: invalid argument')
    if "*" in specifier:
        raise InvalidArgument(f'"{specifier}": wildcards not yet supported: invalid argument')
    parts = specifier.split("/", 3)
    m = _OS_RE.match(parts[0])
    if m is None:
        raise InvalidArgument(f'"{parts[0]}" is an invalid OS component of "{specifier}": OSAndVersion specifier '
                              f"component must match \"{_OS_RE.pattern}\": invalid argument")
    for part in parts[1:]:
        if not _COMPONENT_RE.match(part):
            raise InvalidArgument(f'"{part}" is an invalid component of "{specifier}": platform specifier component '
                                  f"must match \"{_COMPONENT_RE.pattern}\": invalid argument")
    os_ = normalize_os(m.group(1))
    os_version = _decode(m.group(2) or "")
    features = tuple(_decode(f) for f in (m.group(3) or "")[1:].split("+") if f) if m.group(3) else ()
    if len(parts) == 1:
        if os_ in KNOWN_OS:
            h = host()
            variant = h.variant if h.architecture == "arm" and h.variant != "v7" else ""
            return Platform(os_, h.architecture, variant, os_version, features)
        arch, variant = normalize_arch(parts[0])
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch in KNOWN_ARCH:
            return Platform(_host_os(), arch, variant)
        raise InvalidArgument(f'"{specifier}": unknown operating system or architecture: invalid argument')
    if len(parts) == 2:
        arch, variant = normalize_arch(parts[1])
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(os_, arch, variant, os_version, features)
    if len(parts) == 3:
        arch, variant = normalize_arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(os_, arch, variant, os_version, features)
    raise InvalidArgument(f'"{specifier}": cannot parse platform specifier: invalid argument')


def _encode(v: str) -> str:
    for a, b in (("%", "%25"), ("+", "%2B"), ("(", "%28"), (")", "%29"), ("/", "%2F")):
        v = v.replace(a, b)
    return v


def _decode(v: str) -> str:
    if "%" not in v:
        return v
    from urllib.parse import unquote

    return unquote(v)


# ------------------------------------------------------------------------------------ host
def _host_os() -> str:
    system = _platform.system().lower()
    return system or "linux"


def host(machine: str | None = None, os_: str | None = None) -> Platform:
    """This host's platform, normalized (``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``).

    A 32-bit ARM host's variant is read from ``/proc/cpuinfo`` (``CPU architecture: 7``) as
    containerd's ``cpuVariant`` does; otherwise ``v7``."""
    m = (machine if machine is not None else _platform.machine()).lower()
    arch, variant = normalize_arch(m)
    if m.startswith("armv") and m[4:5].isdigit():
        arch, variant = "arm", "v" + m[4]
    if arch == "arm" and machine is None:
        variant = _cpuinfo_arm_variant() or variant
    return normalize(Platform(os_ or _host_os(), arch, variant))


def _cpuinfo_arm_variant() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() == "cpu architecture":
                    v = value.strip().split()[0] if value.strip() else ""
                    return {"7": "v7", "8": "v8", "6": "v6", "5": "v5", "aarch64": "v8"}.get(v.lower(), "")
    except OSError:
        return ""
    return ""


# ------------------------------------------------------------------------------------ matching
def vector(p: Platform) -> list[Platform]:
    """containerd's ``platformVector``: ``p`` then what it also runs, best first (normalized)."""
    return [normalize(v) for v in _vector(normalize(p))]


def _vector(p: Platform) -> list[Platform]:
    out = [p]

    def add(arch: str, variant: str) -> None:
        out.append(Platform(p.os, arch, variant, p.os_version, p.os_features))

    if p.architecture == "amd64":
        level = _vnum(p.variant)
        if level is not None and level > 1:
            for lv in range(level - 1, 0, -1):
                add("amd64", f"v{lv}")
        add("386", "")
    elif p.architecture == "arm":
        level = _vnum(p.variant)
        if level is not None and level > 5:
            for lv in range(level - 1, 4, -1):
                add("arm", f"v{lv}")
    elif p.architecture == "arm64":
        variant = p.variant or "v8"
        major_s, _, minor_s = variant.partition(".")
        major = _vnum(major_s)
        if major is not None and major >= 8:
            minor = int(minor_s) if len(variant) == 4 and minor_s.isdigit() else 0
            if major == 9:
                for mi in range(minor - 1, -1, -1):
                    add("arm64", f"v9.{mi}" if mi else "v9")
                minor, major = minor + 5, 8
                add("arm64", f"v8.{minor}")
            for mi in range(minor - 1, -1, -1):
                add("arm64", f"v{major}.{mi}" if mi else f"v{major}")
        if variant.startswith(("v8.", "v9.")):
            variant = "v8"
        out.extend(_vector(Platform(p.os, "arm", variant, p.os_version, p.os_features)))
    return out


def _vnum(variant: str) -> int | None:
    s = variant[1:] if variant.startswith("v") else variant
    return int(s) if s.isdigit() else None


def _windows_build(version: str) -> tuple[int, int, int] | None:
    parts = version.split(".")
    if len(parts) < 3:
        return None
    try:
        major, minor, build = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (0 <= major < 256 and 0 <= minor < 256 and 0 <= build < 65536):
        return None
    return major, minor, build


def windows_compatible(host_version: str, image_version: str) -> bool:
    """Whether a Windows image of ``image_version`` runs (process isolation) on a host of
    ``host_version`` (``10.0.20348.2527`` forms); an unknown version on either side matches."""
    h = _windows_build(host_version)
    if h is None or not image_version:
        return True
    c = _windows_build(image_version) or (0, 0, 0)
    if h[:2] != c[:2]:
        return False
    if h[2] < _WS2022:
        return h[2] == c[2]
    ltsc = max((b for b in _COMPAT_LTSC if h[2] >= b), default=0)
    return ltsc <= c[2] <= h[2]


def _same(want: Platform, have: Platform) -> bool:
    """containerd's ``matcher.Match``: equal after normalization, the Windows version
    compatible, the candidate's os.features a subset of the wanted ones."""
    have = normalize(have)
    if (want.os, want.architecture, want.variant) != (have.os, have.architecture, have.variant):
        return False
    if want.os == "windows" and not windows_compatible(want.os_version, have.os_version):
        return False
    return set(have.os_features) <= set(want.os_features)


@dataclass(frozen=True)
class Matcher:
    """An ordered matcher (containerd's ``Ordered``): :meth:`rank` is the index of the first
    vector entry a candidate matches (lower is better), None when none does."""

    platforms: tuple[Platform, ...]

    def rank(self, candidate: Platform) -> int | None:
        for i, want in enumerate(self.platforms):
            if _same(want, candidate):
                return i
        return None

    def match(self, candidate: Platform) -> bool:
        return self.rank(candidate) is not None

    def best(self, items: Iterable[T], key: Callable[[T], Platform]) -> T | None:
        """The item whose platform ranks best (first of equals, and for Windows the newest
        ``os.version``), None when none matches."""
        found: list[tuple[int, str, int, T]] = []
        for i, item in enumerate(items):
            plat = key(item)
            r = self.rank(plat)
            if r is not None:
                found.append((r, plat.os_version, i, item))
        if not found:
            return None
        found.sort(key=lambda t: (t[0], _neg_version(t[1]), t[2]))
        return found[0][3]

    def __str__(self) -> str:
        return str(self.platforms[0]) if self.platforms else "unknown"


def _neg_version(v: str) -> tuple[int, ...]:
    parts = []
    for p in v.split("."):
        parts.append(-int(p) if p.isdigit() else 0)
    return tuple(parts)


def only(p: Platform | str) -> Matcher:
    """containerd's ``Only``: ``p`` and every platform it also runs, in preference order."""
    return ordered(vector(parse(p) if isinstance(p, str) else p))


def only_strict(p: Platform | str) -> Matcher:
    """containerd's ``OnlyStrict``: ``p`` alone (normalized forms still match)."""
    return Matcher((normalize(parse(p) if isinstance(p, str) else p),))


def ordered(platforms: Sequence[Platform]) -> Matcher:
    """containerd's ``Ordered``: any of ``platforms``, earlier ones preferred."""
    return Matcher(tuple(normalize(p) for p in platforms))


def default_matcher() -> Matcher:
    """What this host runs natively (containerd's ``Default()``, i.e. ``Only(host())``)."""
    return only(host())


# ------------------------------------------------------------------------------------ runtimes
@dataclass(frozen=True)
class Runnable:
    """How a host (or node) runs a platform: ``native``, ``emulated`` or not at all.

    Native platforms take containerd's fallbacks (an arm64 host runs 32-bit arm, amd64 runs
    386); an emulated one only its own architecture's older variants (a binfmt handler
    registers one machine: ``qemu-aarch64`` runs no 32-bit arm)."""

    native: tuple[Platform, ...] = ()
    emulated: tuple[Platform, ...] = ()

    @classmethod
    def of(cls, platforms: Iterable[Any]) -> Runnable:
        """From objects with ``os``, ``architecture``, ``variant`` and an ``emulated`` flag (a
        runtime driver's ``platforms()``) or platform strings (``linux/arm64``; native)."""
        native: list[Platform] = []
        emulated: list[Platform] = []
        for p in platforms:
            if isinstance(p, str):
                native.append(normalize(parse(p)))
                continue
            plat = normalize(Platform(p.os, p.architecture, getattr(p, "variant", "") or "",
                                      getattr(p, "os_version", "") or ""))
            (emulated if getattr(p, "emulated", False) else native).append(plat)
        return cls(tuple(native), tuple(emulated))

    @classmethod
    def named(cls, native: Iterable[str], emulated: Iterable[str] = ()) -> Runnable:
        """From platform strings (``linux/amd64``; ``linux/arm64`` emulated)."""
        return cls(tuple(normalize(parse(p)) for p in native), tuple(normalize(parse(p)) for p in emulated))

    def how(self, image: Platform | str) -> str:
        """``"native"``, ``"emulated"`` or ``""`` for an image built for ``image``."""
        want = normalize(parse(image) if isinstance(image, str) else image)
        for p in self.native:
            if only(p).match(want):
                return "native"
        for p in self.emulated:  # an emulator runs its own architecture only (qemu-aarch64 no 32-bit arm)
            if ordered([v for v in vector(p) if v.architecture == p.architecture]).match(want):
                return "emulated"
        return ""


def no_match_message(want: Platform) -> str:
    """dockerd's pull error when an index lists no entry for ``want``."""
    shown = want.format_all() if want.os == "windows" else str(want)
    return f"no matching manifest for {shown} in the manifest list entries"


def mismatch_message(ref: str, want: Platform, actual: Platform) -> str:
    """dockerd's create/pull error when a local image is for another platform."""
    return (f"image with reference {ref} was found but does not match the specified platform: "
            f"wanted {want}, actual: {actual}")


__all__ = ["KNOWN_ARCH", "KNOWN_OS", "Matcher", "Platform", "Runnable", "default_matcher", "host",
           "mismatch_message", "no_match_message", "normalize", "normalize_arch", "normalize_os", "only",
           "only_strict", "ordered", "parse", "vector", "windows_compatible"]
