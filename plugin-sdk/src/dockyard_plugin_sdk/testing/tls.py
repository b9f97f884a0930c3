"""A throwaway certificate authority for tests of engines that serve mutual TLS.

:class:`TestCA` makes what a machine store makes, in memory: a CA, server certificates whose
subject alternative names are a host's addresses (:meth:`TestCA.engine_tls`, the
:class:`~dockyard.specs.provision.EngineTLS` a provision driver's ``create`` takes), a client
certificate (:meth:`TestCA.write_client`, the ``ca.pem``/``cert.pem``/``key.pem`` of
``DOCKER_CERT_PATH``) and a swarm manager's, which serves and dials with one certificate
(:meth:`TestCA.write_manager`). Keys are ECDSA P-256: well under a millisecond each, so a test makes a
CA per host without noticing. Not for production: the CA key is never written anywhere, and
nothing is revoked or rotated (``dockyard-machine``'s certificate store does that).

``cryptography`` is imported when a CA is made, not when this module is.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.specs.provision import EngineTLS

__all__ = ["TestCA"]

VALIDITY = dt.timedelta(days=2)
SKEW = dt.timedelta(minutes=5)


class TestCA:
    """A CA for one test (or session); see the module doc."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str = "dockyard test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ec = x509, hashes, ec
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))

    @property
    def ca_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, server: bool, addresses: Sequence[str] = (),
              client: bool | None = None) -> tuple[bytes, bytes]:
        """A certificate signed by this CA and its key, both PEM: server (serverAuth; SANs =
        ``addresses``, IPs and DNS names) or client (clientAuth); ``client=True`` with ``server``
        makes one for both ends (``client`` defaults to ``not server``)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        x509 = self._x509
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        if client or (client is None and not server):
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if server:
            sans: list[Any] = []
            for a in addresses:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(a)))
                except ValueError:
                    sans.append(x509.DNSName(a))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, self._hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def engine_tls(self, addresses: Sequence[str]) -> EngineTLS:
        """What an engine reached at ``addresses`` serves with (a provision driver's ``create``)."""
        from dockyard.specs.provision import EngineTLS

        cert, key = self.issue("engine", server=True, addresses=addresses)
        return EngineTLS(ca_cert=self.ca_pem, cert=cert, key=key)

    def write_client(self, directory: Path, name: str = "client") -> Path:
        """``ca.pem``, ``cert.pem`` and ``key.pem`` (0600) of a client certificate in
        ``directory`` (created): a ``DOCKER_CERT_PATH``. Returns ``directory``."""
        return self._write(directory, *self.issue(name, server=False))

    def write_manager(self, directory: Path, addresses: Sequence[str], name: str = "swarm manager") -> Path:
        """``ca.pem``, ``cert.pem`` and ``key.pem`` (0600) of a swarm manager in ``directory``
        (created): serverAuth and clientAuth, SANs = ``addresses`` (it serves the API and dials
        the engines with the same certificate, as a Swarm master's). Returns ``directory``."""
        return self._write(directory, *self.issue(name, server=True, client=True, addresses=addresses))

    def _write(self, directory: Path, cert: bytes, key: bytes) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.pem").write_bytes(self.ca_pem)
        (directory / "cert.pem").write_bytes(cert)
        fd = os.open(directory / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return directory
