"""dockyardd on TCP with TLS, as dockerd: mutual TLS (``--tlsverify``), server-only TLS
(``--tlsverify=false``), the ``daemon.json`` keys, dockerd's default file locations, and the
refusals: plain TCP off loopback at start; at the handshake, a client without a certificate, with
one from another CA, with an expired one, over TLS 1.1, or speaking plain HTTP, while the daemon
sees no request from any of them. Certificates come from ``dockyard_machine.certs``."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon

certs = pytest.importorskip("dockyard_machine.certs", reason="needs dockyard-machine (the certificate store)")

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    return certs.MachineStore(tmp_path / "store", org="dockyard-tests")


@pytest.fixture
def host(store):  # noqa: ANN001, ANN201
    return store.issue_host("local", ["127.0.0.1", "localhost"])


def start_tls(factory: Callable[..., Daemon], name: str, port: int, *flags: str, **kw) -> Daemon:
    """A daemon on its unix socket and on tcp://127.0.0.1:port, with dockerd's debug request
    log (``Calling GET /v1.41/info``); returns once the TCP listener is up."""
    d = factory(name, "-H", f"tcp://127.0.0.1:{port}", "--debug", *flags, **kw)
    d.wait_for_log("tcp:// listeners:")
    return d


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client as docker builds one: the CA file as the only root, the host name checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def request(port: int, ctx: ssl.SSLContext | None, method: str, path: str, body: dict | None = None,
            host: str = "127.0.0.1") -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


#: What a refused client sees: an alert, a reset (the daemon drops the connection when the
#: handshake fails) or an EOF; never an HTTP response.
REFUSED = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)


def over_unix(d: Daemon, path: str) -> bytes:
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(d.socket))
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def events_since(d: Daemon, since: float) -> list[dict]:
    until = int(time.time()) + 1
    body = over_unix(d, f"/events?since={since:.3f}&until={until}")
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def volume_names(d: Daemon) -> list[str]:
    return sorted(v["Name"] for v in json.loads(over_unix(d, "/volumes"))["Volumes"] or [])


# ----------------------------------------------------------------------------- mutual TLS
def test_mutual_tls_serves_a_client_of_the_ca(dockyardd_factory, host):
    port = free_port()
    d = start_tls(dockyardd_factory, "m", port, *host.daemon_flags())
    ctx = client_context(host.ca, host.cert, host.key)
    status, body = request(port, ctx, "GET", "/_ping")
    assert (status, body) == (200, b"OK")
    status, body = request(port, ctx, "GET", "/v1.41/info")
    assert status == 200 and json.loads(body)["DockerRootDir"] == str(d.data_root)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert()["subjectAltName"] == (("IP Address", "127.0.0.1"), ("DNS", "localhost"))
    assert over_unix(d, "/_ping") == b"OK"  # the unix socket stays plain
    assert f"tcp:// listeners: TLS, client certificates verified against {host.ca}" in d.log
    assert "Calling GET /v1.41/info" in d.log
    assert "without --tlsverify" not in d.log


def test_refused_clients_never_reach_the_daemon(dockyardd_factory, store, host, tmp_path: Path):
    """No certificate, one of another CA, an expired one, TLS 1.1, plain HTTP: each tries to
    create a volume; the daemon logs no request, creates nothing and emits no event. Then the
    right client does the same and all three show it (so the checks can see a request)."""
    port = free_port()
    d = start_tls(dockyardd_factory, "r", port, *host.daemon_flags())
    since = time.time()
    log_before = len(d.log)

    stranger = certs.MachineStore(tmp_path / "stranger", org="mallory").issue_host("local", ["127.0.0.1"])
    expired = certs.make_client_cert(store.ensure_ca(), org="dockyard-tests", days=1,
                                     now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    certs.write_pem(tmp_path / "expired.pem", expired.cert_pem(), 0o644)
    certs.write_pem(tmp_path / "expired-key.pem", expired.key_pem(), 0o600)
    tls11 = client_context(host.ca, host.cert, host.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: the point
        tls11.minimum_version = tls11.maximum_version = ssl.TLSVersion.TLSv1_1
    tls11.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL offer it, so the daemon is what refuses
    tls12_no_cert = client_context(host.ca)
    tls12_no_cert.maximum_version = ssl.TLSVersion.TLSv1_2
    refused = {
        "no-cert": client_context(host.ca),
        "no-cert-tls12": tls12_no_cert,
        "other-ca": client_context(host.ca, stranger.cert, stranger.key),
        "expired": client_context(host.ca, tmp_path / "expired.pem", tmp_path / "expired-key.pem"),
        "server-cert-as-client": client_context(host.ca, host.server_cert, host.server_key),
        "tls11": tls11,
        "plain-http": None,
    }
    for name, ctx in refused.items():
        with pytest.raises(REFUSED):
            status, body = request(port, ctx, "POST", "/v1.41/volumes/create", {"Name": name})
            pytest.fail(f"{name}: the daemon answered {status} {body[:200]!r}")

    seen = d.log[log_before:]  # before the checks below, which are requests too (over unix)
    assert "Calling" not in seen, seen
    assert volume_names(d) == []
    assert [e for e in events_since(d, since) if e.get("Type") != "daemon"] == []
    assert d.proc.poll() is None

    status, _ = request(port, client_context(host.ca, host.cert, host.key), "POST", "/v1.41/volumes/create",
                        {"Name": "right"})
    assert status == 201
    assert volume_names(d) == ["right"]
    assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in events_since(d, since)
            if e.get("Type") == "volume"] == [("volume", "create", "right")]
    assert "Calling POST /v1.41/volumes/create" in d.log[log_before:]


def test_the_client_refuses_a_daemon_it_does_not_trust(dockyardd_factory, host, tmp_path: Path):
    port = free_port()
    start_tls(dockyardd_factory, "t", port, *host.daemon_flags())
    stranger = certs.MachineStore(tmp_path / "stranger", org="mallory").issue_host("local", ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        request(port, client_context(stranger.ca, stranger.cert, stranger.key), "GET", "/_ping")
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):  # not in the SANs
        ctx = client_context(host.ca, host.cert, host.key)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            ctx.wrap_socket(raw, server_hostname="127.0.0.2")


# ----------------------------------------------------------------------- the other modes
def test_tlsverify_false_is_tls_without_client_certificates(dockyardd_factory, host):
    port = free_port()
    d = start_tls(dockyardd_factory, "s", port, "--tlsverify=false", "--tlscert", str(host.server_cert),
                  "--tlskey", str(host.server_key))
    assert request(port, client_context(host.ca), "GET", "/_ping") == (200, b"OK")
    with pytest.raises(REFUSED):
        request(port, None, "GET", "/_ping")  # still TLS: plain HTTP is not served
    assert "tcp:// listeners: TLS, client certificates not verified" in d.log
    assert "Binding to IP address without --tlsverify is insecure" in d.log


def test_daemon_json_keys(dockyardd_factory, host):
    port = free_port()
    d = start_tls(dockyardd_factory, "j", port, config={
        "tlsverify": True, "tlscacert": str(host.ca), "tlscert": str(host.server_cert),
        "tlskey": str(host.server_key)})
    assert request(port, client_context(host.ca, host.cert, host.key), "GET", "/_ping") == (200, b"OK")
    with pytest.raises(REFUSED):
        request(port, client_context(host.ca), "GET", "/_ping")
    assert "client certificates verified" in d.log


def test_tls_alone_verifies_clients_with_files_in_the_default_place(dockyardd_factory, host, tmp_path: Path):
    """``--tls`` with no paths: ~/.docker/{ca,cert,key}.pem, clients verified (dockerd 23+)."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    for src, dst in ((host.ca, "ca.pem"), (host.server_cert, "cert.pem"), (host.server_key, "key.pem")):
        shutil.copy(src, home / ".docker" / dst)
    port = free_port()
    d = start_tls(dockyardd_factory, "h", port, "--tls", env={"HOME": str(home)})
    assert f"verified against {home}/.docker/ca.pem" in d.log
    assert request(port, client_context(host.ca, host.cert, host.key), "GET", "/_ping") == (200, b"OK")
    with pytest.raises(REFUSED):
        request(port, client_context(host.ca), "GET", "/_ping")


