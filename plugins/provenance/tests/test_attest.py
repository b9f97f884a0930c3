"""Build attestations alone: the DSSE envelope of an in-toto statement verifies with the key;
a wrong subject, an edited payload and another key are each refused, naming why."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dockyard_provenance import attest

IMAGE = "sha256:" + "ab" * 32
RECORD = {"buildDefinition": {"buildType": "t", "externalParameters": {"buildArgs": {"A": "1"}}},
          "runDetails": {"builder": {"id": "b"}}, "steps": [{"step": 1}]}


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()), Ed25519PrivateKey.generate])
def test_round_trip_and_hostile(make, tmp_path: Path) -> None:
    key = make()
    env = attest.attest_build(tmp_path, key, IMAGE, "docker.io/library/x:1", RECORD)
    assert attest.local_attestations(tmp_path, IMAGE) == [env]
    stmt = attest.verify_envelope(env, key.public_key(), IMAGE)
    assert stmt["subject"] == [{"name": "docker.io/library/x:1", "digest": {"sha256": "ab" * 32}}]
    assert stmt["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"] == {"A": "1"}

    with pytest.raises(attest.AttestationError, match="subject .* is not the image sha256:cd"):
        attest.verify_envelope(env, key.public_key(), "sha256:" + "cd" * 32)
    # a statement about another image, signed by the right key: still the wrong subject
    other = attest.envelope(key, attest.statement("x", "sha256:" + "cd" * 32, RECORD))
    with pytest.raises(attest.AttestationError, match="is not the image"):
        attest.verify_envelope(other, key.public_key(), IMAGE)
    edited = dict(env, payload=base64.b64encode(
        base64.b64decode(env["payload"]).replace(b'"A":"1"', b'"A":"2"')).decode())
    with pytest.raises(attest.AttestationError, match="no signature"):
        attest.verify_envelope(edited, key.public_key(), IMAGE)
    with pytest.raises(attest.AttestationError, match="no signature"):
        attest.verify_envelope(env, ec.generate_private_key(ec.SECP256R1()).public_key(), IMAGE)
    assert json.loads(base64.b64decode(env["payload"]))["predicateType"] == attest.SLSA_PROVENANCE


def test_host_key_made_once(tmp_path: Path) -> None:
    k1 = attest.load_key(tmp_path)
    k2 = attest.load_key(tmp_path)
    assert attest.public_pem(k1) == attest.public_pem(k2) == (tmp_path / "attest.pub").read_bytes()
    assert (tmp_path / "attest.key").stat().st_mode & 0o777 == 0o600
