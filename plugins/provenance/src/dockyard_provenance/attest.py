"""Attested builds: an in-toto Statement v1 with a SLSA Provenance v1 predicate for every image
the builder makes, signed as a DSSE envelope with the daemon's attestation key.

The builder hands its record to the ``dockyard_build_record`` hook before the build's tags are
written; :func:`attest_build` turns it into a statement whose subject is the image (its ID, the
config digest: the one digest an image has before a push gives it a manifest), signs it and
keeps the envelope under ``<data-root>/provenance/attestations/<hex>.json`` (a JSON list: one
envelope per build that produced this image).

Key: ``attestation-key`` (a PEM private key, ECDSA P-256 or Ed25519, unencrypted), else the
host's own ``<data-root>/provenance/attest.key`` (ECDSA P-256, made at the first build, its
public half ``attest.pub`` beside it). DSSE signs ``PAE(type, body)`` = ``DSSEv1 SP len(type)
SP type SP len(body) SP body``; ECDSA signatures are DER over SHA-256, as cosign's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dockyard_provenance.cosign import SIG_ANNOTATION, put_tag, tag_layers, tag_of
from dockyard_provenance.keyfiles import write_private

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


class AttestationError(Exception):
    """An envelope that does not verify, or whose statement is not about the image."""


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def load_key(directory: Path, configured: str = "") -> Any:
    """The attestation key: ``configured`` (a PEM path) or the host's, made when absent."""
    if configured:
        key = serialization.load_pem_private_key(Path(configured).read_bytes(), password=None)
    else:
        path = directory / "attest.key"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            (directory / "attest.pub").write_bytes(public_pem(key))
    if not isinstance(key, (ec.EllipticCurvePrivateKey, Ed25519PrivateKey)):
        raise ValueError("the attestation key must be ECDSA P-256 or Ed25519")
    return key


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid(pub: Any) -> str:
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _sign(key: Any, data: bytes) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _verify(pub: Any, sig: bytes, data: bytes) -> None:
    if isinstance(pub, Ed25519PublicKey):
        pub.verify(sig, data)
    else:
        pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))


def statement(subject_name: str, digest: str, record: dict[str, Any]) -> dict[str, Any]:
    """The in-toto statement of a build: subject = the image, predicate = SLSA provenance v1
    (the record's ``buildDefinition`` and ``runDetails``; its step list goes under
    ``runDetails.byproducts`` as a ``steps`` descriptor)."""
    algo, _, hexpart = digest.partition(":")
    run = json.loads(json.dumps(record.get("runDetails") or {}))
    if record.get("steps"):
        run.setdefault("byproducts", []).append({"name": "steps", "mediaType": "application/json",
                                                 "content": base64.b64encode(
                                                     json.dumps(record["steps"]).encode()).decode()})
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": subject_name, "digest": {algo: hexpart}}],
            "predicateType": SLSA_PROVENANCE,
            "predicate": {"buildDefinition": record.get("buildDefinition") or {}, "runDetails": run}}


