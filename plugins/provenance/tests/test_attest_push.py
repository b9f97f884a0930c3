"""Attested builds through the real docker CLI: ``docker build`` on dockyardd keeps a signed
attestation, ``docker push`` puts it beside the image as cosign's ``.att`` (about the pushed
manifest's digest), ``dockyard trust inspect --attestations --key`` verifies it, and the same
attestation placed beside another image is refused for its wrong subject."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_provenance import attest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dockyardd needs root")


def test_build_push_inspect_and_wrong_subject(registry, trust: Callable, copy_image: Callable,
                                              dockyardd_factory: Callable, tmp_path: Path) -> None:
    d = dockyardd_factory("d")
    d.client().post("/dockyard/images/bootstrap")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo attested > /what\n")
    name = f"{registry.host}/app:1"
    d.docker("build", "-q", "-t", name, str(ctx))
    out = d.docker("push", name).stdout
    assert "Pushed attestation sha256-" in out, out
    pub = d.data_root / "provenance" / "attest.pub"

    res = trust("inspect", "--attestations", "--key", str(pub), name)
    assert res.exit_code == 0, res.output
    (doc,) = json.loads(res.output)
    (att,) = doc["Attestations"]
    assert att["Verified"] is True, att
    assert att["PredicateType"] == attest.SLSA_PROVENANCE
    assert att["Subject"][0] == {"name": f"{registry.host}/app", "digest": {"sha256": doc["Digest"][7:]}}
    assert doc["AttestationTag"] == attest.att_tag(doc["Digest"])
    deps = att["Predicate"]["buildDefinition"]["resolvedDependencies"]
    assert any(dep["annotations"].get("role") == "base" for dep in deps)

    # the same .att placed beside another image: signed by the right key, wrong subject
    body, media_type = registry.manifest("app", attest.att_tag(doc["Digest"]))
    copy_image("app:other")
    other = "sha256:" + hashlib.sha256(registry.manifest("app", "other")[0]).hexdigest()
    registry.put_manifest("app", attest.att_tag(other), body, media_type)
    res = trust("inspect", "--attestations", "--key", str(pub), f"{registry.host}/app:other")
    (att,) = json.loads(res.output)[0]["Attestations"]
    assert att["Verified"] is False and f"is not the image {other}" in att["Error"], att
    # and another key does not verify the right one
    res = trust("inspect", "--attestations", "--key", str(d.data_root / "provenance" / "lifecycle.pub"), name)
    assert json.loads(res.output)[0]["Attestations"][0]["Verified"] is False