def test_plain_tcp_on_loopback_is_served_with_a_warning(dockyardd_factory):
    port = free_port()
    d = start_tls(dockyardd_factory, "p", port)
    assert request(port, None, "GET", "/_ping") == (200, b"OK")
    assert "Binding to IP address without --tlsverify is insecure" in d.log
    assert "tcp:// listeners: plain HTTP" in d.log


# ---------------------------------------------------------------------- refusals at start
def run_daemon(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """A daemon expected to refuse to start (it runs to its exit)."""
    args = [sys.executable, "-m", "dockyard.daemon", "--data-root", str(root / "data"),
            "--exec-root", str(root / "run"), "-H", f"unix://{root / 'd.sock'}", *flags]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["flag", "daemon.json"])
def test_plain_tcp_off_loopback_refuses_to_start(tmp_path: Path, how: str):
    port = free_port()
    if how == "flag":
        res = run_daemon(tmp_path, "-H", f"tcp://0.0.0.0:{port}")
    else:  # hosts only in the file (a -H flag would replace them)
        (tmp_path / "daemon.json").write_text(json.dumps(
            {"hosts": [f"unix://{tmp_path / 'd.sock'}", f"tcp://0.0.0.0:{port}"]}))
        res = subprocess.run([sys.executable, "-m", "dockyard.daemon", "--data-root", str(tmp_path / "data"),
                              "--exec-root", str(tmp_path / "run"), "--config-file", str(tmp_path / "daemon.json")],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert f"refusing to listen on tcp://0.0.0.0:{port} without TLS" in res.stderr
    assert "explicitly specify '--tls=false'" in res.stderr
    assert not (tmp_path / "d.sock").exists() and not (tmp_path / "run" / "dockyardd.pid").exists()
    with socket.socket() as probe:  # nothing listens on the port
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("flags, message", [
    (["--tlsverify", "--tlscacert", "/nonexistent/ca.pem"],
     "invalid TLS configuration: could not read CA certificate '/nonexistent/ca.pem': No such file or directory"),
    (["--tlsverify", "--tlscert", "/nonexistent/server.pem"],
     "invalid TLS configuration: could not load X509 key pair (cert: '/nonexistent/server.pem'"),
])
def test_unusable_tls_files_refuse_to_start(tmp_path: Path, host, flags: list[str], message: str):
    given = {"--tlscacert": str(host.ca), "--tlscert": str(host.server_cert), "--tlskey": str(host.server_key)}
    for i in range(1, len(flags), 2):
        given[flags[i]] = flags[i + 1]
    res = run_daemon(tmp_path, "-H", f"tcp://127.0.0.1:{free_port()}", "--tlsverify",
                     *[x for kv in given.items() for x in kv])
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert not (tmp_path / "d.sock").exists() and not (tmp_path / "run" / "dockyardd.pid").exists()


# ----------------------------------------------------------------------------- rotation
def test_a_regenerated_server_certificate_is_served_after_a_restart(dockyardd_factory, store, host):
    def served_serial(port: int) -> int:
        ctx = client_context(host.ca, host.cert, host.key)
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    port = free_port()
    d = start_tls(dockyardd_factory, "a", port, *host.daemon_flags())
    first = served_serial(port)
    store.regenerate("local")
    assert served_serial(port) == first  # the running daemon keeps what it loaded
    assert d.stop() == 0
    start_tls(dockyardd_factory, "b", port, *host.daemon_flags())
    assert served_serial(port) == certs.read_cert(host.server_cert).serial_number != first
    assert request(port, client_context(host.ca, host.cert, host.key), "GET", "/_ping") == (200, b"OK")