def envelope(key: Any, stmt: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    sig = _sign(key, pae(PAYLOAD_TYPE, body))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": keyid(key.public_key()), "sig": base64.b64encode(sig).decode()}]}


def verify_envelope(env: dict[str, Any], pub: Any, digest: str) -> dict[str, Any]:
    """The statement of ``env`` once a signature verifies with ``pub`` and a subject is
    ``digest``; :class:`AttestationError` naming what is wrong otherwise."""
    try:
        body = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"]) for s in env.get("signatures") or []]
        ptype = str(env["payloadType"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AttestationError(f"not a DSSE envelope: {exc}") from exc
    for sig in sigs:
        try:
            _verify(pub, sig, pae(ptype, body))
            break
        except (InvalidSignature, ValueError):
            continue
    else:
        raise AttestationError("no signature of the attestation verifies with the key")
    if ptype != PAYLOAD_TYPE:
        raise AttestationError(f"payload type {ptype!r} is not {PAYLOAD_TYPE}")
    stmt = json.loads(body)
    algo, _, hexpart = digest.partition(":")
    subjects = [s.get("digest", {}).get(algo) for s in stmt.get("subject") or []]
    if hexpart not in subjects:
        raise AttestationError(f"the attestation's subject ({', '.join(f'{algo}:{s}' for s in subjects if s) or 'none'})"
                               f" is not the image {digest}")
    return dict(stmt)


def store_dir(data_root: Path) -> Path:
    return data_root / "provenance" / "attestations"


def local_attestations(data_root: Path, image_id: str) -> list[dict[str, Any]]:
    """The envelopes kept for ``image_id`` (``sha256:...``), oldest first."""
    path = store_dir(data_root) / (image_id.partition(":")[2] + ".json")
    if not path.exists():
        return []
    return list(json.loads(path.read_bytes()))


def keep(data_root: Path, image_id: str, env: dict[str, Any]) -> Path:
    d = store_dir(data_root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / (image_id.partition(":")[2] + ".json")
    envs = local_attestations(data_root, image_id) + [env]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(json.dumps(envs, indent=1).encode())
    os.rename(tmp, path)
    return path


def attest_build(data_root: Path, key: Any, image_id: str, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Sign the build of ``image_id`` and keep the envelope; returns it."""
    env = envelope(key, statement(name, image_id, record))
    keep(data_root, image_id, env)
    return env


# ---------------------------------------------------------------------------------------------
# in a registry: cosign's ``.att`` tag beside the image

PREDICATE_ANNOTATION = "predicateType"


def att_tag(digest: str) -> str:
    return tag_of(digest, "att")


def for_manifest(key: Any, env: dict[str, Any], name: str, digest: str, image_id: str) -> dict[str, Any]:
    """The pushed form of a kept attestation: the same predicate about the manifest ``digest``
    the push made (and the image ID it was built as), signed again by the same key."""
    stmt = json.loads(base64.b64decode(env["payload"]))
    algo, _, hexpart = digest.partition(":")
    stmt["subject"] = [{"name": name, "digest": {algo: hexpart}},
                       {"name": "config", "digest": {image_id.partition(":")[0]: image_id.partition(":")[2]}}]
    return envelope(key, stmt)


async def attach(session: Any, repo: str, digest: str, env: dict[str, Any]) -> str:
    """Add ``env`` as one layer of the ``.att`` manifest of ``digest`` (created when absent;
    an identical layer is not added twice); returns the manifest's digest."""
    layers = await tag_layers(session, repo, att_tag(digest))
    body = json.dumps(env, separators=(",", ":")).encode()
    blob = await session.put_blob(repo, body)
    stmt = json.loads(base64.b64decode(env["payload"]))
    if not any(lay.get("digest") == blob for lay in layers):
        layers.append({"mediaType": ENVELOPE_MEDIA_TYPE, "size": len(body), "digest": blob,
                       "annotations": {SIG_ANNOTATION: "", PREDICATE_ANNOTATION: str(stmt.get("predicateType"))}})
    return await put_tag(session, repo, att_tag(digest), layers)


async def fetch(session: Any, repo: str, digest: str) -> list[dict[str, Any]]:
    """The DSSE envelopes of the ``.att`` manifest of ``digest`` (empty when there is none)."""
    from dockyard.errors import NotFound

    try:
        m = await session.get_manifest(repo, att_tag(digest))
    except NotFound:
        return []
    out = []
    for lay in json.loads(m.body).get("layers") or []:
        if isinstance(lay, dict) and lay.get("mediaType") == ENVELOPE_MEDIA_TYPE:
            out.append(json.loads(await session.get_blob(repo, str(lay.get("digest")), max_size=4 << 20)))
    return out


def describe(env: dict[str, Any], pubs: list[Any], digest: str) -> dict[str, Any]:
    """What ``trust inspect --attestations`` shows of one envelope: its statement's type,
    subjects and predicate, and whether a key verifies it for ``digest`` (and why not)."""
    try:
        stmt = json.loads(base64.b64decode(env["payload"]))
    except (KeyError, ValueError, TypeError) as exc:
        return {"Error": f"not a DSSE envelope: {exc}", "Verified": False}
    out: dict[str, Any] = {"PredicateType": stmt.get("predicateType"), "Subject": stmt.get("subject"),
                           "Predicate": stmt.get("predicate")}
    if pubs:
        problems = []
        for pub in pubs:
            try:
                verify_envelope(env, pub, digest)
                out["Verified"] = True
                break
            except AttestationError as exc:
                problems.append(str(exc))
        else:
            out["Verified"] = False
            out["Error"] = "; ".join(dict.fromkeys(problems))
    return out
