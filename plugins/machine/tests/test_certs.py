"""The machine store's certificates: SANs, key usages, chains that ``ssl`` verifies (and the ones
it refuses), validity, file modes and layout, rotation."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.errors import InvalidArgument, NotFound
from dockyard_machine.certs import (
    CLOCK_SKEW,
    DEFAULT_DAYS,
    MachineStore,
    load_issued,
    make_ca,
    make_client_cert,
    make_server_cert,
    read_cert,
    subject_alt_names,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> MachineStore:
    return MachineStore(tmp_path / "machine", org="alice")


def ext(cert: x509.Certificate, cls):  # noqa: ANN001, ANN202
    return cert.extensions.get_extension_for_class(cls)


# ------------------------------------------------------------------------- what is in them
def test_server_cert_names_every_address_and_nothing_else(store: MachineStore):
    host = store.issue_host("m1", ["10.88.0.2", "m1.example", "[fd00::2]", "10.88.0.2", "LOCALHOST."])
    sans = ext(read_cert(host.server_cert), x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.88.0.2"),
                                                        ipaddress.ip_address("fd00::2")]
    assert sans.get_values_for_type(x509.DNSName) == ["m1.example", "localhost"]
    assert host.addresses == ["10.88.0.2", "m1.example", "fd00::2", "localhost"]


@pytest.mark.parametrize("bad", [[], ["tcp://10.0.0.1:2376"], ["bad host"], ["-lead.example"], [""]])
def test_addresses_that_are_neither_ip_nor_host_name_are_refused(bad: list[str]):
    with pytest.raises(InvalidArgument):
        subject_alt_names(bad)


def test_key_usages(store: MachineStore):
    store.issue_host("m1", ["127.0.0.1"])
    ca = read_cert(store.certs_dir / "ca.pem")
    server = read_cert(store.host("m1").server_cert)
    client = read_cert(store.host("m1").cert)

    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign

    for leaf, usage in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert not ext(leaf, x509.BasicConstraints).value.ca
        assert list(ext(leaf, x509.ExtendedKeyUsage).value) == [usage]
        leaf_ku = ext(leaf, x509.KeyUsage).value
        assert leaf_ku.digital_signature and not leaf_ku.key_cert_sign
        assert leaf.issuer == ca.subject
        assert ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == \
            ext(ca, x509.SubjectKeyIdentifier).value.digest
        leaf.verify_directly_issued_by(ca)
    assert x509.SubjectAlternativeName not in {e.value.__class__ for e in client.extensions}


def test_keys_are_ecdsa_p256_and_subjects_name_the_owner(store: MachineStore):
    store.issue_host("m1", ["127.0.0.1"])
    issued = load_issued(store.host("m1").server_cert, store.host("m1").server_key)
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey) and issued.key.curve.name == "secp256r1"
    orgs = {p.name: read_cert(p).subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
            for p in (store.certs_dir / "ca.pem", store.host("m1").server_cert, store.host("m1").cert)}
    assert orgs == {"ca.pem": "alice", "server.pem": "alice.m1", "cert.pem": "alice"}
    assert not read_cert(store.host("m1").server_cert).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)


def test_a_swarm_manager_certificate_can_be_a_client_too(store: MachineStore):
    host = store.issue_host("mgr", ["10.0.0.5"], client_auth=True)
    assert set(ext(read_cert(host.server_cert), x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


# -------------------------------------------------------------------------------- validity
def test_validity_is_back_dated_for_clock_skew():
    ca = make_ca("o", now=NOW)
    server = make_server_cert(ca, ["127.0.0.1"], org="o", now=NOW, days=30)
    assert ca.cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert ca.cert.not_valid_after_utc == NOW - CLOCK_SKEW + dt.timedelta(days=DEFAULT_DAYS)
    assert server.cert.not_valid_after_utc - server.cert.not_valid_before_utc == dt.timedelta(days=30)
    with pytest.raises(InvalidArgument, match="at least one day"):
        make_client_cert(ca, org="o", days=0)


def test_host_expiry_is_reported(store: MachineStore):
    host = store.issue_host("m1", ["127.0.0.1"], days=10)
    left = host.expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=9, hours=23) < left <= dt.timedelta(days=10)


# ---------------------------------------------------------------- files: modes, layout, reuse
def test_layout_and_modes(store: MachineStore):
    host = store.issue_host("m1", ["127.0.0.1"])
    files = {p.relative_to(store.root).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"}
    assert files == {
        "certs/ca.pem": 0o644, "certs/ca-key.pem": 0o600, "certs/cert.pem": 0o644, "certs/key.pem": 0o600,
        "machines/m1/ca.pem": 0o644, "machines/m1/cert.pem": 0o644, "machines/m1/key.pem": 0o600,
        "machines/m1/server.pem": 0o644, "machines/m1/server-key.pem": 0o600,
    }
    for d in (store.certs_dir, host.dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert host.ca.read_bytes() == (store.certs_dir / "ca.pem").read_bytes()
    assert host.cert.read_bytes() == (store.certs_dir / "cert.pem").read_bytes()
    assert not [p for p in store.root.rglob(".*.pem*")], "temporary files left behind"


def test_one_ca_per_store_reused_by_every_host(store: MachineStore, tmp_path: Path):
    a, b = store.issue_host("a", ["10.0.0.1"]), store.issue_host("b", ["10.0.0.2"])
    assert a.ca.read_bytes() == b.ca.read_bytes()
    again = MachineStore(store.root, org="someone-else")  # a later process: loads, never remakes
    assert again.ensure_ca().cert == read_cert(a.ca)
    other = MachineStore(tmp_path / "other", org="alice").ensure_ca()
    assert other.cert != read_cert(a.ca)


def test_a_key_that_does_not_match_its_certificate_is_refused(store: MachineStore):
    store.ensure_ca()
    (store.certs_dir / "ca-key.pem").write_bytes(make_ca("x").key_pem())
    with pytest.raises(InvalidArgument, match="is not the key of"):
        store.issue_host("m1", ["127.0.0.1"])


def test_a_docker_machine_rsa_ca_still_signs(store: MachineStore):
    ca = make_ca("alice", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert ext(ca.cert, x509.KeyUsage).value.key_encipherment
    store.certs_dir.mkdir(parents=True)
    (store.certs_dir / "ca.pem").write_bytes(ca.cert_pem())
    (store.certs_dir / "ca-key.pem").write_bytes(ca.key_pem())
    host = store.issue_host("m1", ["127.0.0.1"])
    read_cert(host.server_cert).verify_directly_issued_by(ca.cert)
    handshake(host.ca, host.server_cert, host.server_key, host.cert, host.key, "127.0.0.1")


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_machine_names_stay_inside_the_store(store: MachineStore, name: str):
    with pytest.raises(InvalidArgument):
        store.host(name)


# -------------------------------------------------------------------------------- rotation
def test_regenerate_rotates_the_server_certificate_with_the_same_ca(store: MachineStore):
    host = store.issue_host("m1", ["10.88.0.2", "m1.example"])
    before = {p: p.read_bytes() for p in (host.ca, host.cert, host.key, host.server_cert, host.server_key)}
    store.regenerate("m1")
    assert host.server_cert.read_bytes() != before[host.server_cert]
    assert host.server_key.read_bytes() != before[host.server_key]
    assert read_cert(host.server_cert).serial_number != x509.load_pem_x509_certificate(before[host.server_cert]).serial_number
    for unchanged in (host.ca, host.cert, host.key):
        assert unchanged.read_bytes() == before[unchanged]
    assert host.addresses == ["10.88.0.2", "m1.example"]
    read_cert(host.server_cert).verify_directly_issued_by(read_cert(host.ca))
    handshake(host.ca, host.server_cert, host.server_key, host.cert, host.key, "10.88.0.2")

    store.regenerate("m1", ["10.88.0.9"])  # the host moved
    assert host.addresses == ["10.88.0.9"]
    assert stat.S_IMODE(host.server_key.stat().st_mode) == 0o600


def test_regenerate_keeps_a_manager_s_client_usage_and_needs_a_host(store: MachineStore):
    store.issue_host("mgr", ["10.0.0.5"], client_auth=True)
    host = store.regenerate("mgr")
    assert ExtendedKeyUsageOID.CLIENT_AUTH in ext(read_cert(host.server_cert), x509.ExtendedKeyUsage).value
    with pytest.raises(NotFound, match="no certificates"):
        store.regenerate("nope")


def test_daemon_flags_and_client_env(store: MachineStore):
    host = store.issue_host("m1", ["10.88.0.2"])
    assert host.daemon_flags("/etc/dockyard") == [
        "--tlsverify", "--tlscacert", "/etc/dockyard/ca.pem", "--tlscert", "/etc/dockyard/server.pem",
        "--tlskey", "/etc/dockyard/server-key.pem"]
    assert host.daemon_flags()[2] == str(host.ca)
    assert host.client_env("tcp://10.88.0.2:2376") == {
        "DOCKER_HOST": "tcp://10.88.0.2:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(host.dir)}


# ----------------------------------------------------------- chains, as ssl verifies them
class HandshakeFailed(Exception):
    """A refused handshake: ``server`` is what the server's ``ssl`` said (the reason), ``client``
    what the client saw (an alert, or only EOF when the connection closed first)."""

    def __init__(self, client: BaseException | None, server: BaseException | None) -> None:
        self.client, self.server = client, server
        super().__init__(f"server: {server!r}; client: {client!r}")


def handshake(ca: Path, server_cert: Path, server_key: Path, client_cert: Path | None, client_key: Path | None,
              server_name: str, *, server_ca: Path | None = None) -> None:
    """A mutual-TLS handshake over a socket pair, as dockyardd and a docker client configure it,
    and one echoed message. Raises :class:`HandshakeFailed` when either side refuses."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_2
    sctx.load_cert_chain(server_cert, server_key)
    sctx.load_verify_locations(cafile=server_ca or ca)
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(cafile=ca)
    if client_cert:
        cctx.load_cert_chain(client_cert, client_key)
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    failed: dict[str, BaseException] = {}

    def serve() -> None:
        try:
            with sctx.wrap_socket(b, server_side=True) as s:
                s.sendall(s.recv(5))
        except (ssl.SSLError, OSError) as exc:
            failed["server"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with cctx.wrap_socket(a, server_hostname=server_name) as c:
            c.sendall(b"hello")
            if c.recv(5) != b"hello":
                raise ssl.SSLEOFError("the server closed the connection")
    except (ssl.SSLError, OSError) as exc:
        failed["client"] = exc
    finally:
        a.close()
        t.join(10)
        b.close()
    if failed:
        raise HandshakeFailed(failed.get("client"), failed.get("server"))


def test_the_chain_verifies_with_ssl_for_every_address(store: MachineStore):
    host = store.issue_host("m1", ["127.0.0.1", "::1", "m1.example"])
    for name in ("127.0.0.1", "::1", "m1.example"):
        handshake(host.ca, host.server_cert, host.server_key, host.cert, host.key, name)


def test_ssl_refuses_an_address_the_certificate_does_not_name(store: MachineStore):
    host = store.issue_host("m1", ["127.0.0.1"])
    with pytest.raises(HandshakeFailed) as refused:
        handshake(host.ca, host.server_cert, host.server_key, host.cert, host.key, "127.0.0.2")
    assert isinstance(refused.value.client, ssl.SSLCertVerificationError)
    assert "IP address mismatch" in str(refused.value.client)
    for name in ("m1", "alice.m1"):  # the machine's name and the subject are no addresses
        with pytest.raises(HandshakeFailed, match="Hostname mismatch"):
            handshake(host.ca, host.server_cert, host.server_key, host.cert, host.key, name)


def test_ssl_refuses_certificates_of_another_store(store: MachineStore, tmp_path: Path):
    host = store.issue_host("m1", ["127.0.0.1"])
    stranger = MachineStore(tmp_path / "stranger", org="mallory").issue_host("m1", ["127.0.0.1"])
    with pytest.raises(HandshakeFailed) as refused:  # the server refuses the stranger's client
        handshake(host.ca, host.server_cert, host.server_key, stranger.cert, stranger.key, "127.0.0.1")
    assert "unable to get local issuer certificate" in str(refused.value.server)
    with pytest.raises(HandshakeFailed) as refused:  # the client refuses the stranger's server
        handshake(host.ca, stranger.server_cert, stranger.server_key, host.cert, host.key, "127.0.0.1",
                  server_ca=host.ca)
    assert isinstance(refused.value.client, ssl.SSLCertVerificationError)


def test_ssl_refuses_an_expired_client_certificate(store: MachineStore, tmp_path: Path):
    host = store.issue_host("m1", ["127.0.0.1"])
    expired = make_client_cert(store.ensure_ca(), org="alice", days=1,
                               now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    (tmp_path / "old.pem").write_bytes(expired.cert_pem())
    (tmp_path / "old-key.pem").write_bytes(expired.key_pem())
    with pytest.raises(HandshakeFailed, match="certificate has expired"):
        handshake(host.ca, host.server_cert, host.server_key, tmp_path / "old.pem", tmp_path / "old-key.pem",
                  "127.0.0.1")


def test_ssl_refuses_no_client_certificate_or_a_server_one(store: MachineStore):
    host = store.issue_host("m1", ["127.0.0.1"])  # serverAuth only
    with pytest.raises(HandshakeFailed, match="unsuitable certificate purpose"):  # no clientAuth usage
        handshake(host.ca, host.server_cert, host.server_key, host.server_cert, host.server_key, "127.0.0.1")
    with pytest.raises(HandshakeFailed, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        handshake(host.ca, host.server_cert, host.server_key, None, None, "127.0.0.1")
