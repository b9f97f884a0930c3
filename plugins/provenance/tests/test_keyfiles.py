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

from dockyard_provenance import ed25519, keyfiles
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


def test_daemon_side_imports_no_cryptography(tmp_path: Path) -> None:
    """Making the key, reading it back and signing import no ``cryptography`` at all: its Rust
    extension was ~5.7 MiB of dockyardd's RSS; the signatures come from the libcrypto mapped."""
    code = ("import sys; from pathlib import Path; from dockyard_provenance.journal import load_or_make_key; "
            f"p = Path({str(tmp_path)!r}); load_or_make_key(p).sign(b'x'); load_or_make_key(p).sign(b'y'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'bcrypt')); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    load_public(tmp_path / PUB_NAME).verify(load_or_make_key(tmp_path).sign(b"m"), b"m")


def test_libcrypto_signs_what_cryptography_signs() -> None:
    """Ed25519 is deterministic: the same key signs the same bytes into the same signature, so
    the log's signatures do not depend on which library made them."""
    import os

    key = ed25519.libcrypto_key(os.urandom(32))
    assert key is not None, "no libcrypto with Ed25519 mapped in this interpreter"
    for size in (0, 1, 32, 100, 4096):
        theirs = Ed25519PrivateKey.from_private_bytes(key.private_bytes_raw())
        assert key.public_bytes_raw() == theirs.public_key().public_bytes_raw()
        data = os.urandom(size)
        assert key.sign(data) == theirs.sign(data)
        theirs.public_key().verify(key.sign(data), data)
    # RFC 8032 7.1, TEST 2 (one-byte message)
    rfc = ed25519.libcrypto_key(bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"))
    assert rfc is not None
    assert rfc.public_bytes_raw().hex() == "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    assert rfc.sign(bytes.fromhex("72")).hex() == (
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.libcrypto_key(b"short")


def test_libcrypto_is_found_in_the_process_maps(tmp_path: Path) -> None:
    path = ed25519.mapped_libcrypto()
    assert path is not None and Path(path).name.startswith("libcrypto.so")
    (tmp_path / "maps").write_text("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n")
    assert ed25519.mapped_libcrypto(tmp_path / "maps") is None
    assert ed25519.mapped_libcrypto(tmp_path / "absent") is None


def test_without_libcrypto_the_key_is_cryptographys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No usable libcrypto (no /proc, an old OpenSSL): the log signs with ``cryptography``, the
    same signatures."""
    import os

    raw = os.urandom(32)
    ours = ed25519.private_key(raw)
    monkeypatch.setattr(ed25519, "mapped_libcrypto", lambda: None)
    theirs = ed25519.private_key(raw)
    assert isinstance(ours, ed25519.LibcryptoEd25519Key) and isinstance(theirs, Ed25519PrivateKey)
    assert ours.sign(b"m") == theirs.sign(b"m")
    assert ed25519.public_bytes_raw(ours) == ed25519.public_bytes_raw(theirs)
