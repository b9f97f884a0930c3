"""Signatures stored as cosign stores them, through core's registry session.

The signatures of manifest ``sha256:H`` in repository ``R`` live at ``R:sha256-H.sig``: an OCI
image manifest whose layers are one signature each, media type
``application/vnd.dev.cosign.simplesigning.v1+json``, the blob the simple-signing payload and
the base64 ECDSA signature in the ``dev.cosignproject.cosign/signature`` annotation. The config
lists the layers' digests as diff IDs (cosign's shape). Adding a signature rewrites the
manifest with one more layer (an identical layer is not added twice). For a multi-platform
image the index's digest is signed, as cosign does.

Verification (cosign's rules): the signature over the exact payload bytes under one of the
keys, then the payload's ``docker-manifest-digest`` equal to the digest being verified (so a
valid signature of another digest, replayed, fails), ``type`` the cosign one. The
``docker-reference`` is reported, not enforced (cosign ignores it too).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.reference import InvalidReference, Reference, parse_normalized
from dockyard.specs.storage import RegistrySession, RegistrySessions
from dockyard_provenance import keys as keymod

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_TYPE = "cosign container image signature"


def tag_of(digest: str, kind: str) -> str:
    """cosign's tag beside an image: ``sha256-<hex>.sig`` (signatures), ``.att`` (attestations)."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}.{kind}"


def sig_tag(digest: str) -> str:
    return tag_of(digest, "sig")


async def tag_layers(session: RegistrySession, repo: str, tag: str) -> list[dict[str, Any]]:
    """The layers of cosign's manifest under ``tag`` (empty when there is none yet)."""
    try:
        m = await session.get_manifest(repo, tag)
    except NotFound:
        return []
    return [lay for lay in json.loads(m.body).get("layers") or [] if isinstance(lay, dict)]


async def put_tag(session: RegistrySession, repo: str, tag: str, layers: list[dict[str, Any]]) -> str:
    """Write cosign's manifest of ``layers`` (with its empty image config) under ``tag``;
    returns the manifest's digest."""
    config = {"architecture": "", "created": "0001-01-01T00:00:00Z",
              "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
              "rootfs": {"type": "layers", "diff_ids": [lay["digest"] for lay in layers]}, "config": {}}
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_digest = await session.put_blob(repo, config_raw)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config_raw), "digest": config_digest},
                "layers": layers}
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return str(await session.put_manifest(repo, tag, body, OCI_MANIFEST))


def parse(image: str) -> Reference:
    try:
        return parse_normalized(image)
    except InvalidReference as exc:
        raise InvalidArgument(str(exc)) from exc


def host_of(ref: Reference) -> str:
    return ref.domain


def make_payload(identity: str, digest: str, creator: str = "dockyard") -> bytes:
    """The simple-signing payload; ``optional`` holds creator and timestamp (containers/image
    reads both, cosign ignores them)."""
    doc = {"critical": {"identity": {"docker-reference": identity},
                        "image": {"docker-manifest-digest": digest}, "type": SIGNATURE_TYPE},
           "optional": {"creator": creator, "timestamp": int(time.time())}}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Signature:
    payload: bytes
    signature: str  # base64
    layer_digest: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def claims(self) -> dict[str, Any]:
        """The payload's critical section, checked for shape; InvalidArgument when malformed."""
        try:
            doc = json.loads(self.payload)
            crit = doc["critical"]
            return {"type": str(crit["type"]), "reference": str(crit["identity"]["docker-reference"]),
                    "digest": str(crit["image"]["docker-manifest-digest"]),
                    "optional": doc.get("optional") or {}}
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"signature payload {self.layer_digest or ''} is malformed: {exc}") from exc


@dataclass
class Verdict:
    """What verifying ``digest`` found: ``good`` signatures (with the key id that verified),
    and ``problems``: why each other signature did not count."""

    digest: str
    good: list[tuple[Signature, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    count: int = 0


def open_session(kernel: Any, ref: Reference, auth: dict[str, Any] | None = None) -> RegistrySession:
    sessions = kernel.provided().get(RegistrySessions)
    if sessions is None:
        raise DockyardError("no registry sessions: install dockyard-distribution (it offers core's "
                            "RegistrySessions through dockyard_provides)")
    return sessions.open(host_of(ref), auth)


async def resolve(session: RegistrySession, ref: Reference) -> str:
    """The digest the reference names in the registry (a digest reference: checked to exist)."""
    m = await session.get_manifest(ref.path, ref.digest or ref.tag or "latest")
    return m.digest


async def fetch(session: RegistrySession, repo: str, digest: str) -> list[Signature]:
    """The signatures stored for ``digest`` (empty when there is no ``.sig`` tag)."""
    try:
        m = await session.get_manifest(repo, sig_tag(digest))
    except NotFound:
        return []
    try:
        doc = json.loads(m.body)
        layers = list(doc.get("layers") or [])
    except (ValueError, AttributeError) as exc:
        raise InvalidArgument(f"signature manifest {repo}:{sig_tag(digest)} is malformed: {exc}") from exc
    out = []
    for lay in layers:
        if not isinstance(lay, dict) or lay.get("mediaType") != SIMPLESIGNING:
            continue
        ann = {str(k): str(v) for k, v in (lay.get("annotations") or {}).items()}
        if SIG_ANNOTATION not in ann:
            continue
        blob = await session.get_blob(repo, str(lay.get("digest")), max_size=1 << 20)
        out.append(Signature(blob, ann[SIG_ANNOTATION], str(lay.get("digest")), ann))
    return out


def verify(sigs: list[Signature], pubkeys: list[ec.EllipticCurvePublicKey], digest: str) -> Verdict:
    v = Verdict(digest, count=len(sigs))
    for s in sigs:
        kid = next((keymod.key_id(k) for k in pubkeys if keymod.verify(k, s.payload, s.signature)), "")
        if not kid:
            v.problems.append(f"signature {s.layer_digest[:19]}: no given key verifies it "
                              "(forged, edited payload or another key)")
            continue
        try:
            claims = s.claims()
        except InvalidArgument as exc:
            v.problems.append(str(exc))
            continue
        if claims["type"] != SIGNATURE_TYPE:
            v.problems.append(f"signature {s.layer_digest[:19]}: payload type {claims['type']!r}")
        elif claims["digest"] != digest:
            v.problems.append(f"signature {s.layer_digest[:19]}: signs {claims['digest']}, not {digest} "
                              "(a signature of another image)")
        else:
            v.good.append((s, kid))
    return v


async def attach(session: RegistrySession, repo: str, digest: str, sig: Signature) -> str:
    """Add ``sig`` to the ``.sig`` manifest of ``digest`` (created if absent); returns its digest."""
    layers = await tag_layers(session, repo, sig_tag(digest))
    blob_digest = await session.put_blob(repo, sig.payload)
    ann = {SIG_ANNOTATION: sig.signature, **sig.annotations}
    new = {"mediaType": SIMPLESIGNING, "size": len(sig.payload), "digest": blob_digest, "annotations": ann}
    if not any(lay.get("digest") == blob_digest and (lay.get("annotations") or {}).get(SIG_ANNOTATION)
               == sig.signature for lay in layers):
        layers.append(new)
    return await put_tag(session, repo, sig_tag(digest), layers)


def identity_of(ref: Reference) -> str:
    """What the payload's ``docker-reference`` names: the repository and the tag signed
    (containers/image's default identity check wants the tag the image is copied by)."""
    return f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else ref.name
