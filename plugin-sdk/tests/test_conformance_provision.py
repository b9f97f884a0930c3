"""The provision kit against small test-only provisioners, and the kit's teeth.

``MemoryProvisioner`` keeps hosts in a dict (no engine: the wire cases skip). ``LoopbackEngines``
gives each host a tiny HTTPS "engine" on 127.0.0.1 serving ``/_ping`` and ``/info`` with the
server material ``create`` was given, so the kit's mutual-TLS cases run against something real.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from dockyard.model import Host
from dockyard.specs import DriverInfo
from dockyard.specs.provision import EngineTLS, HostRequest, HostState, Provisioner
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.provision import ENGINE, ProvisionerContract
from dockyard_plugin_sdk.testing import TestCA


class MemoryProvisioner(Provisioner):
    """Hosts are entries in a dict: id -> state; each gets a fake TEST-NET engine address."""

    info = DriverInfo(name="memory", kind="provision", description="in-memory, test only")

    def __init__(self, context) -> None:
        super().__init__(context)
        self.hosts: dict[str, str] = {}
        self.addresses: dict[str, str] = {}

    async def prepare(self, request: HostRequest) -> Host:
        address = f"192.0.2.{len(self.addresses) % 250 + 1}"
        host = Host(id=uuid.uuid4().hex, name=request.name, driver=self.info.name,
                    labels=dict(request.labels), addresses=[address], engine_url=f"tcp://{address}:2376")
        self.hosts[host.id] = "none"
        self.addresses[host.id] = host.engine_url
        return host

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        assert tls.pem("cert").startswith(b"-----BEGIN CERTIFICATE-----")
        self.hosts[self._known(host)] = "running"
        host.state = "running"
        return host

    def _known(self, host: Host) -> str:
        if host.id not in self.hosts:
            raise KeyError(f"no host {host.name}")
        return host.id

    async def start(self, host: Host) -> None:
        self.hosts[self._known(host)] = "running"

    async def stop(self, host: Host) -> None:
        self.hosts[self._known(host)] = "stopped"

    async def remove(self, host: Host) -> None:
        self.hosts.pop(host.id, None)
        self.addresses.pop(host.id, None)

    async def state(self, host: Host) -> HostState:
        return HostState(self.hosts.get(host.id, "none"))

    async def engine_url(self, host: Host) -> str:
        return self.addresses[self._known(host)]


class LoopbackEngines(MemoryProvisioner):
    """Each running host is an HTTPS server on 127.0.0.1 that requires a client certificate."""

    info = DriverInfo(name="loopback", kind="provision", description="test only", capabilities=frozenset({ENGINE}))
    verify_clients = True

    def __init__(self, context) -> None:
        super().__init__(context)
        self.servers: dict[str, asyncio.Server] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}

    async def prepare(self, request: HostRequest) -> Host:
        host = await super().prepare(request)
        host.addresses, host.engine_url = ["127.0.0.1"], "tcp://127.0.0.1:0"
        return host

    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "cert.pem").write_bytes(tls.pem("cert"))
            (Path(d) / "key.pem").write_bytes(tls.pem("key"))
            ctx.load_cert_chain(Path(d) / "cert.pem", Path(d) / "key.pem")
        if self.verify_clients:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=tls.pem("ca_cert").decode())
        self.contexts[host.id] = ctx
        await self._serve(host)
        host = await super().create(host, tls, engine_flags)
        host.engine_url = self.addresses[host.id]
        return host

    async def _serve(self, host: Host) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                path = (await reader.readline()).split(b" ")[1]
                while (await reader.readline()).strip():
                    pass
                body = b"OK" if path == b"/_ping" else json.dumps({"Name": self.name_of(host)}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
                await writer.drain()
            except (OSError, IndexError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.contexts[host.id])
        self.servers[host.id] = server
        self.addresses[host.id] = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    def name_of(self, host: Host) -> str:
        return host.name

    async def _close(self, host: Host) -> None:
        server = self.servers.pop(host.id, None)
        if server is not None:
            server.close()
            await server.wait_closed()

    async def start(self, host: Host) -> None:
        await super().start(host)
        if host.id not in self.servers:
            await self._serve(host)

    async def stop(self, host: Host) -> None:
        await super().stop(host)
        await self._close(host)

    async def remove(self, host: Host) -> None:
        await self._close(host)
        await super().remove(host)

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()


class TestMemoryProvisioner(ProvisionerContract):
    @pytest.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[MemoryProvisioner]:
        drv = MemoryProvisioner(make_context(tmp_path))
        await drv.setup()
        yield drv
        await drv.close()
        assert drv.hosts == {}, "the kit left hosts behind"


class TestLoopbackEngines(ProvisionerContract):
    @pytest.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[LoopbackEngines]:
        drv = LoopbackEngines(make_context(tmp_path))
        await drv.setup()
        yield drv
        await drv.close()
        assert drv.hosts == {} and drv.servers == {}, "the kit left hosts behind"


# ---------------------------------------------------------------------------------- the kit fails
class StartsStopped(MemoryProvisioner):
    async def create(self, host, tls, engine_flags):
        host = await super().create(host, tls, engine_flags)
        self.hosts[host.id] = "stopped"
        return host


class StopIsGlobal(MemoryProvisioner):
    async def stop(self, host):
        for k in self.hosts:
            self.hosts[k] = "stopped"


class RemoveKeepsState(MemoryProvisioner):
    async def remove(self, host):
        self.hosts[host.id] = "stopped"


class RemoveTwiceFails(MemoryProvisioner):
    async def remove(self, host):
        del self.hosts[host.id]


class BareAddress(MemoryProvisioner):
    async def engine_url(self, host):
        return "192.0.2.1:2376"


class WrongName(MemoryProvisioner):
    async def create(self, host, tls, engine_flags):
        host = await super().create(host, tls, engine_flags)
        host.name = host.name.upper()
        return host


class NoAddresses(MemoryProvisioner):
    async def prepare(self, request):
        host = await super().prepare(request)
        host.addresses = []
        return host


class PreparedIsRunning(MemoryProvisioner):
    async def prepare(self, request):
        host = await super().prepare(request)
        self.hosts[host.id] = "running"
        return host


class StateIsAString(MemoryProvisioner):
    async def state(self, host):
        return self.hosts.get(host.id, "none")


class AcceptsAnyClient(LoopbackEngines):
    verify_clients = False


class AnonymousEngine(LoopbackEngines):
    def name_of(self, host):
        return "localhost"


class Quick(ProvisionerContract):
    state_timeout = 0.3


@pytest.mark.parametrize(("cls", "case"), [
    (StartsStopped, "test_created_host_is_running"),
    (StopIsGlobal, "test_hosts_are_independent"),
    (RemoveKeepsState, "test_remove_leaves_no_host"),
    (RemoveTwiceFails, "test_remove_leaves_no_host"),
    (BareAddress, "test_engine_url_has_a_scheme"),
    (WrongName, "test_create_returns_the_host_it_was_asked_for"),
    (NoAddresses, "test_prepare_reserves_a_host_that_is_not_yet_there"),
    (PreparedIsRunning, "test_prepare_reserves_a_host_that_is_not_yet_there"),
    (StateIsAString, "test_state_is_one_of_the_documented_values"),
    (AcceptsAnyClient, "test_engine_refuses_a_client_without_a_certificate"),
    (AnonymousEngine, "test_engine_info_over_mutual_tls_names_the_host"),
])
async def test_kit_fails_a_provisioner_that_breaks_the_contract(tmp_path: Path, cls, case) -> None:
    drv = cls(make_context(tmp_path))
    ca = TestCA()
    request = HostRequest(name="dyhtest", labels={"conformance": "yes"})
    kit = Quick()
    method = getattr(kit, case)
    params = method.__code__.co_varnames[1:method.__code__.co_argcount]
    try:
        with pytest.raises((AssertionError, pytest.fail.Exception, KeyError)):
            # the kit's own provisioning checks what prepare reports, so it may fail already
            host = await kit.provision(drv, request, ca)
            kwargs = {"driver": drv, "host": host, "host_request": request, "test_ca": ca,
                      "client_certs": ca.write_client(tmp_path / "client")}
            await method(**{k: v for k, v in kwargs.items() if k in params})
    finally:
        await drv.close()


async def test_the_kit_provisions_in_the_spec_order_and_cleans_a_failed_create(tmp_path: Path) -> None:
    calls: list[str] = []

    class Failing(MemoryProvisioner):
        async def prepare(self, request):
            calls.append("prepare")
            return await super().prepare(request)

        async def create(self, host, tls, engine_flags):
            calls.append(f"create {sorted(tls.pem('cert').decode().split()[:1])}")
            raise RuntimeError("no engine today")

        async def remove(self, host):
            calls.append("remove")
            await super().remove(host)

    drv = Failing(make_context(tmp_path))
    with pytest.raises(RuntimeError, match="no engine today"):
        await ProvisionerContract().provision(drv, HostRequest(name="dyhfail"), TestCA())
    assert calls == ["prepare", "create ['-----BEGIN']", "remove"]
    assert drv.hosts == {}
