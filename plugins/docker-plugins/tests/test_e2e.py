"""Docker plugins used by the real docker CLI against a real dockyardd: each plugin a separate
process from ``tests/plugins`` (stdlib only, written against the protocol)."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.client import Client, DaemonAddress, TlsFiles
from dockyard.errors import Forbidden
from dockyard_plugin_sdk.conformance.network import free_test_subnet
from dockyard_plugin_sdk.testing import TestCA


def _bootstrap(d) -> None:  # noqa: ANN001
    d.client().post("/dockyard/images/bootstrap", name="busybox")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _calls(log: Path) -> list[str]:
    return [json.loads(line)["method"] for line in log.read_text().splitlines() if line.strip()]


def test_network_and_ipam_plugins_carry_traffic(plugins: Any, dockyardd_factory) -> None:  # noqa: ANN001
    d = dockyardd_factory("d", config=plugins.config())
    net_log, ipam_log = plugins.root / "net.log", plugins.root / "ipam.log"
    base = free_test_subnet(prefixlen=20)
    plugins.start("netplugin", "testnet", d.owner, env={"PLUGIN_LOG": str(net_log)})
    plugins.start("ipamplugin", "testipam", str(base), env={"PLUGIN_LOG": str(ipam_log)})
    _bootstrap(d)
    d.docker("network", "create", "-d", "testnet", "--ipam-driver", "testipam", "pnet")
    try:
        inspect = json.loads(d.docker("network", "inspect", "pnet").stdout)[0]
        assert inspect["Driver"] == "testnet" and inspect["IPAM"]["Driver"] == "testipam"
        subnet = inspect["IPAM"]["Config"][0]["Subnet"]
        assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(base)), (subnet, base)
        d.docker("run", "-d", "--name", "srv", "--network", "pnet", "busybox", "sleep", "300")
        ip = json.loads(d.docker("inspect", "srv").stdout)[0]["NetworkSettings"]["Networks"]["pnet"]["IPAddress"]
        assert ip.endswith(".2"), ip  # .1 is the gateway the IPAM plugin gave first
        out = d.docker("run", "--rm", "--network", "pnet", "busybox", "ping", "-c", "1", "-W", "3", ip).stdout
        assert "1 packets received" in out
        info = json.loads(d.docker("info", "--format", "{{json .Plugins}}").stdout)
        assert "testnet" in info["Network"]
        listed = d.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}").stdout.split("\n")
        assert {"testnet true", "testipam true"} <= set(listed), listed
        d.docker("rm", "-f", "srv")
    finally:
        d.docker("network", "rm", "pnet", check=False)
    net_calls, ipam_calls = _calls(net_log), _calls(ipam_log)
    assert net_calls[0] == "Plugin.Activate"
    for m in ("CreateNetwork", "CreateEndpoint", "Join", "Leave", "DeleteEndpoint", "DeleteNetwork"):
        assert f"NetworkDriver.{m}" in net_calls, net_calls
    assert ipam_calls.count("IpamDriver.RequestAddress") == ipam_calls.count("IpamDriver.ReleaseAddress")
    assert ipam_calls[-1] == "IpamDriver.ReleasePool"
    accept = {json.loads(line)["accept"] for line in net_log.read_text().splitlines()}
    assert accept == {"application/vnd.docker.plugins.v1.2+json"}


def test_a_failed_join_leaves_no_endpoint(plugins: Any, dockyardd_factory) -> None:  # noqa: ANN001
    d = dockyardd_factory("d", config=plugins.config())
    net_log = plugins.root / "net.log"
    plugins.start("netplugin", "badjoin", d.owner, env={"PLUGIN_LOG": str(net_log), "FAIL_JOIN": "1"})
    _bootstrap(d)
    res = d.docker("network", "create", "-d", "badjoin", "-o", "bogus=1", "refused", check=False)
    assert res.returncode != 0 and "plugin badjoin: NetworkDriver.CreateNetwork: invalid option bogus" in res.stderr
    assert "refused" not in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    d.docker("network", "create", "-d", "badjoin", "jnet")
    try:
        res = d.docker("run", "--rm", "--network", "jnet", "busybox", "true", check=False)
        assert res.returncode != 0 and "plugin badjoin" in res.stderr and "join refused" in res.stderr, res.stderr
        assert json.loads(d.docker("network", "inspect", "jnet").stdout)[0]["Containers"] == {}
        calls = _calls(net_log)
        assert calls.index("NetworkDriver.DeleteEndpoint") > calls.index("NetworkDriver.Join")
    finally:
        d.docker("network", "rm", "jnet")


def test_volume_plugin_holds_the_data(plugins: Any, dockyardd_factory, tmp_path: Path) -> None:  # noqa: ANN001
    d = dockyardd_factory("d", config=plugins.config())
    root = tmp_path / "vols"
    plugins.start("volplugin", "testvol", str(root))
    _bootstrap(d)
    d.docker("volume", "create", "-d", "testvol", "pv1")
    d.docker("run", "--rm", "-v", "pv1:/data", "busybox", "sh", "-c", "echo through-the-plugin > /data/f")
    assert (root / "volumes" / "pv1" / "f").read_text() == "through-the-plugin\n"
    d.docker("run", "--rm", "-v", "pv2:/data", "--volume-driver", "testvol", "busybox", "touch", "/data/g")
    assert (root / "volumes" / "pv2" / "g").exists()
    vols = {v["Name"]: v["Driver"] for v in json.loads(d.docker("volume", "ls", "--format", "json").stdout
                                                           .strip().replace("\n", ",").join("[]"))}
    assert vols["pv1"] == vols["pv2"] == "testvol"
    assert json.loads((root / "state.json").read_text())["pv1"]["mounts"] == []  # unmounted after the run
    d.docker("volume", "rm", "pv1", "pv2")
    assert not (root / "volumes" / "pv1").exists()


def test_authz_plugin_sees_every_request_and_denies_with_403(plugins: Any, dockyardd_factory,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    log = plugins.root / "authz.log"
    plugins.start("authzplugin", "testauthz", str(log), "/volumes/create", "/networks")
    ca, certs = TestCA(), tmp_path / "certs"
    certs.mkdir()
    cert, key = ca.issue("engine", server=True, addresses=["127.0.0.1"])
    for name, data in (("ca.pem", ca.ca_pem), ("server.pem", cert), ("server-key.pem", key)):
        (certs / name).write_bytes(data)
    client_dir = ca.write_client(tmp_path / "client", name="alice")
    port = _free_port()
    d = dockyardd_factory("d", "--authorization-plugin", "testauthz", "-H", f"tcp://127.0.0.1:{port}",
                          "--tlsverify", "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server.pem"),
                          "--tlskey", str(certs / "server-key.pem"), config=plugins.config())
    tls = TlsFiles(ca=str(client_dir / "ca.pem"), cert=str(client_dir / "cert.pem"), key=str(client_dir / "key.pem"))
    Client(DaemonAddress.parse(f"tcp://127.0.0.1:{port}", tls=tls, verify=True)).get("/version")
    d.docker("ps")
    _bootstrap(d)  # hijacked (attach) and streamed answers pass, checked at the request only
    assert d.docker("run", "--rm", "busybox", "echo", "through-authz").stdout == "through-authz\n"
    res = d.docker("volume", "create", "nope", check=False)
    assert res.returncode != 0
    assert "authorization denied by plugin testauthz: no /volumes/create for you" in res.stderr
    with pytest.raises(Forbidden, match="no /volumes/create for you"):  # the client's type for a 403
        d.client().request("POST", "/volumes/create", body={"Name": "nope"})
    res = d.docker("network", "ls", check=False)  # allowed at the request, refused at the response
    assert res.returncode != 0 and "authorization denied by plugin testauthz: the answer is secret" in res.stderr
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(s["phase"] == "req" and s["uri"].endswith("/containers/json?all=0") or "/containers/json" in s["uri"]
               for s in seen)
    assert any(s["phase"] == "res" and "/containers/json" in s["uri"] and s["status"] == 200 for s in seen)
    assert any(s["phase"] == "req" and '"Name": "nope"' in s["body"].replace('":"', '": "') for s in seen)
    assert json.loads(d.docker("info", "--format", "{{json .Plugins.Authorization}}").stdout) == ["testauthz"]
    users = {(s["user"], s["authn"]) for s in seen if s["phase"] == "req"}
    assert ("alice", "TLS") in users and ("", "") in users  # the certificate's CN over TLS; none on unix
    assert not any(v["Name"] == "nope" for v in json.loads(d.docker("system", "df", "-v", "--format", "json",
                                                                    check=False).stdout or "{}").get("Volumes") or [])


def test_a_missing_authz_plugin_stops_the_daemon(plugins: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "daemon.json").write_text(json.dumps(plugins.config()))
    res = subprocess.run([sys.executable, "-m", "dockyard.daemon", "--data-root", str(tmp_path / "data"),
                          "--exec-root", str(tmp_path / "run"), "-H", f"unix://{tmp_path}/s.sock",
                          "--config-file", str(tmp_path / "daemon.json"), "--authorization-plugin", "ghost"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and 'authorization plugin "ghost" not found' in res.stdout + res.stderr


def test_hostile_plugins_get_clear_errors_and_the_daemon_keeps_serving(plugins: Any,
                                                                       dockyardd_factory) -> None:  # noqa: ANN001
    d = dockyardd_factory("d", config=plugins.config(**{"docker-plugin-retry": 2.0, "docker-plugin-timeout": 1.5}))
    plugins.start("hostile", "hostile")

    def fails(name: str, *expected: str) -> None:
        res = d.docker("volume", "create", "-d", "hostile", name, check=False)
        assert res.returncode != 0, res.stdout
        for text in ("plugin hostile", *expected):
            assert text in res.stderr, res.stderr

    fails("garbage1", "invalid JSON")
    fails("err1", "the disk is on fire")
    t0 = time.monotonic()
    fails("hang1", "timed out")
    assert time.monotonic() - t0 < 10
    d.docker("version")  # the daemon serves on
    # the hung call holds the plugin's one worker: start a fresh plugin for what follows
    plugins.started[-1].stop()
    plugins.start("hostile", "hostile")
    fails("vanish1", "closed before an answer")
    t0 = time.monotonic()
    fails("after-vanish", "not reachable", "the socket does not exist")
    assert 0.9 < time.monotonic() - t0 < 10  # retried after 1 s; the next wait (2 s) would pass the window
    res = d.docker("volume", "create", "-d", "nosuch", "xy", check=False)
    assert res.returncode != 0 and "'nosuch'" in res.stderr and "no Docker plugin 'nosuch'" in res.stderr
    names = d.docker("volume", "ls", "-q").stdout.split()
    assert not {"garbage1", "err1", "hang1", "vanish1", "after-vanish", "xy"} & set(names)
    d.docker("info")
