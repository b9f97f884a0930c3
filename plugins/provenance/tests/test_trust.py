"""``dockyard trust``: cosign-format keys, signatures stored beside the image in a real registry,
several per image, and the hostile cases (each refused with a reason)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_provenance import cosign
from dockyard_provenance import keys as k


def test_key_file_round_trips_and_a_wrong_passphrase_is_named(tmp_path: Path) -> None:
    pair = k.generate()
    pem = k.encrypt_private(pair.private, b"secret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = json.loads(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    assert body["kdf"]["name"] == "scrypt" and body["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert body["cipher"]["name"] == "nacl/secretbox" and len(base64.b64decode(body["cipher"]["nonce"])) == 24
    back = k.decrypt_private(pem, b"secret")
    assert back.private_numbers() == pair.private.private_numbers()
    # cosign 1's PEM type is read too
    old = k.encrypt_private(pair.private, b"", k.COSIGN_PEM)
    assert k.decrypt_private(old, b"").private_numbers() == pair.private.private_numbers()
    with pytest.raises(k.KeyError_, match="wrong passphrase"):
        k.decrypt_private(pem, b"nope", "x.key")
    with pytest.raises(k.KeyError_, match="not a cosign private key"):
        k.decrypt_private(k.public_pem(pair.public), b"", "x.pub")


def test_sign_verify_inspect_with_several_signatures(registry, keydir: Path, trust: Callable, copy_image) -> None:
    image = copy_image("multi:1")
    for name in ("a", "b"):
        res = trust("sign", image, "--key", str(keydir / f"{name}.key"))
        assert res.exit_code == 0, res.output
    res = trust("sign", image, "--key", str(keydir / "a.key"))  # again: one more layer (new timestamp)
    assert res.exit_code == 0, res.output
    insp = json.loads(trust("inspect", image).output)[0]
    sigs = insp["Signatures"]
    assert len(sigs) == 3 and insp["SignatureTag"] == cosign.sig_tag(insp["Digest"])
    assert {s["Claims"]["digest"] for s in sigs} == {insp["Digest"]}
    assert sigs[0]["Claims"]["reference"] == image
    # the registry holds what cosign writes: an OCI manifest, one simple-signing layer each
    man = json.loads(registry.manifest("multi", insp["SignatureTag"])[0])
    assert man["mediaType"] == cosign.OCI_MANIFEST
    assert [lay["mediaType"] for lay in man["layers"]] == [cosign.SIMPLESIGNING] * 3
    assert all(cosign.SIG_ANNOTATION in lay["annotations"] for lay in man["layers"])
    ok = trust("verify", image, "--key", str(keydir / "b.pub"))
    assert ok.exit_code == 0 and "1 of 3 signature(s) valid" in ok.output
    both = trust("verify", image, "--key", str(keydir / "a.pub"), "--key", str(keydir / "b.pub"))
    assert "3 of 3" in both.output
    assert trust("key", "list", str(keydir)).output.count("yes") == 3


def _refused(trust: Callable, image: str, key: Path, why: str) -> None:
    res = trust("verify", image, "--key", str(key))
    assert res.exit_code == 1, res.output
    assert "no valid signature" in res.output and why in res.output, res.output


def test_hostile_signatures_are_refused(registry, keydir: Path, trust: Callable, copy_image) -> None:
    image = copy_image("hostile:1")
    assert trust("sign", image, "--key", str(keydir / "a.key")).exit_code == 0
    digest = json.loads(trust("inspect", image).output)[0]["Digest"]
    tag = cosign.sig_tag(digest)
    good_manifest = registry.manifest("hostile", tag)[0]
    man = json.loads(good_manifest)
    lay = man["layers"][0]
    payload = registry.blob("hostile", lay["digest"])

    # unknown key
    _refused(trust, image, keydir / "c.pub", "no given key verifies it")
    # forged: the signature annotation replaced with c's signature of the same payload
    c_key = k.decrypt_private((keydir / "c.key").read_bytes(), b"pw")
    forged = json.loads(good_manifest)
    forged["layers"][0]["annotations"][cosign.SIG_ANNOTATION] = k.sign(c_key, payload)
    registry.put_manifest("hostile", tag, json.dumps(forged).encode())
    _refused(trust, image, keydir / "a.pub", "no given key verifies it")
    # payload edited: another digest in the payload, a's signature kept
    edited = payload.replace(digest.encode(), b"sha256:" + b"0" * 64)
    edited_manifest = json.loads(good_manifest)
    edited_manifest["layers"][0]["digest"] = registry.put_blob("hostile", edited)
    edited_manifest["layers"][0]["size"] = len(edited)
    registry.put_manifest("hostile", tag, json.dumps(edited_manifest).encode())
    _refused(trust, image, keydir / "a.pub", "no given key verifies it")
    registry.put_manifest("hostile", tag, good_manifest)
    assert trust("verify", image, "--key", str(keydir / "a.pub")).exit_code == 0

    # replay: a valid signature of this image copied beside another image
    other = copy_image("hostile:2")
    body = registry.manifest("hostile", "2")[0]
    doc = json.loads(body)
    doc.setdefault("annotations", {})["swapped"] = "yes"  # another manifest, another digest
    swapped_digest = registry.put_manifest("hostile", "2", json.dumps(doc).encode(), doc["mediaType"])
    registry.put_manifest("hostile", cosign.sig_tag(swapped_digest), good_manifest)
    _refused(trust, other, keydir / "a.pub", f"signs {digest}, not {swapped_digest}")

    # digest swapped in the registry after signing: the tag now names an unsigned manifest
    registry.put_manifest("hostile", "1", json.dumps({**doc, "annotations": {"evil": "1"}}).encode(),
                          doc["mediaType"])
    _refused(trust, image, keydir / "a.pub", "no signatures found")


def test_a_multi_platform_image_is_signed_by_its_index_digest(registry, keydir: Path, trust: Callable,
                                                              copy_image) -> None:
    import hashlib
    import platform

    copy_image("index:amd")
    body, media_type = registry.manifest("index", "amd")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": media_type.split(";")[0], "size": len(body),
                            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                            "platform": {"os": "linux", "architecture": arch}}]}
    index_digest = registry.put_manifest("index", "multi", json.dumps(index).encode(),
                                         "application/vnd.oci.image.index.v1+json")
    image = f"{registry.host}/index:multi"
    assert trust("sign", image, "--key", str(keydir / "a.key")).exit_code == 0
    insp = json.loads(trust("inspect", image).output)[0]
    assert insp["Digest"] == index_digest and insp["SignatureTag"] == cosign.sig_tag(index_digest)
    assert trust("verify", image, "--key", str(keydir / "a.pub")).exit_code == 0
    # the platform manifest alone is not what was signed
    assert trust("verify", f"{registry.host}/index:amd", "--key", str(keydir / "a.pub")).exit_code == 1


def test_verify_by_the_daemons_policy_file(registry, keydir: Path, trust: Callable, copy_image,
                                           tmp_path: Path) -> None:
    image = copy_image("bypolicy:1")
    assert trust("sign", image, "--key", str(keydir / "b.key")).exit_code == 0
    policy = tmp_path / "policy.json"
    for key, code in (("b", 0), ("a", 1)):
        policy.write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {
            f"{registry.host}/bypolicy": [{"type": "sigstoreSigned", "keyPath": str(keydir / f"{key}.pub")}]}}}))
        res = trust("verify", image, "--policy", str(policy))
        assert res.exit_code == code, res.output
    assert "no valid signature" in res.output and 'transports.docker["' in res.output
    assert trust("verify", image).exit_code == 2  # neither --key nor --policy
