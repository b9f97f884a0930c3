"""Certificates for machines: one CA per machine store, a server certificate per host, client
certificates, in docker-machine's file layout.

A machine's engine listens with mutual TLS (``dockyardd --tlsverify``): it presents its server
certificate and accepts only clients whose certificate the store's CA signed; the client checks
the engine's certificate against the same CA and the address it dialled. The files::

    <store>/certs/ca.pem  ca-key.pem       the store's CA (the key never leaves this directory)
    <store>/certs/cert.pem  key.pem        the client certificate our CLI presents (clientAuth)
    <store>/machines/<name>/ca.pem  cert.pem  key.pem
                                           copies of the above: DOCKER_CERT_PATH for that host
    <store>/machines/<name>/server.pem  server-key.pem
                                           the host engine's certificate (serverAuth), SANs = every
                                           address the host is reached by

Keys are written 0600 (directories 0700, certificates 0644), each file atomically.

**Keys are ECDSA P-256**, where docker-machine used RSA 2048. The security is at least as good
(~128-bit against RSA 2048's ~112), a key takes well under a millisecond to make instead of tens
to hundreds (a store issues one per host and per rotation, tests many), handshakes are cheaper
and the files small. Every client we serve takes it: Go's crypto/tls (the docker CLI, compose),
OpenSSL through Python's ``ssl`` (docker-py, our CLI). A store made by docker-machine still
works: its RSA CA key is loaded as it is and signs the certificates issued from it.

Validity follows docker-machine: 1080 days by default, ``not_before`` back-dated five minutes so a
host whose clock is a little behind still accepts a certificate made just now.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.errors import InvalidArgument, NotFound

__all__ = [
    "CLOCK_SKEW", "DEFAULT_DAYS", "HostCerts", "Issued", "MachineStore", "load_issued", "make_ca",
    "make_client_cert", "make_server_cert", "new_key", "read_cert", "subject_alt_names", "write_pem",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

#: docker-machine's validity for every certificate it makes.
DEFAULT_DAYS = 1080
#: How far ``not_before`` is back-dated (docker-machine: five minutes, for hosts' clock skew).
CLOCK_SKEW = dt.timedelta(minutes=5)

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
CERT_FILE, KEY_FILE = "cert.pem", "key.pem"
SERVER_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, in memory."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (docker dropped encrypted keys in 23.0)."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (see the module docstring for why not RSA)."""
    return ec.generate_private_key(ec.SECP256R1())


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _validity(builder: x509.CertificateBuilder, days: int, now: dt.datetime | None) -> x509.CertificateBuilder:
    if days <= 0:
        raise InvalidArgument(f"a certificate must be valid for at least one day, not {days}")
    not_before = _now(now) - CLOCK_SKEW
    return builder.not_valid_before(not_before).not_valid_after(not_before + dt.timedelta(days=days))


def _name(org: str, common_name: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_usage(*, cert_sign: bool = False, rsa_key: bool = False) -> x509.KeyUsage:
    # RSA keys also encipher the TLS 1.2 key exchange (docker-machine sets it); EC keys only sign.
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def make_ca(org: str, *, common_name: str = "dockyard machine CA", days: int = DEFAULT_DAYS,
            now: dt.datetime | None = None, key: PrivateKey | None = None) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = key or new_key()
    name = _name(org, common_name)
    public = key.public_key()
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
               .serial_number(x509.random_serial_number())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_key_usage(cert_sign=True, rsa_key=isinstance(key, rsa.RSAPrivateKey)),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    return Issued(_validity(builder, days, now).sign(key, hashes.SHA256()), key)


def subject_alt_names(addresses: Iterable[str]) -> x509.SubjectAlternativeName:
    """IP addresses become ``iPAddress`` entries and everything else ``dNSName`` entries, in the
    order given, duplicates dropped. Raises :class:`InvalidArgument` on an empty list or a value
    that is neither an IP address nor a host name."""
    entries: list[x509.GeneralName] = []
    for raw in addresses:
        text = str(raw).strip()
        bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(bare))
        except ValueError:
            name = bare.rstrip(".").lower()
            labels = name.split(".")
            wildcard = labels[0] == "*" and len(labels) > 2
            if not name or not all(_DNS_LABEL.fullmatch(label) for label in labels[1 if wildcard else 0:]):
                raise InvalidArgument(f"{raw!r} is neither an IP address nor a host name") from None
            entry = x509.DNSName(name)
        if entry not in entries:
            entries.append(entry)
    if not entries:
        raise InvalidArgument("a server certificate needs at least one address (IP or host name)")
    return x509.SubjectAlternativeName(entries)


