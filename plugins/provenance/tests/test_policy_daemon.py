"""The daemon's ``trust-policy`` through the real docker CLI: a signed image pulls and runs, an
unsigned one or one of a rejected repository is refused before anything is stored, a present
image is refused at run/create once the policy wants another key, and a policy file that does
not parse refuses every image, naming the file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from dockyard_provenance import cosign


def _policy(path: Path, host: str, key: Path) -> None:
    path.write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {
            f"{host}/signed": [{"type": "sigstoreSigned", "keyPath": str(key),
                                "signedIdentity": {"type": "matchRepository"}}],
            f"{host}/rejected": [{"type": "reject"}]}}}))


def test_policy_on_pull_and_run(registry, keydir: Path, trust: Callable, copy_image, dockyardd_factory,
                                tmp_path: Path) -> None:
    host = registry.host
    signed = copy_image("signed:1")
    unsigned = copy_image("signed:2")
    rejected = copy_image("rejected:1")
    free = copy_image("free:1")
    assert trust("sign", signed, "--key", str(keydir / "a.key")).exit_code == 0
    unsigned_digest = json.loads(trust("inspect", unsigned).output)[0]["Digest"]
    policy = tmp_path / "policy.json"
    _policy(policy, host, keydir / "a.pub")
    d = dockyardd_factory("d", config={"trust-policy": str(policy), "storage-driver": "vfs"})

    d.docker("pull", signed)
    d.docker("run", "--rm", signed, "true")

    out = d.docker("pull", unsigned, check=False)
    assert out.returncode != 0
    err = out.stderr + out.stdout
    assert unsigned in err and unsigned_digest in err and f'transports.docker["{host}/signed"]' in err, err
    assert "no valid signature" in err and str(policy) in err
    out = d.docker("pull", rejected, check=False)
    assert out.returncode != 0 and "rejected" in out.stderr + out.stdout
    d.docker("pull", free)  # default: insecureAcceptAnything
    listed = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert f"{host}/signed:1" in listed and f"{host}/free:1" in listed
    assert f"{host}/signed:2" not in listed and f"{host}/rejected:1" not in listed

    # the policy now wants key b: the present image is refused at run and create
    _policy(policy, host, keydir / "b.pub")
    before = d.docker("ps", "-aq").stdout.split()
    for args in (("run", "--rm", signed, "true"), ("create", signed)):
        out = d.docker(*args, check=False)
        assert out.returncode != 0, out
        assert "no valid signature" in out.stderr and signed in out.stderr, out.stderr
    assert d.docker("ps", "-aq").stdout.split() == before

    # load: an archive carries no registry digest, so a policy that wants signatures refuses it
    saved = tmp_path / "signed.tar"
    subprocess.run(["docker", "-H", d.host, "save", "-o", str(saved), signed], check=True, capture_output=True,
                   env={"DOCKER_CONFIG": str(d.root / "docker-config"), "PATH": "/usr/local/bin:/usr/bin:/bin"})
    d.docker("rmi", signed)
    out = d.docker("load", "-i", str(saved), check=False)
    assert out.returncode != 0 and "digest is unknown" in out.stderr + out.stdout, out
    assert f"{host}/signed:1" not in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()

    # a policy file that does not parse refuses every image, naming the file
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}')
    out = d.docker("pull", copy_image("free:2"), check=False)
    assert out.returncode != 0 and "does not parse" in out.stderr + out.stdout and str(policy) in out.stderr + out.stdout
    out = d.docker("create", free, check=False)
    assert out.returncode != 0 and "does not parse" in out.stderr
    assert f"{host}/free:2" not in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert cosign.sig_tag(unsigned_digest).endswith(".sig")
