"""Ed25519 signing for the lifecycle log through the libcrypto the interpreter has mapped already.

Why not ``cryptography`` here: its Rust extension (a 14.9 MB file carrying an OpenSSL of its
own) added ~5.7 MiB to dockyardd's RSS at the first signature, which every container's first
event makes (bench/reports/2026-12-07-daemon-perf.md). The interpreter's ``_hashlib`` and
``_ssl`` modules link the system's libcrypto, which every daemon has mapped anyway (asyncio
imports ``ssl``); OpenSSL >= 1.1.1 signs Ed25519 (RFC 8032) with ``EVP_DigestSign``. Ed25519 is
deterministic, so the same key signs the same bytes into the same signature whichever library
computes it (tested against ``cryptography``): what the log signs, and when, is unchanged.

Where that libcrypto cannot be found (no ``/proc``, an OpenSSL before 1.1.1, an interpreter
built without it), :func:`private_key` returns ``cryptography``'s key, as before.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path
from typing import Protocol

#: EVP_PKEY_ED25519 (NID_ED25519) in every OpenSSL since 1.1.1
_NID_ED25519 = 1087
_OPENSSL_1_1_1 = 0x10101000


class SigningKey(Protocol):
    """What the lifecycle log needs of its key (``cryptography``'s ``Ed25519PrivateKey`` has it)."""

    def sign(self, data: bytes) -> bytes: ...

    def private_bytes_raw(self) -> bytes: ...


class LibcryptoError(RuntimeError):
    """libcrypto refused an Ed25519 operation (its error queue's first code in the message)."""


def mapped_libcrypto(maps: Path = Path("/proc/self/maps")) -> str | None:
    """The path of the libcrypto this process has mapped (``_hashlib`` links it), or None."""
    try:
        import _hashlib  # noqa: F401  (maps libcrypto; hashlib imports it in every process anyway)

        text = maps.read_text()
    except (ImportError, OSError):  # an interpreter without OpenSSL; no /proc
        return None
    for line in text.splitlines():
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith("libcrypto.so"):
            return fields[5].strip()
    return None


def _bind(path: str) -> ctypes.CDLL | None:
    """libcrypto with the prototypes used here (pointers as ``c_void_p``: never truncated to
    an int), or None when it is older than 1.1.1."""
    lib = ctypes.CDLL(path)  # already mapped: dlopen returns the same copy
    lib.OpenSSL_version_num.restype = ctypes.c_ulong
    lib.OpenSSL_version_num.argtypes = []
    if lib.OpenSSL_version_num() < _OPENSSL_1_1_1:
        return None
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, restype, argtypes in (
        ("EVP_PKEY_new_raw_private_key", vp, [ctypes.c_int, vp, ctypes.c_char_p, sz]),
        ("EVP_PKEY_get_raw_public_key", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.POINTER(sz)]),
        ("EVP_PKEY_free", None, [vp]),
        ("EVP_MD_CTX_new", vp, []),
        ("EVP_MD_CTX_free", None, [vp]),
        ("EVP_DigestSignInit", ctypes.c_int, [vp, vp, vp, vp, vp]),
        ("EVP_DigestSign", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz]),
        ("ERR_get_error", ctypes.c_ulong, []),
        ("ERR_clear_error", None, []),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class LibcryptoEd25519Key:
    """An Ed25519 private key held by libcrypto (``EVP_PKEY``), freed with this object. Safe to
    sign from several threads: each signature has its own ``EVP_MD_CTX``; the key is read only."""

    def __init__(self, lib: ctypes.CDLL, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        self._lib = lib
        self._raw = bytes(raw)
        pkey = lib.EVP_PKEY_new_raw_private_key(_NID_ED25519, None, self._raw, 32)
        if not pkey:
            self._fail("EVP_PKEY_new_raw_private_key")
        self._pkey = ctypes.c_void_p(pkey)
        self._free = weakref.finalize(self, lib.EVP_PKEY_free, self._pkey)

    def _fail(self, what: str) -> None:
        code = self._lib.ERR_get_error()
        self._lib.ERR_clear_error()  # leave nothing in this thread's queue for the ssl module
        raise LibcryptoError(f"libcrypto {what} failed (error 0x{code:x})")

    def sign(self, data: bytes) -> bytes:
        lib = self._lib
        ctx = lib.EVP_MD_CTX_new()
        if not ctx:
            self._fail("EVP_MD_CTX_new")
        try:
            sig = ctypes.create_string_buffer(64)
            size = ctypes.c_size_t(64)
            if lib.EVP_DigestSignInit(ctx, None, None, None, self._pkey) != 1:
                self._fail("EVP_DigestSignInit")
            if lib.EVP_DigestSign(ctx, sig, ctypes.byref(size), data, len(data)) != 1 or size.value != 64:
                self._fail("EVP_DigestSign")
            return sig.raw
        finally:
            lib.EVP_MD_CTX_free(ctx)

    def private_bytes_raw(self) -> bytes:
        return self._raw

    def public_bytes_raw(self) -> bytes:
        pub = ctypes.create_string_buffer(32)
        size = ctypes.c_size_t(32)
        if self._lib.EVP_PKEY_get_raw_public_key(self._pkey, pub, ctypes.byref(size)) != 1 or size.value != 32:
            self._fail("EVP_PKEY_get_raw_public_key")
        return pub.raw


def libcrypto_key(raw: bytes) -> LibcryptoEd25519Key | None:
    """``raw`` as a libcrypto key, or None when no usable libcrypto is mapped."""
    path = mapped_libcrypto()
    try:
        lib = _bind(path) if path else None
    except (OSError, AttributeError):  # not loadable, or a libcrypto without these functions
        return None
    return LibcryptoEd25519Key(lib, raw) if lib is not None else None


def private_key(raw: bytes) -> SigningKey:
    """The Ed25519 key of the 32 bytes ``raw``: libcrypto's when it can, else ``cryptography``'s."""
    key = libcrypto_key(raw)
    if key is not None:
        return key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(raw)


def public_bytes_raw(key: SigningKey) -> bytes:
    """The 32 raw bytes of ``key``'s public half (either kind of key)."""
    if isinstance(key, LibcryptoEd25519Key):
        return key.public_bytes_raw()
    return key.public_key().public_bytes_raw()  # type: ignore[attr-defined]
