"""The container front without a daemon: frames, detach keys, create bodies to the core's
request, the inspect shape, and the hijack on a real aiohttp server (101, half-close)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from aiohttp import web

from dockyard.errors import InvalidArgument
from dockyard.model import Container, ContainerConfig, Health, Healthcheck, HostConfig
from dockyard_api_docker.containers import create_request_from
from dockyard_api_docker.shapes import container_inspect
from dockyard_api_docker.streams import DetachScanner, frame, hijack, parse_detach_keys


def test_frames() -> None:
    assert frame("stdout", b"out\n") == b"\x01\x00\x00\x00\x00\x00\x00\x04out\n"
    assert frame("stderr", b"e") == b"\x02\x00\x00\x00\x00\x00\x00\x01e"
    big = frame("stdout", b"x" * 70000)
    assert struct.unpack(">L", big[4:8])[0] == 70000


def test_detach_keys() -> None:
    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[") == b"\x00\x1b"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-ab")
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"abc\x10") == (b"abc", False)  # a possible start is held back
    assert s.feed(b"\x11rest") == (b"", True)
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"a\x10") == (b"a", False)
    assert s.feed(b"b") == (b"\x10b", False)  # not the sequence after all: released


def test_create_body_cli_and_docker_py() -> None:
    cli = {"Image": "busybox", "Cmd": ["echo", "hi"], "Entrypoint": None, "Env": ["A=1"], "Tty": True,
           "OpenStdin": True, "StdinOnce": True, "Labels": {"cap": "1"}, "ExposedPorts": {"80/tcp": {}},
           "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000},
           "HostConfig": {"AutoRemove": True, "Binds": ["vol:/data", "/srv:/host:ro"], "NetworkMode": "default",
                          "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "Memory": 67108864,
                          "NanoCpus": 500000000, "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                             "HostPort": "18080"}]},
                          "LogConfig": {"Type": "", "Config": {}}, "ConsoleSize": [30, 100],
                          "MemorySwappiness": -1},
           "NetworkingConfig": {"EndpointsConfig": {"net1": {"Aliases": ["web"]}}}}
    req = create_request_from(cli, "/cap")
    assert req.name == "/cap" and req.cmd == ["echo", "hi"] and req.entrypoint is None
    assert req.config.tty and req.config.stdin_once and req.config.labels == {"cap": "1"}
    assert req.config.healthcheck == Healthcheck(test=["CMD-SHELL", "true"], interval=2000000000)
    hc = req.host_config
    assert hc.auto_remove and hc.memory == 67108864 and hc.nano_cpus == 500000000
    assert hc.restart_policy.name == "on-failure" and hc.restart_policy.maximum_retry_count == 3
    assert hc.port_bindings["80/tcp"][0].host_port == "18080" and hc.log_config.type == "json-file"
    assert hc.console_size == [30, 100] and req.networks["net1"].aliases == ["web"]
    py = create_request_from({"Image": "busybox", "Cmd": "echo 'a b'", "NetworkDisabled": True,
                              "HostConfig": {"NetworkMode": "default"}}, "")
    assert py.cmd == ["echo", "a b"] and py.host_config.network_mode == "none"
    assert create_request_from({"Image": "x", "Entrypoint": ""}, "").entrypoint == []


def test_inspect_shape() -> None:
    c = Container(id="a" * 64, name="web", image_id="sha256:" + "b" * 64,
                  config=ContainerConfig(image="busybox", cmd=["sleep", "1"], hostname="aaaaaaaaaaaa",
                                         healthcheck=Healthcheck(test=["CMD", "true"])),
                  host_config=HostConfig())
    c.state.health = Health(status="healthy")
    data = container_inspect(c)
    assert data["Name"] == "/web" and data["Path"] == "sleep" and data["Args"] == ["1"]
    assert data["State"]["Status"] == "created" and data["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert data["State"]["Health"]["Status"] == "healthy"
    assert data["Config"]["Entrypoint"] is None and data["HostConfig"]["LogConfig"]["Type"] == "json-file"
    for key in ("Id", "Created", "Image", "ResolvConfPath", "HostnamePath", "HostsPath", "LogPath", "RestartCount",
                "Driver", "Platform", "ExecIDs", "GraphDriver", "Mounts", "NetworkSettings"):
        assert key in data
    c.config.healthcheck = None
    assert "Health" not in container_inspect(c)["State"]


async def test_hijack_keeps_writing_after_the_client_half_closes(tmp_path) -> None:  # noqa: ANN001
    got: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp, conn = await hijack(request)
        while (data := await conn.read()) is not None:
            got.append(data)
        await conn.write(b"after-eof:" + b"".join(got))  # the client's half-close kept our side open
        conn.close()
        return resp

    app = web.Application()
    app.router.add_post("/attach", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "s.sock")
    site = web.UnixSite(runner, path)
    await site.start()
    try:
        def client() -> bytes:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                      b"Content-Length: 0\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 101 UPGRADED")
            assert b"application/vnd.docker.raw-stream" in head and b"Transfer-Encoding" not in head
            s.sendall(b"stdin-bytes")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(4096):
                out += chunk
            s.close()
            return out

        assert await asyncio.to_thread(client) == b"after-eof:stdin-bytes"
    finally:
        await runner.cleanup()


def _self_signed(tmp_path) -> tuple[str, str]:  # noqa: ANN001
    """A throwaway certificate for 127.0.0.1 from the openssl CLI (the test skips without it)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl CLI")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/O=test", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("half_close", ["close_notify", "tcp"])
