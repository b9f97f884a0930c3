"""The one client library (``dockyard.client``): address resolution (``-H``, ``DOCKYARD_HOST``,
``DOCKER_HOST`` and docker's TLS variables), the 8-byte stream demultiplexer, docker's size
formats, the hijack handshake against a small server on a unix socket, and TLS against a small
TLS server on 127.0.0.1 with certificates made here (a right CA, a wrong one, a host name the
certificate does not name)."""

from __future__ import annotations

import io
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard import errors as e
from dockyard.client import (
    DEFAULT_HOST,
    Client,
    ConnectionFailed,
    DaemonAddress,
    Demuxer,
    Frame,
    StreamError,
    TlsFailed,
    TlsFiles,
    bytes_size,
    copy_output,
    demux,
    human_size,
    resolve_address,
)

# ---------------------------------------------------------------------------- address resolution


@pytest.mark.parametrize("flag,dyh,dh,url,source", [
    ("unix:///flag.sock", "unix:///dy.sock", "unix:///docker.sock", "unix:///flag.sock", "-H"),
    (None, "unix:///dy.sock", "unix:///docker.sock", "unix:///dy.sock", "DOCKYARD_HOST"),
    (None, None, "unix:///docker.sock", "unix:///docker.sock", "DOCKER_HOST"),
    (None, "", "  ", DEFAULT_HOST, "default"),  # empty (or blank) counts as unset, as in docker
    (None, None, None, DEFAULT_HOST, "default"),
])
def test_resolution_order(flag: str | None, dyh: str | None, dh: str | None, url: str, source: str) -> None:
    env = {k: v for k, v in (("DOCKYARD_HOST", dyh), ("DOCKER_HOST", dh)) if v is not None}
    addr = resolve_address(flag, env)
    assert (addr.url, addr.source, addr.tls) == (url, source, None)


