"""The daemon's image policy: a file in containers-policy.json's shape (``trust-policy``).

::

    {"default": [{"type": "insecureAcceptAnything"}],
     "transports": {"docker": {
        "127.0.0.1:5000/app":  [{"type": "sigstoreSigned", "keyPath": "/etc/keys/app.pub"}],
        "127.0.0.1:5000":      [{"type": "reject"}]}}}

Scopes are containers/image's for the ``docker`` transport, most specific first:
``host/repo:tag``, ``host/repo``, each parent namespace, ``host``, ``*.domain`` wildcards, then
``default``. Every requirement of the chosen entry must hold: ``insecureAcceptAnything``,
``reject``, ``sigstoreSigned`` with ``keyPath``, ``keyPaths`` or ``keyData`` (base64 PEM): at
least one signature stored beside the image in its registry verifies with one of the keys and
signs exactly the image's top-level digest. ``signedBy`` (GPG) is not supported: an entry using
it refuses, saying so. ``signedIdentity`` is accepted and not enforced (cosign's rule).

The file is read again when it changes; one that does not parse refuses every image (fail
closed), naming the file and the parse error; at daemon start it stops the daemon.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, Forbidden, InvalidArgument
from dockyard.specs.storage import ImageCheck, ImagePolicy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# keys and cosign (cryptography, bcrypt: ~15 MiB) are imported once a policy file is read: the
# daemon offers FilePolicy at every start, most have no trust-policy.

TYPES = ("insecureAcceptAnything", "reject", "sigstoreSigned", "signedBy")


class PolicyError(InvalidArgument):
    """A policy file that does not parse or holds an unknown requirement."""


class PolicyDenied(Forbidden):
    """The policy refuses an image."""


@dataclass(frozen=True)
class Entry:
    scope: str  # "default" or the transports.docker key
    requirements: tuple[dict[str, Any], ...]
    keys: tuple[tuple[ec.EllipticCurvePublicKey, ...], ...]  # per requirement (sigstoreSigned)

    def describe(self, path: Path) -> str:
        kinds = ", ".join(str(r.get("type")) for r in self.requirements)
        where = "default" if self.scope == "default" else f'transports.docker["{self.scope}"]'
        return f"{path}: {where} ({kinds})"


@dataclass(frozen=True)
class Policy:
    path: Path
    default: Entry
    scopes: dict[str, Entry]

    def entry_for(self, reference: str) -> Entry:
        for scope in scopes_of(reference):
            if scope in self.scopes:
                return self.scopes[scope]
        return self.default


def scopes_of(reference: str) -> list[str]:
    """containers/image's docker scopes for ``host/ns/repo[:tag]``, most specific first."""
    out = []
    name, tag = reference, ""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        name, tag = reference[:colon], reference[colon + 1:]
    if tag:
        out.append(f"{name}:{tag}")
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
        out.append("/".join(parts[:i]))
    host = parts[0].split(":")[0]
    labels = host.split(".")
    for i in range(1, len(labels)):
        out.append("*." + ".".join(labels[i:]))
    return out


def _requirements(raw: Any, where: str, base: Path) -> Entry:
    from dockyard_provenance import keys as keymod

    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{where}: must be a non-empty list of requirements")
    reqs, keys = [], []
    for r in raw:
        if not isinstance(r, dict) or r.get("type") not in TYPES:
            kind = r.get("type") if isinstance(r, dict) else r
            raise PolicyError(f"{where}: unknown requirement type {kind!r} (known: {', '.join(TYPES)})")
        found: list[ec.EllipticCurvePublicKey] = []
        if r["type"] == "sigstoreSigned":
            paths = ([r["keyPath"]] if "keyPath" in r else []) + list(r.get("keyPaths") or [])
            datas = ([r["keyData"]] if "keyData" in r else []) + list(r.get("keyDatas") or [])
            if not paths and not datas:
                raise PolicyError(f"{where}: sigstoreSigned needs keyPath, keyPaths or keyData "
                                  "(keyless Fulcio/Rekor verification needs the network)")
            for p in paths:
                kp = (base / str(p)) if not os.path.isabs(str(p)) else Path(str(p))
                try:
                    found.append(keymod.load_public(kp.read_bytes(), str(kp)))
                except OSError as exc:
                    raise PolicyError(f"{where}: keyPath {kp}: {exc.strerror}") from exc
            for d in datas:
                try:
                    pem = base64.b64decode(str(d), validate=True)
                except ValueError as exc:
                    raise PolicyError(f"{where}: keyData is not base64") from exc
                found.append(keymod.load_public(pem, f"{where}: keyData"))
        reqs.append(r)
        keys.append(tuple(found))
    return Entry(where, tuple(reqs), tuple(keys))