def _leaf(ca: Issued, subject: x509.Name, key: PrivateKey, usages: list[x509.ObjectIdentifier],
          days: int, now: dt.datetime | None) -> x509.CertificateBuilder:
    public = key.public_key()
    try:  # the authority key identifier repeats the CA's own identifier
        ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # a CA made without one (old docker-machine stores)
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject).public_key(public)
               .serial_number(x509.random_serial_number())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                              critical=False))
    return _validity(builder, days, now)


def make_server_cert(ca: Issued, addresses: Sequence[str], *, org: str, days: int = DEFAULT_DAYS,
                     now: dt.datetime | None = None, client_auth: bool = False) -> Issued:
    """An engine's certificate, signed by ``ca``, naming every address in ``addresses`` (IPs and
    host names) as subject alternative names. The subject has no common name (as docker-machine's):
    OpenSSL clients fall back to matching it when a certificate has no DNS name, so a name there
    would be an address nobody asked for. ``client_auth`` adds the clientAuth usage too (a manager
    that also dials other engines, as docker-machine's swarm master did)."""
    sans = subject_alt_names(addresses)
    key = new_key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
    builder = _leaf(ca, _name(org), key, usages, days, now).add_extension(sans, critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_client_cert(ca: Issued, *, org: str, common_name: str = "dockyard client", days: int = DEFAULT_DAYS,
                     now: dt.datetime | None = None) -> Issued:
    """A client certificate (clientAuth usage only) signed by ``ca``: what ``--tlsverify``
    engines accept from the docker CLI, docker-py and our CLI."""
    key = new_key()
    builder = _leaf(ca, _name(org, common_name), key, [ExtendedKeyUsageOID.CLIENT_AUTH], days, now)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


# ------------------------------------------------------------------------------------ files
def write_pem(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` from the first byte: a temporary file
    created with that mode in the same directory, synced, renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"certificate {path} does not exist") from exc
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not a PEM certificate: {exc}") from exc


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """A certificate and its key from PEM files; the key must match the certificate."""
    cert = read_cert(cert_path)
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise NotFound(f"key {key_path} does not exist") from exc
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{key_path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise InvalidArgument(f"{key_path}: only ECDSA and RSA keys are supported")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise InvalidArgument(f"{key_path} is not the key of {cert_path}")
    return Issued(cert, key)


def _write_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    write_pem(key_path, issued.key_pem(), 0o600)  # the key first: a cert never names a missing key
    write_pem(cert_path, issued.cert_pem(), 0o644)


@dataclass(frozen=True)
class HostCerts:
    """The TLS files of one host, in its machine directory."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / CA_FILE

    @property
    def cert(self) -> Path:
        """The client certificate (a copy of the store's)."""
        return self.dir / CERT_FILE

    @property
    def key(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def server_cert(self) -> Path:
        return self.dir / SERVER_FILE

    @property
    def server_key(self) -> Path:
        return self.dir / SERVER_KEY_FILE

    @property
    def addresses(self) -> list[str]:
        """The addresses the server certificate names, as written in it."""
        sans = read_cert(self.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n.value) for n in sans]

    @property
    def expires(self) -> dt.datetime:
        """When the server certificate stops being valid (UTC)."""
        return read_cert(self.server_cert).not_valid_after_utc

    def daemon_flags(self, directory: str | Path | None = None) -> list[str]:
        """The ``dockyardd`` flags for mutual TLS with these files, found in ``directory`` (where
        they were copied on the host; default: this machine directory)."""
        where = Path(directory) if directory is not None else self.dir
        return ["--tlsverify", "--tlscacert", str(where / CA_FILE), "--tlscert", str(where / SERVER_FILE),
                "--tlskey", str(where / SERVER_KEY_FILE)]

    def client_env(self, url: str) -> dict[str, str]:
        """What ``docker-machine env`` sets: the docker CLI, docker-py and our CLI then reach the
        engine at ``url`` (``tcp://ip:2376``) with these files."""
        return {"DOCKER_HOST": url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.dir)}


class MachineStore:
    """A machine store's certificates: the CA and client certificate in ``<root>/certs``, each
    host's files in ``<root>/machines/<name>``. ``org`` names the store's owner in every
    certificate (default: the local user name, as docker-machine does)."""

    def __init__(self, root: str | Path, org: str | None = None) -> None:
        self.root = Path(root)
        self.org = org or getpass.getuser()

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    def host(self, name: str) -> HostCerts:
        if not name or "/" in name or name in (".", ".."):
            raise InvalidArgument(f"invalid machine name {name!r}")
        return HostCerts(self.root / "machines" / name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of the store at a time (two ``machine create`` must not make two CAs)."""
        self.certs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.certs_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def _ensure_ca(self) -> Issued:
        cert, key = self.certs_dir / CA_FILE, self.certs_dir / CA_KEY_FILE
        if cert.exists() or key.exists():
            return load_issued(cert, key)
        ca = make_ca(self.org)
        _write_issued(ca, cert, key)
        return ca

    def _ensure_client(self, ca: Issued) -> Issued:
        cert, key = self.certs_dir / CERT_FILE, self.certs_dir / KEY_FILE
        if cert.exists() or key.exists():
            return load_issued(cert, key)
        client = make_client_cert(ca, org=self.org)
        _write_issued(client, cert, key)
        return client

    def ensure_ca(self) -> Issued:
        """The store's CA, made on first use (with the client certificate)."""
        with self._locked():
            ca = self._ensure_ca()
            self._ensure_client(ca)
            return ca

    def client(self) -> Issued:
        """The store's client certificate (made with the CA on first use)."""
        with self._locked():
            return self._ensure_client(self._ensure_ca())

    def issue_host(self, name: str, addresses: Sequence[str], *, days: int = DEFAULT_DAYS,
                   client_auth: bool = False) -> HostCerts:
        """The files of host ``name``: a server certificate for ``addresses`` (every IP and host
        name it is reached by) and copies of the CA and client certificate. Issuing again for a
        host replaces its server certificate and key."""
        host = self.host(name)
        with self._locked():
            ca = self._ensure_ca()
            client = self._ensure_client(ca)
            server = make_server_cert(ca, addresses, org=f"{self.org}.{name}", days=days,
                                      client_auth=client_auth)
            host.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_pem(host.ca, ca.cert_pem(), 0o644)
            _write_issued(client, host.cert, host.key)
            _write_issued(server, host.server_cert, host.server_key)
        return host

    def regenerate(self, name: str, addresses: Sequence[str] | None = None, *,
                   days: int = DEFAULT_DAYS) -> HostCerts:
        """Rotate host ``name``'s server certificate: a new key and certificate from the same CA,
        for the addresses it named (or ``addresses``, when the host is now reached otherwise).
        Clients need nothing new; the engine must restart to present it."""
        host = self.host(name)
        if not host.server_cert.exists():
            raise NotFound(f"machine {name!r} has no certificates in {host.dir}")
        old = read_cert(host.server_cert)
        usages = old.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return self.issue_host(name, addresses if addresses is not None else host.addresses, days=days,
                               client_auth=ExtendedKeyUsageOID.CLIENT_AUTH in usages)