def test_resolution_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2999")
    for var in ("DOCKER_TLS_VERIFY", "DOCKER_TLS"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_address().url == "http://10.1.2.3:2999"
    assert Client().host == "tcp://10.1.2.3:2999"  # as written, for messages


@pytest.mark.parametrize("text,url", [
    ("tcp://10.0.0.1:4243", "http://10.0.0.1:4243"),
    ("tcp://10.0.0.1", "http://10.0.0.1:2375"),
    ("tcp://", "http://localhost:2375"),
    ("http://h:1", "http://h:1"),  # accepted as tcp://, as before
    ("tcp://[::1]:2375", "http://[::1]:2375"),
    ("h:1234", "http://h:1234"),  # docker: no scheme and not a path -> tcp
    ("/run/x.sock", "unix:///run/x.sock"),  # docker: a path -> unix
    ("unix:///run/x.sock", "unix:///run/x.sock"),
])
def test_address_forms(text: str, url: str) -> None:
    assert resolve_address(text, {}).url == url


@pytest.mark.parametrize("text", ["ssh://me@host", "unix://",
                                  "tcp://h:notaport", "tcp://h:1/prefix"])
def test_unsupported_addresses_are_refused(text: str) -> None:
    with pytest.raises(e.InvalidArgument, match="invalid host"):
        resolve_address(text, {})


def test_docker_tls_variables(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    env = {"DOCKER_HOST": "tcp://daemon.example", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    addr = resolve_address(None, env)
    # https, the TLS port, verification; no client pair yet (docker drops missing default files)
    assert addr.url == "https://daemon.example:2376" and addr.verify and addr.source == "DOCKER_HOST"
    assert addr.tls == TlsFiles(ca=str(certs / "ca.pem"), cert=None, key=None)
    (certs / "cert.pem").write_text("x")
    assert resolve_address(None, env).tls.cert is None  # a pair with a part missing: no client cert
    (certs / "key.pem").write_text("x")
    assert resolve_address(None, env).tls == TlsFiles(str(certs / "ca.pem"), str(certs / "cert.pem"),
                                                      str(certs / "key.pem"))
    # an explicit port stays; any non-empty DOCKER_TLS_VERIFY means verify ("0" too, like docker)
    assert resolve_address("tcp://d:9999", {**env, "DOCKER_TLS_VERIFY": "0"}).url == "https://d:9999"
    assert resolve_address("tcp://d:9999", {**env, "DOCKER_TLS_VERIFY": "0"}).verify
    # empty means unset: plain TCP on 2375
    plain = resolve_address(None, {**env, "DOCKER_TLS_VERIFY": ""})
    assert (plain.url, plain.tls, plain.verify) == ("http://daemon.example:2375", None, False)
    # DOCKER_TLS: TLS without verification
    loose = resolve_address(None, {"DOCKER_HOST": "tcp://d", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(certs)})
    assert loose.url == "https://d:2376" and loose.tls is not None and not loose.verify
    # TLS applies to a tcp address from -H or DOCKYARD_HOST too, never to a unix socket
    assert resolve_address(None, {**env, "DOCKYARD_HOST": "tcp://other"}).url == "https://other:2376"
    sock = resolve_address("unix:///x.sock", env)
    assert (sock.url, sock.tls, sock.verify) == ("unix:///x.sock", None, False)


def test_cert_path_defaults_to_the_docker_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"DOCKER_HOST": "tcp://d", "DOCKER_TLS_VERIFY": "1"}
    assert resolve_address(None, env).tls.ca == str(tmp_path / ".docker" / "ca.pem")
    assert resolve_address(None, {**env, "DOCKER_CONFIG": "/cfg"}).tls.ca == "/cfg/ca.pem"


def test_unreachable_daemon_is_a_clear_connection_failure(tmp_path: Path) -> None:
    client = Client(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(ConnectionFailed, match="Is dockyardd running?"):
        client.get("/version")
    with pytest.raises(ConnectionFailed, match="Is dockyardd running?"):
        client.hijack("/containers/x/attach")


# ---------------------------------------------------------------------------- demultiplexer


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


STREAM = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"x" * 70000) + frame(2, b"!")
FRAMES = [(1, b"out\n"), (2, b"err\n"), (1, b"x" * 70000), (2, b"!")]  # the empty frame is dropped


def test_demuxer_takes_bytes_split_anywhere() -> None:
    for size in (1, 3, 7, 8, 9, 4096, len(STREAM)):
        d = Demuxer()
        got: list[Frame] = []
        for i in range(0, len(STREAM), size):
            got += d.feed(STREAM[i:i + size])
        assert got == FRAMES, size
        assert d.close() is None


def test_demux_never_asks_more_than_the_frame_lacks() -> None:
    """A reader that blocks until it has n bytes (HTTPResponse.read, ``logs -f``) must not be
    asked for bytes of a frame the daemon has not sent yet: here it fails if it is."""
    src = io.BytesIO(STREAM)
    frame_ends = []
    pos = 0
    while pos < len(STREAM):
        length = struct.unpack(">L", STREAM[pos + 4:pos + 8])[0]
        frame_ends += [pos + 8, pos + 8 + length]
        pos += 8 + length

    def blocking_read(n: int) -> bytes:
        here = src.tell()
        assert here == len(STREAM) or here + n <= min(x for x in frame_ends if x > here)
        return src.read(n)

    assert list(demux(blocking_read)) == FRAMES


def test_demux_over_a_socket_and_a_truncated_last_frame() -> None:
    a, b = socket.socketpair()
    data = frame(1, b"ok") + frame(2, b"truncated")[:-3]

    def trickle() -> None:
        for i in range(0, len(data), 5):
            a.sendall(data[i:i + 5])
        a.close()

    t = threading.Thread(target=trickle)
    t.start()
    assert list(demux(b.recv)) == [(1, b"ok"), (2, b"trunca")]
    t.join()
    b.close()


def test_copy_output_routes_streams_and_raises_a_daemon_error() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    copy_output(io.BytesIO(STREAM).read, tty=False, out=out, err=err)
    assert out.getvalue() == b"out\n" + b"x" * 70000 and err.getvalue() == b"err\n!"
    raw = io.BytesIO()
    copy_output(io.BytesIO(STREAM).read, tty=True, out=raw, err=err)
    assert raw.getvalue() == STREAM  # a TTY stream is not framed
    with pytest.raises(StreamError, match="error from daemon in stream: boom"):
        copy_output(io.BytesIO(frame(1, b"a") + frame(3, b"boom")).read, tty=False, out=out, err=err)


# ---------------------------------------------------------------------------- sizes

# go-units' own tests (size_test.go) and what docker prints for busybox (4.26MB in `docker images`).
HUMAN = [(0, "0B"), (12, "12B"), (942, "942B"), (999, "999B"), (1000, "1kB"), (1024, "1.024kB"),
         (19968, "19.97kB"), (32768, "32.77kB"), (1_000_000, "1MB"), (1_048_576, "1.049MB"),
         (1_984_172, "1.984MB"), (2_163_712, "2.164MB"), (2_000_000, "2MB"), (3.42e9, "3.42GB"),
         (5.372e12, "5.372TB"), (2.22e15, "2.22PB"), (1e28, "1e+04YB")]
HUMAN3 = [(4_261_550, "4.26MB"), (2_163_712, "2.16MB"), (999_999, "1e+03kB"), (5000, "5kB"),
          (77_800_000, "77.8MB"), (1_234_567_890, "1.23GB")]
BINARY = [(1024, "1KiB"), (1_048_576, "1MiB"), (2 * 2**20, "2MiB"), (3.42 * 2**30, "3.42GiB"),
          (5.372 * 2**40, "5.372TiB"), (2.22 * 2**50, "2.22PiB"), (2**50 * 2**50, "1.049e+06YiB"),
          (8_232_304_640, "7.667GiB"), (500, "500B")]


@pytest.mark.parametrize("size,text", HUMAN)
def test_human_size_is_go_units_HumanSize(size: float, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize("size,text", HUMAN3)
def test_human_size_precision_3_is_the_listings(size: float, text: str) -> None:
    assert human_size(size, 3) == text


@pytest.mark.parametrize("size,text", BINARY)
def test_bytes_size_is_go_units_BytesSize(size: float, text: str) -> None:
    assert bytes_size(size) == text


# ---------------------------------------------------------------------------- a tiny engine


@dataclass
class TinyEngine:
    """Answers just enough HTTP on a listening socket (unix or TLS): ``/version`` as JSON,
    ``/containers/up/attach`` and ``/exec/up/start`` upgraded (the first frame sent with the
    101; after the client's half-close, what it sent comes back on stderr), ``/missing`` a
    chunked 404, ``/busy`` a 409 with a length."""

    listener: socket.socket
    tls: ssl.SSLContext | None = None
    requests: list[dict[str, object]] = field(default_factory=list)
    handshake_errors: list[str] = field(default_factory=list)

    def start(self) -> TinyEngine:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.handshake_errors.append(str(exc))
                    return
            self._answer(conn)
        finally:
            conn.close()

    def _answer(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += conn.recv(4096)
        self.requests.append({"method": method, "target": target, "headers": headers,
                              "body": json.loads(rest) if rest else None,
                              "peer_cert": conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None})
        path = target.split("?")[0]
        if path.endswith("/version"):
            body = json.dumps({"ApiVersion": "1.41", "Tls": self.tls is not None}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        elif path.endswith(("/containers/up/attach", "/exec/up/start")):
            assert headers["upgrade"] == "tcp" and headers["connection"].lower() == "upgrade"
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + frame(1, b"hello\n"))
            stdin = b""
            while chunk := conn.recv(4096):  # until the client's half-close
                stdin += chunk
            conn.sendall(frame(2, b"got:" + stdin))
        elif path.endswith("/missing"):
            msg = json.dumps({"message": "No such container: missing"}).encode() + b"\n"
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(msg):x}\r\n".encode() + msg
                         + b"\r\n0\r\n\r\n")
        else:
            msg = json.dumps({"message": "container up is paused"}).encode()
            conn.sendall(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(msg)).encode() + b"\r\n\r\n" + msg)


@pytest.fixture
def unix_engine() -> Iterator[tuple[TinyEngine, str]]:
    with tempfile.TemporaryDirectory(prefix="dyc") as d:  # short: a socket path has 108 bytes
        path = f"{d}/engine.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        engine = TinyEngine(listener).start()
        yield engine, f"unix://{path}"
        engine.stop()


def _session(client: Client, path: str, body: object = None) -> list[Frame]:
    """Attach, read the frame that came with the 101, send stdin, half-close, read the rest."""
    conn = client.hijack(path, {"stream": 1, "stdin": 1, "logs": None}, body)
    first = conn.read(8 + 6)  # sent in the same packet as the 101: kept by the handshake
    conn.send(b"typed input")
    conn.close_write()  # half-close: the engine sees the end of stdin, the read side stays open
    frames = list(demux(conn.read))
    conn.close()
    return [Frame(first[0], first[8:])] + frames


def test_hijack_over_a_unix_socket(unix_engine: tuple[TinyEngine, str]) -> None:
    engine, host = unix_engine
    client = Client(host)
    frames = _session(client, "/containers/up/attach")
    assert frames == [(1, b"hello\n"), (2, b"got:typed input")]
    req = engine.requests[-1]
    assert req["method"] == "POST" and req["target"] == "/v1.41/containers/up/attach?stream=1&stdin=1"
    assert req["body"] is None and req["headers"]["content-length"] == "0"
    frames = _session(client, "/exec/up/start", {"Detach": False, "Tty": False})
    assert frames[-1] == (2, b"got:typed input") and engine.requests[-1]["body"] == {"Detach": False, "Tty": False}


def test_hijack_refusals_are_typed_errors(unix_engine: tuple[TinyEngine, str]) -> None:
    _, host = unix_engine
    client = Client(host)
    with pytest.raises(e.NotFound, match="^No such container: missing$"):  # chunked body
        client.hijack("/containers/missing")
    with pytest.raises(e.Conflict, match="^container up is paused$"):  # Content-Length body
        client.hijack("/containers/busy")


def test_plain_requests_over_a_unix_socket(unix_engine: tuple[TinyEngine, str]) -> None:
    _, host = unix_engine
    assert Client(host).get("/version") == {"ApiVersion": "1.41", "Tls": False}
    with pytest.raises(e.NotFound, match="No such container"):
        Client(host).get("/missing")


# ---------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server and client certificates
    server: tuple[Path, Path]
    client_dir: Path  # ca.pem, cert.pem, key.pem, as docker expects them in DOCKER_CERT_PATH
    wrong_dir: Path  # a different CA (with a client pair it signed)


def _make_pki_cryptography(root: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def issue(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
              usage: list[x509.ObjectIdentifier] | None = None, sans: list[x509.GeneralName] | None = None
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer[0].subject if issuer else name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
        if issuer is None:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False,
                                              encipher_only=False, decipher_only=False), critical=True)
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
                                critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    def write(directory: Path, stem: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
        directory.mkdir(exist_ok=True)
        (directory / f"{stem}.pem").write_bytes(pair[0].public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}-key.pem").write_bytes(key_pem(pair[1]))

    import ipaddress

    for name in ("good", "wrong"):
        ca = issue(f"dockyard test CA {name}", None)
        write(root / name, "ca", ca)
        server = issue("dockyardd", ca, [ExtendedKeyUsageOID.SERVER_AUTH],
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])  # no DNS name: not "localhost"
        write(root / name, "server", server)
        write(root / name, "client", issue("client", ca, [ExtendedKeyUsageOID.CLIENT_AUTH]))


def _make_pki_openssl(root: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

    for name in ("good", "wrong"):
        d = root / name
        d.mkdir()
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", f"/CN=dockyard test CA {name}", "-keyout", f"{d}/ca-key.pem", "-out", f"{d}/ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for stem, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                          ("client", "extendedKeyUsage=clientAuth")):
            (d / f"{stem}.ext").write_text(ext + "\n")
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                f"/CN={stem}", "-keyout", f"{d}/{stem}-key.pem", "-out", f"{d}/{stem}.csr")
            run("x509", "-req", "-in", f"{d}/{stem}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca-key.pem",
                "-CAcreateserial", "-days", "1", "-extfile", f"{d}/{stem}.ext", "-out", f"{d}/{stem}.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made here: with the ``cryptography`` package when it is installed (the
    workspace venv), else with the ``openssl`` command (the bare ``test-core`` tox env)."""
    root = tmp_path_factory.mktemp("pki")
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        _make_pki_openssl(root)
    else:
        _make_pki_cryptography(root)
    dirs = {}
    for name in ("good", "wrong"):  # DOCKER_CERT_PATH layouts
        d = root / f"docker-{name}"
        d.mkdir()
        shutil.copy(root / name / "ca.pem", d / "ca.pem")
        shutil.copy(root / name / "client.pem", d / "cert.pem")
        shutil.copy(root / name / "client-key.pem", d / "key.pem")
        dirs[name] = d
    return Pki(ca=root / "good" / "ca.pem", server=(root / "good" / "server.pem", root / "good" / "server-key.pem"),
               client_dir=dirs["good"], wrong_dir=dirs["wrong"])


@pytest.fixture
def tls_engine(pki: Pki) -> Iterator[tuple[TinyEngine, int]]:
    """A TLS engine on 127.0.0.1 that, like ``dockerd --tlsverify``, requires a client
    certificate signed by its CA. The client half-closes stdin as docker does, with a TCP
    ``shutdown(SHUT_WR)`` under TLS and no close_notify; Go's TLS (dockerd) takes that as the end
    of input, OpenSSL as a fatal error unless told otherwise (``OP_IGNORE_UNEXPECTED_EOF``), after
    which this server could not send the rest of the output."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki.server)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=pki.ca)
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    listener = socket.create_server(("127.0.0.1", 0))
    engine = TinyEngine(listener, tls=ctx).start()
    yield engine, listener.getsockname()[1]
    engine.stop()


