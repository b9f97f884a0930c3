"""Key files the daemon itself writes and reads, without ``cryptography``'s serialization
package: that package imports its SSH module, bcrypt and the cipher modules (1.7 MiB of the
daemon's RSS, measured: bench/reports/2026-12-07-daemon-perf.md), and the lifecycle log only
needs one fixed encoding.

An Ed25519 key's PKCS#8 and SubjectPublicKeyInfo encodings are fixed byte strings around its
32 raw bytes (RFC 8410, sections 7 and 4): exactly what ``cryptography``'s encoders write and
what OpenSSL's ``genpkey -algorithm ed25519`` writes. A PEM file in any other form (a PKCS#8 v2
with the public key inside, say) is left to ``cryptography``'s full parser.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

#: PKCS#8 v1 PrivateKeyInfo of id-Ed25519 (1.3.101.112), its CurvePrivateKey an OCTET STRING of 32
ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
#: SubjectPublicKeyInfo of id-Ed25519, its BIT STRING of 32 bytes (no unused bits)
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def write_private(path: Path, pem: bytes) -> None:
    """Write a private key file whole or not at all: 0600 from its creation, synced, renamed
    into place (a crash leaves no half key behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def pem(label: str, der: bytes) -> bytes:
    """A PEM block as OpenSSL and ``cryptography`` write it (64 characters a line)."""
    body = base64.b64encode(der)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""])


def pem_der(data: bytes, label: str) -> bytes | None:
    """The DER inside the one PEM block ``label`` of ``data`` (None: not such a block)."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    text = data.strip()
    if not text.startswith(begin) or not text.endswith(end):
        return None
    try:
        return base64.b64decode(b"".join(text[len(begin):-len(end)].split()), validate=True)
    except ValueError:
        return None


def ed25519_private_pem(raw: bytes) -> bytes:
    return pem("PRIVATE KEY", ED25519_PKCS8_PREFIX + raw)


def ed25519_public_pem(raw: bytes) -> bytes:
    return pem("PUBLIC KEY", ED25519_SPKI_PREFIX + raw)


def ed25519_private_raw(data: bytes) -> bytes | None:
    """The 32 raw bytes of an Ed25519 PKCS#8 v1 PEM (None: another form or another key)."""
    der = pem_der(data, "PRIVATE KEY")
    if der is None or len(der) != 48 or not der.startswith(ED25519_PKCS8_PREFIX):
        return None
    return der[16:]
