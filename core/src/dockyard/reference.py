"""Docker-style image references: parsing, normalization, familiar display form.

Grammar (as in ``distribution/reference``)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain "/"] path-component ["/" path-component]*
    domain      := host [":" port]
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [\\w][\\w.-]{0,127}
    digest      := algorithm ":" hex

:func:`parse_normalized` gives the canonical form: ``busybox`` is
``docker.io/library/busybox:latest``; :meth:`Reference.familiar` gives ``busybox:latest`` back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dockyard.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(InvalidArgument):
    """A string that is not a valid image reference."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid reference format {reference!r}: {reason}")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``domain`` is empty only for un-normalized parses."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path`` (the repository), e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def familiar_name(self) -> str:
        """The repository as users type it: ``busybox``, ``user/app``, ``quay.io/x/y``."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            return path
        return self.name

    def familiar(self) -> str:
        """The short display form: ``busybox:latest``, ``localhost:5000/x:1``, ``x@sha256:...``."""
        out = self.familiar_name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(tag, "invalid tag")
        return Reference(self.domain, self.path, tag, self.digest)

    def repository(self) -> Reference:
        """The name alone, without tag or digest."""
        return Reference(self.domain, self.path)


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        return DEFAULT_DOMAIN, name
    domain, rest = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    return domain, rest


def parse_normalized(text: str, default_tag: bool = True) -> Reference:
    """Parse a reference the way the docker CLI does and normalize it.

    ``busybox`` → ``docker.io/library/busybox:latest`` (the ``latest`` tag is added only when
    there is neither a tag nor a digest, and only if ``default_tag``). Raises
    :class:`InvalidReference` with the reason.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference(str(text), "empty reference")
    if text != text.strip():
        raise InvalidReference(text, "leading or trailing whitespace")
    if _HEX64_RE.fullmatch(text):
        raise InvalidReference(text, "cannot specify 64-byte hexadecimal strings (an image ID is not a name)")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(text, f"invalid digest {digest!r}")
        algo, hexpart = digest.split(":", 1)
        want = _DIGEST_HEX_LEN.get(algo)
        if want is not None and (len(hexpart) != want or hexpart != hexpart.lower()):
            raise InvalidReference(text, f"invalid {algo} digest {digest!r}")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(text, f"invalid tag {tag!r}")
    if not rest:
        raise InvalidReference(text, "missing repository name")
    domain, path = _split_domain(rest)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidReference(text, f"invalid registry host {domain!r}")
    if path != path.lower() and _PATH_RE.fullmatch(path.lower()):
        raise InvalidReference(text, "repository name must be lowercase")
    if not _PATH_RE.fullmatch(path):
        raise InvalidReference(text, f"invalid repository name {path!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(text, f"repository name longer than {NAME_TOTAL_LENGTH_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def normalize(text: str) -> str:
    """The canonical string form of ``text`` (``docker.io/library/busybox:latest``)."""
    return str(parse_normalized(text))


def familiar(text: str) -> str:
    """The familiar display form of ``text`` (``busybox:latest``)."""
    return parse_normalized(text).familiar()


def validate_mirror(value: Any) -> str:
    """dockerd's ``ValidateMirror``: an http(s) URL without query, fragment or user info;
    returned with one trailing ``/`` (how ``docker info`` shows it)."""
    text = str(value) if isinstance(value, str) else ""
    if not isinstance(value, str) or not text:
        raise InvalidArgument(f"invalid mirror: {value!r} is not a valid URI")
    try:
        uri = urlsplit(text)
        _ = uri.port
    except ValueError as exc:
        raise InvalidArgument(f"invalid mirror: {text!r} is not a valid URI") from exc
    if uri.scheme not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror: unsupported scheme {uri.scheme!r} in {text!r}")
    if uri.query or uri.fragment or "?" in text or "#" in text:
        raise InvalidArgument(f"invalid mirror: query or fragment at end of the URI {text!r}")
    if uri.username is not None or uri.password is not None:
        raise InvalidArgument("invalid mirror: username/password not allowed in URI "
                              f"{uri.scheme}://{uri.username}:xxxxx@{uri.hostname}")
    if not uri.hostname:
        raise InvalidArgument(f"invalid mirror: {text!r} has no host")
    return text.rstrip("/") + "/"