def _tls_env(cert_dir: Path, verify: bool = True) -> dict[str, str]:
    return {"DOCKER_CERT_PATH": str(cert_dir), "DOCKER_TLS_VERIFY" if verify else "DOCKER_TLS": "1"}


def test_tls_with_the_right_ca(tls_engine: tuple[TinyEngine, int], pki: Pki) -> None:
    engine, port = tls_engine
    client = Client(resolve_address(f"tcp://127.0.0.1:{port}", _tls_env(pki.client_dir)))
    assert client.address.url == f"https://127.0.0.1:{port}" and client.address.verify
    assert client.get("/version") == {"ApiVersion": "1.41", "Tls": True}
    peer = engine.requests[-1]["peer_cert"]
    assert peer and dict(x[0] for x in peer["subject"])["commonName"] == "client"  # our cert.pem went
    frames = _session(client, "/containers/up/attach")  # the hijack and half-close over TLS
    assert frames == [(1, b"hello\n"), (2, b"got:typed input")]
    with pytest.raises(e.Conflict, match="paused"):
        client.hijack("/containers/busy")


def test_tls_with_a_wrong_ca_is_refused(tls_engine: tuple[TinyEngine, int], pki: Pki) -> None:
    engine, port = tls_engine
    client = Client(resolve_address(f"tcp://127.0.0.1:{port}", _tls_env(pki.wrong_dir)))
    with pytest.raises(TlsFailed) as info:
        client.get("/version")
    message = str(info.value)
    assert f"TLS handshake with the daemon at tcp://127.0.0.1:{port} failed" in message
    # OpenSSL's reason depends on the chain the server sends (this one sends its CA too: "self-signed
    # certificate in certificate chain"; dockerd sends the leaf: "unable to get local issuer certificate")
    assert "certificate verify failed: " in message and str(pki.wrong_dir / "ca.pem") in message
    with pytest.raises(TlsFailed, match="certificate verify failed"):
        client.hijack("/containers/up/attach")
    assert not engine.requests  # nothing was sent


