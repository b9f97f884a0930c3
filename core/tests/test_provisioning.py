"""The provision spec's order (prepare, engine flags, server certificate, create) and its types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard import provisioning
from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard.model import Host, from_dict, to_dict
from dockyard.specs import DriverInfo, hookimpl
from dockyard.specs._base import DriverContext
from dockyard.specs.provision import EngineTLS, HostRequest, HostState, Provisioner


class Recording(Provisioner):
    """Hosts are ids in a set; every call is recorded."""

    info = DriverInfo(name="recording", kind="provision")

    def __init__(self, context: DriverContext, fail_create: bool = False) -> None:
        super().__init__(context)
        self.calls: list[tuple[str, object]] = []
        self.hosts: dict[str, str] = {}
        self.fail_create = fail_create

    async def prepare(self, request: HostRequest) -> Host:
        host = Host(id=uuid.uuid4().hex, name=request.name, driver=self.info.name,
                    addresses=["192.0.2.7"], engine_url="tcp://192.0.2.7:2376", labels=dict(request.labels))
        self.hosts[host.id] = "none"
        self.calls.append(("prepare", request.name))
        return host

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        self.calls.append(("create", (tls.pem("cert"), list(engine_flags))))
        if self.fail_create:
            raise RuntimeError("the engine did not come up")
        self.hosts[host.id] = "running"
        host.state = "running"
        return host

    async def start(self, host: Host) -> None:
        self.hosts[host.id] = "running"

    async def stop(self, host: Host) -> None:
        self.hosts[host.id] = "stopped"

    async def remove(self, host: Host) -> None:
        self.calls.append(("remove", host.name))
        self.hosts.pop(host.id, None)

    async def state(self, host: Host) -> HostState:
        return HostState(self.hosts.get(host.id, "none"))

    async def engine_url(self, host: Host) -> str:
        return host.engine_url


class Flags:
    @hookimpl
    def dockyard_engine_flags(self, kernel, host):
        assert host.addresses == ["192.0.2.7"], "the hook sees the prepared host"
        return ["--label", f"host={host.name}"]


def make(tmp_path: Path, fail_create: bool = False) -> tuple[Kernel, Recording]:
    cfg = Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r")})
    kernel = Kernel.build(cfg, plugins=[Flags()], autoload=False, environ={})
    ctx = DriverContext(data_dir=tmp_path / "drv", run_dir=tmp_path / "run", owner="dytest01")
    return kernel, Recording(ctx, fail_create)


async def test_provision_prepares_then_makes_the_certificate_for_the_addresses_then_creates(tmp_path: Path):
    kernel, drv = make(tmp_path)
    seen: list[list[str]] = []

    def server_tls(host: Host) -> EngineTLS:
        seen.append(list(host.addresses))
        return EngineTLS(b"ca", f"cert for {host.addresses[0]}".encode(), b"key")

    request = HostRequest(name="n1", engine_options=["--debug"])
    host = await provisioning.provision(kernel, drv, request, server_tls)
    assert host.state == "running"
    assert seen == [["192.0.2.7"]]
    assert drv.calls == [("prepare", "n1"),
                         ("create", (b"cert for 192.0.2.7", ["--debug", "--label", "host=n1"]))]


async def test_provision_accepts_an_async_certificate_maker(tmp_path: Path):
    kernel, drv = make(tmp_path)

    async def server_tls(host: Host) -> EngineTLS:
        return EngineTLS(b"ca", b"cert", b"key")

    host = await provisioning.provision(kernel, drv, HostRequest(name="n2"), server_tls)
    assert (await drv.state(host)).state == "running"


@pytest.mark.parametrize("fail", ["certificate", "create"])
async def test_a_failed_provision_removes_the_prepared_host(tmp_path: Path, fail: str):
    kernel, drv = make(tmp_path, fail_create=fail == "create")

    def server_tls(host: Host) -> EngineTLS:
        if fail == "certificate":
            raise ValueError("no CA")
        return EngineTLS(b"ca", b"cert", b"key")

    with pytest.raises((ValueError, RuntimeError)):
        await provisioning.provision(kernel, drv, HostRequest(name="n3"), server_tls)
    assert drv.calls[-1] == ("remove", "n3")
    assert drv.hosts == {}


def test_server_tls_parts_are_bytes_or_paths(tmp_path: Path):
    (tmp_path / "ca.pem").write_bytes(b"CA PEM")
    tls = EngineTLS(ca_cert=tmp_path / "ca.pem", cert=str(tmp_path / "ca.pem"), key=b"KEY PEM")
    assert tls.pem("ca_cert") == b"CA PEM" == tls.pem("cert")
    assert tls.pem("key") == b"KEY PEM"
    with pytest.raises(ValueError, match="no TLS part"):
        tls.pem("client_key")


def test_host_state_is_one_of_the_documented_values():
    assert HostState("error", "engine exited 1").reason == "engine exited 1"
    with pytest.raises(ValueError, match="not one of running, stopped, error, none"):
        HostState("paused")


def test_a_host_keeps_its_addresses_through_the_store_format():
    host = Host(id="h", name="n", driver="netns", addresses=["10.0.0.2"], extra={"pid": 7})
    again = from_dict(Host, to_dict(host))
    assert again.addresses == ["10.0.0.2"] and again.extra == {"pid": 7}
