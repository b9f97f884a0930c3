"""The lifecycle log's key files without ``cryptography``'s serialization package: the same
bytes as its encoders, OpenSSL's keys read, other forms left to the full parser, and the daemon's
side of the log importing none of it (1.7 MiB of dockyardd's RSS)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dockyard_provenance import keyfiles
from dockyard_provenance.journal import KEY_NAME, PUB_NAME, load_or_make_key, load_public


def test_same_bytes_as_cryptography() -> None:
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        spki = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        assert keyfiles.ed25519_private_pem(key.private_bytes_raw()) == pkcs8
        assert keyfiles.ed25519_public_pem(key.public_key().public_bytes_raw()) == spki
        assert keyfiles.ed25519_private_raw(pkcs8) == key.private_bytes_raw()
        assert keyfiles.ed25519_private_raw(pkcs8.replace(b"\n", b"\r\n")) == key.private_bytes_raw()


def test_made_key_reads_back_and_its_public_half_verifies(tmp_path: Path) -> None:
    key = load_or_make_key(tmp_path)
    assert (tmp_path / KEY_NAME).stat().st_mode & 0o777 == 0o600
    again = load_or_make_key(tmp_path)
    assert again.private_bytes_raw() == key.private_bytes_raw()
    load_public(tmp_path / PUB_NAME).verify(key.sign(b"m"), b"m")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_openssl_key_is_read(tmp_path: Path) -> None:
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(tmp_path / KEY_NAME)], check=True)
    data = (tmp_path / KEY_NAME).read_bytes()
    assert keyfiles.ed25519_private_raw(data) is not None
    want = serialization.load_pem_private_key(data, password=None)
    assert load_or_make_key(tmp_path).private_bytes_raw() == want.private_bytes_raw()  # type: ignore[union-attr]


def test_other_forms_go_to_the_full_parser(tmp_path: Path) -> None:
    assert keyfiles.ed25519_private_raw(b"not a pem") is None
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / KEY_NAME).write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    assert keyfiles.ed25519_private_raw((tmp_path / KEY_NAME).read_bytes()) is None
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        load_or_make_key(tmp_path)


def test_daemon_side_imports_no_serialization(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from dockyard_provenance.journal import load_or_make_key; "
            f"p = Path({str(tmp_path)!r}); load_or_make_key(p).sign(b'x'); load_or_make_key(p).sign(b'y'); "
            "bad = sorted(m for m in sys.modules if m.startswith('cryptography.hazmat.primitives.serialization') "
            "or m == 'bcrypt'); print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