def test_tls_checks_the_host_name(tls_engine: tuple[TinyEngine, int], pki: Pki) -> None:
    _, port = tls_engine  # the server certificate names 127.0.0.1 only
    client = Client(resolve_address(f"tcp://localhost:{port}", _tls_env(pki.client_dir)))
    with pytest.raises(TlsFailed, match="[Hh]ostname mismatch"):
        client.get("/version")


def test_tls_without_verification_and_files_that_cannot_be_used(tls_engine: tuple[TinyEngine, int], pki: Pki,
                                                                tmp_path: Path) -> None:
    _, port = tls_engine
    # DOCKER_TLS: encrypted, the daemon's certificate not checked (its CA is not this one)
    loose = Client(resolve_address(f"tcp://127.0.0.1:{port}", _tls_env(pki.wrong_dir, verify=False)))
    with pytest.raises(ConnectionFailed):  # ...but this engine refuses a client cert of another CA
        loose.get("/version")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(pki.wrong_dir / "ca.pem", mixed / "ca.pem")
    shutil.copy(pki.client_dir / "cert.pem", mixed / "cert.pem")
    shutil.copy(pki.client_dir / "key.pem", mixed / "key.pem")
    loose = Client(resolve_address(f"tcp://127.0.0.1:{port}", _tls_env(mixed, verify=False)))
    assert loose.get("/version") == {"ApiVersion": "1.41", "Tls": True}
    with pytest.raises(TlsFailed, match="could not read CA certificate"):
        Client(resolve_address(f"tcp://127.0.0.1:{port}", _tls_env(tmp_path / "nowhere"))).get("/version")


def test_a_daemon_address_is_a_value() -> None:
    a = DaemonAddress.parse("tcp://h:1", source="DOCKER_HOST")
    assert a == DaemonAddress.parse("tcp://h:1", source="DOCKER_HOST") and hash(a) == hash(a)
    with pytest.raises(Exception):  # noqa: B017 - frozen
        a.url = "x"  # type: ignore[misc]
    assert str(a) == "tcp://h:1" and (a.scheme, a.hostname, a.port) == ("http", "h", 1)


# ---------------------------------------------------------------------------- start-up


def test_dockyard_version_imports_neither_http_client_nor_ssl() -> None:
    code = ("import sys; from dockyard.cli.main import main; main(['--version']); "
            "print(sorted(m for m in ('http.client', 'ssl', 'dockyard.client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"
