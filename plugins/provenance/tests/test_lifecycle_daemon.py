"""The lifecycle log of a real dockyardd driven by the docker CLI: a container's and an image's
whole story, a build's ``build`` event and its verified attestation, and the entry of an
acknowledged ``docker create`` surviving ``kill -9`` of the daemon."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dockyardd needs root")


def _story(d, ref: str) -> list[str]:
    doc = json.loads(d.dockyard("provenance", "show", "--format", "json", ref).stdout)
    return [e["Action"] for e in doc["Entries"]]


def test_lifecycle_story_build_attestation_and_kill9(dockyardd_factory: Callable, tmp_path: Path) -> None:
    d = dockyardd_factory("d")
    d.client().post("/dockyard/images/bootstrap")
    d.docker("run", "--rm", "busybox", "true")
    d.docker("run", "-d", "--name", "web", "busybox", "sleep", "300")
    d.docker("exec", "web", "true")
    d.docker("stop", "-t", "1", "web")
    d.docker("rm", "web")
    story = _story(d, "web")
    assert story[:5] == ["create", "start", "exec_create: true", "exec_start: true", "exec_die"], story
    assert {"kill", "die", "stop"} == set(story[5:-1]) and story[-1] == "destroy", story

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG GREETING=hi\nRUN echo $GREETING > /greeting\n")
    d.docker("build", "-q", "--build-arg", "GREETING=hello", "-t", "built:1", str(ctx))
    assert {"build", "tag"} <= set(_story(d, "built:1"))
    doc = json.loads(d.dockyard("provenance", "attestations", "built:1").stdout)
    (att,) = doc["Attestations"]
    assert att["Verified"], att
    stmt = att["Statement"]
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    assert stmt["subject"][0]["digest"]["sha256"] == doc["Image"].partition(":")[2]
    ext = stmt["predicate"]["buildDefinition"]["externalParameters"]
    assert ext["buildArgs"] == {"GREETING": "hello"} and ext["dockerfile"]["path"] == "Dockerfile"
    assert len(ext["context"]["digest"]["sha256"]) == 64
    base = [r for r in stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
            if r["annotations"].get("role") == "base"]
    assert base and base[0]["digest"]["sha256"]
    run = stmt["predicate"]["runDetails"]
    assert run["builder"]["id"] and run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]

    kept = d.data_root / "provenance" / "attestations" / (doc["Image"].partition(":")[2] + ".json")
    assert kept.exists()
    d.docker("rmi", "built:1")
    assert not kept.exists()  # the attestation goes with its image
    assert "delete" in _story(d, doc["Image"][7:19])

    # an acknowledged create survives kill -9: its entry was written before the answer
    cid = d.docker("create", "--name", "kept", "busybox", "true").stdout.strip()
    d.stop(signal.SIGKILL)
    d2 = dockyardd_factory("d")
    assert "lifecycle log OK" in d2.dockyard("provenance", "verify").stdout
    assert _story(d2, cid)[:1] == ["create"]
    seqs = [e["Seq"] for e in json.loads(d2.dockyard("provenance", "show", "--format", "json", "kept").stdout)["Entries"]]
    d2.docker("rm", "kept")
    after = json.loads(d2.dockyard("provenance", "show", "--format", "json", cid).stdout)["Entries"]
    assert after[-1]["Action"] == "destroy" and after[-1]["Seq"] > seqs[-1]
    assert "lifecycle log OK" in d2.dockyard("provenance", "verify").stdout
