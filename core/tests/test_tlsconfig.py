"""dockyardd's TLS settings as dockerd resolves them, and the rules for plain TCP listeners.
Handshakes with real certificates are in tests/integration/test_daemon_tls.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.daemon import config_from_args, parser
from dockyard.errors import InvalidArgument
from dockyard.server import Listener, parse_host
from dockyard.tlsconfig import ServerTLS, check_listeners, default_cert_dir, is_loopback, parse_bool

ENV = {"HOME": "/home/u"}


def tls_of(**values: object) -> ServerTLS:
    cfg = Config(values=dict(values))
    cfg.validate()
    return ServerTLS.from_config(cfg, env=ENV)


@pytest.mark.parametrize("values, enabled, verify, off", [
    ({}, False, False, False),
    ({"tls": False}, False, False, True),                  # the explicit opt-in to plain TCP
    ({"tlsverify": True}, True, True, False),
    ({"tls": True}, True, True, False),                    # --tls alone verifies, as dockerd does
    ({"tlsverify": False}, True, False, False),            # given at all, tlsverify turns TLS on
    ({"tls": True, "tlsverify": False}, True, False, False),
    ({"tls": False, "tlsverify": True}, True, True, False),
    ({"tls": "false"}, False, False, True),                # daemon.json strings are coerced
])
def test_tls_and_tlsverify_resolve_as_dockerd(values, enabled, verify, off):
    tls = tls_of(**values)
    assert (tls.enabled, tls.verify, tls.explicitly_off) == (enabled, verify, off)


def test_files_default_to_the_docker_cert_directory():
    tls = tls_of(tlsverify=True)
    assert (tls.ca, tls.cert, tls.key) == ("/home/u/.docker/ca.pem", "/home/u/.docker/cert.pem",
                                           "/home/u/.docker/key.pem")
    tls = tls_of(tlsverify=True, tlscacert="/etc/ca.pem", tlskey="/etc/k.pem")
    assert (tls.ca, tls.cert, tls.key) == ("/etc/ca.pem", "/home/u/.docker/cert.pem", "/etc/k.pem")
    assert default_cert_dir({"DOCKER_CONFIG": "/cfg", **ENV}) == Path("/cfg")
    assert default_cert_dir({"DOCKER_CERT_PATH": "/certs", "DOCKER_CONFIG": "/cfg", **ENV}) == Path("/certs")


def test_flags_reach_the_configuration(tmp_path: Path):
    def cfg(*argv: str) -> Config:
        return config_from_args(parser().parse_args(["--config-file", str(tmp_path / "none.json"), *argv]))

    (tmp_path / "none.json").write_text("{}")
    assert "tls" not in cfg().values and "tlsverify" not in cfg().values
    assert cfg("--tls").values["tls"] is True
    assert cfg("--tls=false").values["tls"] is False
    assert cfg("--tlsverify", "-H", "tcp://127.0.0.1:2376").values["tlsverify"] is True
    assert cfg("--tlsverify=0").values["tlsverify"] is False
    c = cfg("--tlsverify", "--tlscacert", "/c", "--tlscert", "/s", "--tlskey", "/k")
    assert (c.values["tlscacert"], c.values["tlscert"], c.values["tlskey"]) == ("/c", "/s", "/k")
    (tmp_path / "daemon.json").write_text('{"tlsverify": true, "tlscert": "/file.pem", "tls": true}')
    c = config_from_args(parser().parse_args(["--config-file", str(tmp_path / "daemon.json"), "--tlscert", "/flag.pem"]))
    assert c.values["tlscert"] == "/flag.pem" and c.values["tlsverify"] is True  # flags win
    with pytest.raises(SystemExit):
        parser().parse_args(["--tls=maybe"])


@pytest.mark.parametrize("text, value", [("1", True), ("t", True), ("TRUE", True), ("True", True),
                                         ("0", False), ("f", False), ("false", False), ("False", False)])
def test_flag_values_are_go_booleans(text: str, value: bool):
    assert parse_bool(text) is value


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("fd00::1", False),
    ("no-such-host.invalid", False),
])
def test_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def listeners(*hosts: str) -> list[Listener]:
    return [parse_host(h) for h in hosts]


@pytest.mark.parametrize("host", ["tcp://0.0.0.0:2375", "tcp://10.1.2.3:2375", "tcp://[::]:2375"])
def test_plain_tcp_off_loopback_is_refused(host: str):
    with pytest.raises(InvalidArgument) as exc:
        check_listeners(listeners("unix:///run/d.sock", host), tls_of())
    message = str(exc.value)
    assert message.startswith(f"refusing to listen on {host} without TLS")
    assert "--tlsverify" in message and "'--tls=false'" in message


def test_plain_tcp_off_loopback_with_tls_explicitly_off_warns():
    warnings = check_listeners(listeners("tcp://0.0.0.0:2375"), tls_of(tls=False))
    assert warnings[0].startswith("Binding to IP address without --tlsverify is insecure")
    assert "explicitly disabled (--tls=false)" in warnings[1]


def test_plain_tcp_on_loopback_is_allowed_with_dockerds_warnings():
    warnings = check_listeners(listeners("tcp://127.0.0.1:2375", "tcp://[::1]:2375"), tls_of())
    assert len(warnings) == 4
    assert "even on localhost, can also give access to scripts run in a browser" in warnings[1]
    assert warnings[1].endswith("host=tcp://127.0.0.1:2375") and warnings[3].endswith("host=tcp://[::1]:2375")


def test_verified_tls_needs_no_warning_and_unverified_tls_gets_one():
    assert check_listeners(listeners("tcp://0.0.0.0:2376"), tls_of(tlsverify=True)) == []
    assert check_listeners(listeners("unix:///run/d.sock"), tls_of()) == []
    warnings = check_listeners(listeners("tcp://0.0.0.0:2376"), tls_of(tlsverify=False))
    assert warnings == ["Binding to IP address without --tlsverify is insecure and gives root access on this "
                        "machine to everyone who has access to your network. host=tcp://0.0.0.0:2376"]


def test_unusable_files_are_named(tmp_path: Path):
    with pytest.raises(InvalidArgument, match=r"could not load X509 key pair \(cert: '/home/u/.docker/cert.pem', "
                                              r"key: '/home/u/.docker/key.pem'\): No such file or directory"):
        tls_of(tls=True).context()
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    with pytest.raises(InvalidArgument, match="invalid TLS configuration: could not load X509 key pair"):
        tls_of(tls=True, tlscert=str(tmp_path / "cert.pem"), tlskey=str(tmp_path / "cert.pem")).context()


def test_describe():
    assert tls_of().describe() == "plain HTTP"
    assert tls_of(tlsverify=True).describe() == "TLS, client certificates verified against /home/u/.docker/ca.pem"
    assert tls_of(tlsverify=False).describe() == "TLS, client certificates not verified"
