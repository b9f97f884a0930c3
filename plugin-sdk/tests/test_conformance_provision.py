"""The provision kit against a small in-memory provisioner (test-only), and the kit's teeth."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.model import Host, HostTLS
from dockyard.specs import DriverInfo
from dockyard.specs.provision import HostRequest, Provisioner
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.provision import ProvisionerContract


class MemoryProvisioner(Provisioner):
    """Hosts are entries in a dict: id -> state; each gets a fake TEST-NET engine address."""

    info = DriverInfo(name="memory", kind="provision", description="in-memory, test only")

    def __init__(self, context) -> None:
        super().__init__(context)
        self.hosts: dict[str, str] = {}
        self.addresses: dict[str, str] = {}

    async def create(self, request: HostRequest, tls: HostTLS) -> Host:
        host = Host(id=uuid.uuid4().hex, name=request.name, driver=self.info.name,
                    labels=dict(request.labels), tls=tls)
        self.hosts[host.id] = "running"
        self.addresses[host.id] = f"tcp://192.0.2.{len(self.addresses) % 250 + 1}:2376"
        host.state, host.engine_url = "running", self.addresses[host.id]
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
        self.hosts.pop(self._known(host))
        self.addresses.pop(host.id)

    async def state(self, host: Host) -> str:
        return self.hosts.get(host.id, "none")

    async def engine_url(self, host: Host) -> str:
        return self.addresses[self._known(host)]


class TestMemoryProvisioner(ProvisionerContract):
    @pytest.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[MemoryProvisioner]:
        drv = MemoryProvisioner(make_context(tmp_path))
        await drv.setup()
        yield drv
        await drv.close()
        assert drv.hosts == {}, "the kit left hosts behind"


# ---------------------------------------------------------------------------------- the kit fails
class StartsStopped(MemoryProvisioner):
    async def create(self, request, tls):
        host = await super().create(request, tls)
        self.hosts[host.id] = "stopped"
        return host


class StopIsGlobal(MemoryProvisioner):
    async def stop(self, host):
        for k in self.hosts:
            self.hosts[k] = "stopped"


class RemoveKeepsState(MemoryProvisioner):
    async def remove(self, host):
        self.hosts[host.id] = "stopped"

    async def state(self, host):
        return self.hosts.get(host.id, "none")


class BareAddress(MemoryProvisioner):
    async def engine_url(self, host):
        return "192.0.2.1:2376"


class WrongName(MemoryProvisioner):
    async def create(self, request, tls):
        host = await super().create(request, tls)
        host.name = host.name.upper()
        return host


class Quick(ProvisionerContract):
    state_timeout = 0.3


@pytest.mark.parametrize(("cls", "case"), [
    (StartsStopped, "test_created_host_is_running"),
    (StopIsGlobal, "test_hosts_are_independent"),
    (RemoveKeepsState, "test_remove_leaves_no_host"),
    (BareAddress, "test_engine_url_has_a_scheme"),
    (WrongName, "test_create_returns_the_host_it_was_asked_for"),
])
async def test_kit_fails_a_provisioner_that_breaks_the_contract(tmp_path: Path, cls, case) -> None:
    drv = cls(make_context(tmp_path))
    request = HostRequest(name="dyhtest", labels={"conformance": "yes"})
    host = await drv.create(request, HostTLS())
    method = getattr(Quick(), case)
    kwargs = {"driver": drv, "host": host}
    params = method.__code__.co_varnames[1:method.__code__.co_argcount]
    kwargs.update({"host_request": request, "host_tls": HostTLS()})
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        await method(**{k: v for k, v in kwargs.items() if k in params})