async def test_hijack_over_tls_keeps_writing_after_the_client_half_closes(tmp_path, half_close: str) -> None:  # noqa: ANN001
    """asyncio's TLS transport would end the connection when the client half-closes: with a
    ``close_notify`` (the docker CLI's CloseWrite) or a TCP shutdown (our CLI). The hijack keeps
    it open for the output, as dockerd does, and still closes it cleanly afterwards."""
    import ssl

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    got: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp, conn = await hijack(request)
        while (data := await conn.read()) is not None:
            got.append(data)
        await asyncio.sleep(0.05)  # output that comes a little later still arrives
        await conn.write(b"after-eof:" + b"".join(got))
        conn.close()
        return resp

    app = web.Application()
    app.router.add_post("/attach", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        def client() -> tuple[bytes, bool]:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cert)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)

            def flush() -> None:
                if pending := outgoing.read():
                    raw.sendall(pending)

            def receive() -> bool:
                data = raw.recv(65536)
                if data:
                    incoming.write(data)
                else:
                    incoming.write_eof()
                return bool(data)

            def read_some() -> bytes:
                while True:
                    try:
                        return tls.read(65536)
                    except ssl.SSLWantReadError:
                        flush()
                        if not receive():
                            return b""

            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    flush()
                    receive()
            tls.write(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                      b"Content-Length: 0\r\n\r\n")
            flush()
            data = b""
            while b"\r\n\r\n" not in data:
                data += read_some()
            head, _, out = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 UPGRADED")
            tls.write(b"stdin-bytes")
            flush()
            if half_close == "close_notify":
                try:
                    tls.unwrap()  # sends close_notify; the answer to it comes after the output
                except ssl.SSLWantReadError:
                    pass
                flush()
            else:
                raw.shutdown(socket.SHUT_WR)
            clean = False
            while True:
                try:
                    chunk = read_some()
                except ssl.SSLZeroReturnError:  # the daemon's close_notify: a clean end
                    clean = True
                    break
                except ssl.SSLError:
                    break
                if not chunk:
                    break
                out += chunk
            raw.close()
            return out, clean

        out, clean = await asyncio.wait_for(asyncio.to_thread(client), 20)
        assert out == b"after-eof:stdin-bytes"
        assert clean or half_close == "tcp"  # after a TCP half-close no close_notify is owed
    finally:
        await runner.cleanup()
