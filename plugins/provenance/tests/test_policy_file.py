"""The policy file: containers/image's scopes, most specific first, and every way a file can be
wrong named with the file (the daemon refuses to start on it; at run time it refuses images)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.specs.storage import ImageCheck
from dockyard_provenance import keys
from dockyard_provenance.policy import FilePolicy, PolicyDenied, PolicyError, load, scopes_of


def test_scopes_most_specific_first() -> None:
    assert scopes_of("reg.example.com:5000/ns/app:1") == [
        "reg.example.com:5000/ns/app:1", "reg.example.com:5000/ns/app", "reg.example.com:5000/ns",
        "reg.example.com:5000", "*.example.com", "*.com"]


@pytest.mark.parametrize("text, why", [
    ('{"default": [', "does not parse"),
    ('{"transports": {}}', '"default" entry is required'),
    ('{"default": []}', "non-empty list"),
    ('{"default": [{"type": "magic"}]}', "unknown requirement type 'magic'"),
    ('{"default": [{"type": "sigstoreSigned"}]}', "needs keyPath"),
    ('{"default": [{"type": "sigstoreSigned", "keyPath": "missing.pub"}]}', "missing.pub"),
    ('{"default": [{"type": "sigstoreSigned", "keyData": "bm90IGEga2V5"}]}', "not a PEM public key"),
])
def test_a_bad_policy_file_is_named(tmp_path: Path, text: str, why: str) -> None:
    p = tmp_path / "policy.json"
    p.write_text(text)
    with pytest.raises(PolicyError, match=why) as err:
        load(p)
    assert str(p) in str(err.value)


def test_entries_and_refusals(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_bytes(keys.public_pem(keys.generate().public))
    p = tmp_path / "policy.json"
    p.write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {
        "r.example/ok": [{"type": "insecureAcceptAnything"}],
        "r.example/gpg": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "x"}],
        "r.example/signed": [{"type": "sigstoreSigned", "keyPath": "k.pub"}]}}}))
    pol = load(p)
    assert pol.entry_for("r.example/ok:1").scope == "r.example/ok"
    assert pol.entry_for("other.example/x").scope == "default"
    kernel = SimpleNamespace(config={"trust-policy": str(p)})
    check = FilePolicy().check

    asyncio.run(check(kernel, ImageCheck("r.example/ok:1", "sha256:" + "1" * 64, "pull")))
    for ref, why in (("other.example/x:1", "rejected"), ("r.example/gpg:1", r"signedBy \(GPG\) is not supported"),
                     ("r.example/signed:1", "digest is unknown")):
        with pytest.raises(PolicyDenied, match=why) as err:
            asyncio.run(check(kernel, ImageCheck(ref, "", "load")))
        assert ref in str(err.value) and str(p) in str(err.value)
