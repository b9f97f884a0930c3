"""Keys in cosign's key-pair format, so that cosign, skopeo and podman sign with our keys and we
with theirs.

``NAME.pub`` is a PEM ``PUBLIC KEY`` (PKIX). ``NAME.key`` is a PEM block of type ``ENCRYPTED
SIGSTORE PRIVATE KEY`` (cosign 2; ``ENCRYPTED COSIGN PRIVATE KEY`` from cosign 1 is read too)
whose body is go-securesystemslib's ``encrypted`` JSON: ``{"kdf": {"name": "scrypt", "params":
{"N": 32768, "r": 8, "p": 1}, "salt": B64}, "cipher": {"name": "nacl/secretbox", "nonce": B64},
"ciphertext": B64}``: scrypt turns the passphrase and a 32-byte salt into a 32-byte key, and
NaCl secretbox (XSalsa20-Poly1305, PyNaCl: cryptography has no XSalsa20) seals the PKCS#8 DER of
the private key under a 24-byte nonce. The passphrase comes from ``COSIGN_PASSWORD`` as cosign
reads it (set and empty means an empty passphrase), else a prompt.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from dockyard.errors import InvalidArgument

SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"
SCRYPT = {"N": 32768, "r": 8, "p": 1}  # go-securesystemslib's defaults, what cosign writes


class KeyError_(InvalidArgument):  # noqa: N801 - not the builtin
    """A key file that cannot be read (wrong passphrase, not a key, unsupported curve)."""


@dataclass(frozen=True)
class KeyPair:
    private: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()


def generate() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()))


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def encrypt_private(key: ec.EllipticCurvePrivateKey, passphrase: bytes, pem_type: str = SIGSTORE_PEM) -> bytes:
    """The ``NAME.key`` bytes cosign writes."""
    import nacl.secret

    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt = os.urandom(32)
    secret = Scrypt(salt=salt, length=32, n=SCRYPT["N"], r=SCRYPT["r"], p=SCRYPT["p"]).derive(passphrase)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": SCRYPT, "salt": _b64(salt)},
           "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)}, "ciphertext": _b64(sealed)}
    return _pem(pem_type, json.dumps(doc, separators=(",", ":")).encode())


def _pem(kind: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(data: bytes, where: str) -> tuple[str, bytes]:
    text = data.decode("ascii", "replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        raise KeyError_(f"{where}: not a PEM file")
    head_end = text.find("-----", start + 11)
    kind = text[start + 11:head_end]
    end = text.find(f"-----END {kind}-----", head_end)
    if end < 0:
        raise KeyError_(f"{where}: PEM block {kind!r} has no end line")
    try:
        body = base64.b64decode("".join(text[head_end + 5:end].split()), validate=True)
    except ValueError as exc:
        raise KeyError_(f"{where}: PEM block {kind!r} is not base64") from exc
    return kind, body


def decrypt_private(data: bytes, passphrase: bytes, where: str = "private key") -> ec.EllipticCurvePrivateKey:
    """Read cosign's encrypted private key (either PEM type); a wrong passphrase says so."""
    import nacl.exceptions
    import nacl.secret

    kind, body = _unpem(data, where)
    if kind not in (SIGSTORE_PEM, COSIGN_PEM):
        raise KeyError_(f"{where}: PEM type {kind!r} is not a cosign private key "
                        f"({SIGSTORE_PEM!r} or {COSIGN_PEM!r})")
    try:
        doc = json.loads(body)
        kdf, cipher = doc["kdf"], doc["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise KeyError_(f"{where}: unsupported kdf {kdf['name']!r} / cipher {cipher['name']!r}")
        p = kdf["params"]
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(cipher["nonce"])
        sealed = base64.b64decode(doc["ciphertext"])
        secret = Scrypt(salt=salt, length=32, n=int(p["N"]), r=int(p["r"]), p=int(p["p"])).derive(passphrase)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"{where}: malformed encrypted key: {exc}") from exc
    try:
        der = nacl.secret.SecretBox(secret).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError as exc:
        raise KeyError_(f"{where}: decryption failed (wrong passphrase?)") from exc
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyError_(f"{where}: only ECDSA P-256 keys are supported")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(data: bytes, where: str = "public key") -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyError_(f"{where}: not a PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise KeyError_(f"{where}: only ECDSA P-256 public keys are supported")
    return key


def sign(key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    """ECDSA P-256 / SHA-256, DER, base64: cosign's ``dev.cosignproject.cosign/signature``."""
    return _b64(key.sign(payload, ec.ECDSA(hashes.SHA256())))


def verify(key: ec.EllipticCurvePublicKey, payload: bytes, signature_b64: str) -> bool:
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A short fingerprint for listings: sha256 of the PKIX DER, first 16 hex digits."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()[:16]


def passphrase(prompt: bool, confirm: bool = False) -> bytes:
    """``COSIGN_PASSWORD`` when set (even empty), else a prompt (or empty without a terminal)."""
    if "COSIGN_PASSWORD" in os.environ:
        return os.environ["COSIGN_PASSWORD"].encode()
    if not prompt:
        return b""
    import click

    return str(click.prompt("Enter password for private key", hide_input=True,
                            confirmation_prompt=confirm, default="", show_default=False)).encode()


def write_pair(prefix: Path, pair: KeyPair, secret: bytes, force: bool = False) -> tuple[Path, Path]:
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for p in (key_path, pub_path):
        if p.exists() and not force:
            raise KeyError_(f"{p} exists (remove it first)")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(encrypt_private(pair.private, secret))
    pub_path.write_bytes(public_pem(pair.public))
    return key_path, pub_path
