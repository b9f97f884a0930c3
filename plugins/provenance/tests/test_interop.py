"""Interoperability with containers/image (skopeo): what we sign, skopeo verifies through a
policy.json with ``sigstoreSigned`` and our public key, and what skopeo signs with
``--sign-by-sigstore-private-key`` (our key file: cosign's format), we verify.

Debian's skopeo 1.9 and podman 4.3 are built with sigstore support removed ("Debian-local
change: sigstore disabled"): there these tests skip, saying so; with an upstream build they run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

DISABLED = "sigstore disabled"


def _setup(tmp_path: Path, host: str, pub: Path) -> tuple[Path, Path]:
    regd = tmp_path / "registries.d"
    regd.mkdir(parents=True)
    (regd / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
        host: [{"type": "sigstoreSigned", "keyPath": str(pub),
                "signedIdentity": {"type": "matchRepoDigestOrExact"}}]}}}))
    return policy, regd


def _skip_if_disabled(out) -> None:  # noqa: ANN001
    if out.returncode != 0 and DISABLED in out.stderr:
        pytest.skip("this skopeo is built without sigstore (Debian-local change: sigstore disabled)")


def test_skopeo_accepts_our_signature_and_refuses_another_key(registry, keydir: Path, trust: Callable,
                                                              copy_image, tmp_path: Path) -> None:
    image = copy_image("interop:ours")
    assert trust("sign", image, "--key", str(keydir / "a.key")).exit_code == 0
    ours, regd = _setup(tmp_path / "a", registry.host, keydir / "a.pub")
    other, _ = _setup(tmp_path / "b", registry.host, keydir / "b.pub")
    out = registry.skopeo("--policy", str(ours), "--registries.d", str(regd), "copy", "--src-tls-verify=false",
                          f"docker://{image}", f"dir:{tmp_path / 'ok'}", check=False)
    _skip_if_disabled(out)
    assert out.returncode == 0, out.stderr
    out = registry.skopeo("--policy", str(other), "--registries.d", str(regd), "copy", "--src-tls-verify=false",
                          f"docker://{image}", f"dir:{tmp_path / 'no'}", check=False)
    assert out.returncode != 0 and "rejected" in out.stderr.lower(), out.stderr


def test_skopeo_signs_with_our_key_and_we_verify(registry, keydir: Path, trust: Callable, copy_image,
                                                 tmp_path: Path) -> None:
    src = copy_image("interop:src")
    _, regd = _setup(tmp_path, registry.host, keydir / "b.pub")
    (tmp_path / "pass").write_text("pw")
    out = registry.skopeo("--registries.d", str(regd), "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                          "--sign-by-sigstore-private-key", str(keydir / "b.key"),
                          "--sign-passphrase-file", str(tmp_path / "pass"),
                          f"docker://{src}", f"docker://{registry.host}/interop:theirs", check=False)
    _skip_if_disabled(out)
    assert out.returncode == 0, out.stderr
    res = trust("verify", f"{registry.host}/interop:theirs", "--key", str(keydir / "b.pub"))
    assert res.exit_code == 0, res.output
    assert trust("verify", f"{registry.host}/interop:theirs", "--key", str(keydir / "a.pub")).exit_code == 1
    # the same policy.json skopeo reads admits it in dockyard too
    policy, _ = _setup(tmp_path / "p", registry.host, keydir / "b.pub")
    assert trust("verify", f"{registry.host}/interop:theirs", "--policy", str(policy)).exit_code == 0