def load(path: Path) -> Policy:
    from dockyard_provenance import keys as keymod

    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise PolicyError(f"policy file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PolicyError(f"policy file {path} does not parse: {exc}") from exc
    if not isinstance(doc, dict) or "default" not in doc:
        raise PolicyError(f"policy file {path}: a JSON object with a \"default\" entry is required")
    try:
        default = _requirements(doc["default"], "default", path.parent)
        default = Entry("default", default.requirements, default.keys)
        scopes: dict[str, Entry] = {}
        transports = doc.get("transports") or {}
        if not isinstance(transports, dict):
            raise PolicyError("transports must be an object")
        for scope, raw in (transports.get("docker") or {}).items():
            e = _requirements(raw, f'transports.docker["{scope}"]', path.parent)
            scopes[scope] = Entry(scope, e.requirements, e.keys)
    except keymod.KeyError_ as exc:
        raise PolicyError(f"policy file {path}: {exc}") from exc
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from exc
    return Policy(path, default, scopes)


class FilePolicy(ImagePolicy):
    """The policy of the daemon setting ``trust-policy`` ("" = no policy: everything passes)."""

    def __init__(self) -> None:
        self._cache: tuple[str, int, int, Policy] | None = None

    def policy(self, kernel: Any) -> Policy | None:
        path = str(kernel.config.get("trust-policy") or "")
        if not path:
            return None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise PolicyDenied(f"trust policy {path}: {exc.strerror}; every image is refused") from exc
        if self._cache and self._cache[:3] == (path, st.st_mtime_ns, st.st_size):
            return self._cache[3]
        pol = load(Path(path))
        self._cache = (path, st.st_mtime_ns, st.st_size, pol)
        return pol

    async def check(self, kernel: Any, check: ImageCheck) -> None:
        try:
            pol = self.policy(kernel)
        except PolicyError as exc:
            raise PolicyDenied(f"image {check.reference or '(untagged)'} refused: {exc}") from exc
        if pol is None:
            return
        entry = pol.entry_for(check.reference) if check.reference else pol.default
        what = f"{check.reference or '(untagged image)'}" + (f"@{check.digest}" if check.digest else "")
        for req, pubkeys in zip(entry.requirements, entry.keys, strict=True):
            kind = req["type"]
            if kind == "insecureAcceptAnything":
                continue
            if kind == "reject":
                raise PolicyDenied(f"image {what} refused by policy {entry.describe(pol.path)}: rejected")
            if kind == "signedBy":
                raise PolicyDenied(f"image {what} refused by policy {entry.describe(pol.path)}: "
                                   "signedBy (GPG) is not supported; use sigstoreSigned")
            if not check.digest:
                raise PolicyDenied(f"image {what} refused by policy {entry.describe(pol.path)}: its registry "
                                   "digest is unknown here (a loaded or built image), so no signature can "
                                   "be checked")
            from dockyard_provenance import cosign

            ref = cosign.parse(check.reference)
            try:
                session = cosign.open_session(kernel, ref)
                try:
                    sigs = await cosign.fetch(session, ref.path, check.digest)
                finally:
                    await session.close()
            except DockyardError as exc:
                raise PolicyDenied(f"image {what} refused by policy {entry.describe(pol.path)}: "
                                   f"signatures could not be read: {exc}") from exc
            verdict = cosign.verify(sigs, list(pubkeys), check.digest)
            if not verdict.good:
                why = "; ".join(verdict.problems) or "no signature is stored beside it"
                raise PolicyDenied(f"image {what} refused by policy {entry.describe(pol.path)}: "
                                   f"no valid signature: {why}")
