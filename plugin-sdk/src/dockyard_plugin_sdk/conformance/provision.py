"""Conformance kit for provision drivers (``dockyard.drivers.provision``).

Usage, in the driver's own tests::

    class TestMyProvisioner(ProvisionerContract):
        @pytest.fixture
        async def driver(self, tmp_path):
            drv = MyProvisioner(make_context(tmp_path))
            await drv.setup()
            yield drv
            await drv.close()

        @pytest.fixture            # optional: driver flags a real host needs
        def host_request(self, host_name):
            return HostRequest(name=host_name, options={"address": "192.0.2.5"})

The cases follow :class:`dockyard.specs.provision.Provisioner` (Docker Machine's driver life
cycle): ``create`` leaves the host running, ``stop``/``start`` move it between ``stopped`` and
``running``, ``remove`` leaves ``none``, and ``engine_url`` is an address with a scheme.
Every host a case creates is removed at teardown, whatever happened.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from dockyard.model import Host, HostTLS
from dockyard.specs.provision import HostRequest, Provisioner
from dockyard_plugin_sdk.conformance._common import DriverContract
from dockyard_plugin_sdk.testing import async_wait_for

__all__ = ["ProvisionerContract"]

STATES = {"running", "stopped", "error", "none"}
URL_SCHEMES = ("tcp://", "unix://", "ssh://", "http://", "https://")


class ProvisionerContract(DriverContract):
    """Cases every provision driver passes."""

    kind: ClassVar[str] = "provision"
    #: Seconds a host may take to reach the state an operation asked for.
    state_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    def host_name(self) -> str:
        """A fresh host name, short and dockyard-prefixed (it may name kernel objects)."""
        return "dyh" + uuid.uuid4().hex[:8]

    @pytest.fixture
    def host_request(self, host_name: str) -> HostRequest:
        """What the cases ask ``create`` for; override to pass driver options."""
        return HostRequest(name=host_name, labels={"conformance": "yes"})

    @pytest.fixture
    def host_tls(self) -> HostTLS:
        """TLS server material handed to ``create``; override when the driver checks it."""
        return HostTLS()

    @pytest.fixture
    async def host(self, driver: Provisioner, host_request: HostRequest,
                   host_tls: HostTLS) -> AsyncIterator[Host]:
        """A created host, removed at teardown even when the case already removed it."""
        created = await driver.create(host_request, host_tls)
        try:
            yield created
        finally:
            if await driver.state(created) != "none":
                await driver.remove(created)

    async def wait_state(self, driver: Provisioner, host: Host, want: str) -> None:
        async def reached() -> bool:
            state = await driver.state(host)
            assert state in STATES, f"state() returned {state!r}, not one of {sorted(STATES)}"
            return state == want

        await async_wait_for(reached, self.state_timeout, f"host {host.name} to be {want!r}")

    # ------------------------------------------------------------------ cases
    async def test_create_returns_the_host_it_was_asked_for(self, driver: Provisioner, host: Host,
                                                            host_request: HostRequest) -> None:
        assert isinstance(host, Host)
        assert host.name == host_request.name
        assert host.driver == driver.info.name
        assert host.id, "a created host needs an id"
        assert host.labels.get("conformance") == "yes"

    async def test_created_host_is_running(self, driver: Provisioner, host: Host) -> None:
        await self.wait_state(driver, host, "running")

    async def test_engine_url_has_a_scheme(self, driver: Provisioner, host: Host) -> None:
        url = await driver.engine_url(host)
        assert isinstance(url, str) and url.startswith(URL_SCHEMES), url

    async def test_state_is_one_of_the_documented_values(self, driver: Provisioner, host: Host) -> None:
        assert await driver.state(host) in STATES

    async def test_stop_then_start(self, driver: Provisioner, host: Host) -> None:
        await self.wait_state(driver, host, "running")
        await driver.stop(host)
        await self.wait_state(driver, host, "stopped")
        await driver.start(host)
        await self.wait_state(driver, host, "running")

    async def test_remove_leaves_no_host(self, driver: Provisioner, host: Host) -> None:
        await driver.remove(host)
        assert await driver.state(host) == "none"

    async def test_remove_a_stopped_host(self, driver: Provisioner, host: Host) -> None:
        await driver.stop(host)
        await self.wait_state(driver, host, "stopped")
        await driver.remove(host)
        assert await driver.state(host) == "none"

    async def test_hosts_are_independent(self, driver: Provisioner, host: Host,
                                         host_request: HostRequest, host_tls: HostTLS) -> None:
        other_req = HostRequest(name=host_request.name[:-1] + ("x" if host_request.name[-1] != "x" else "y"),
                                options=dict(host_request.options), labels={"conformance": "yes"})
        other = await driver.create(other_req, host_tls)
        try:
            assert other.id != host.id
            await driver.stop(other)
            await self.wait_state(driver, other, "stopped")
            assert await driver.state(host) == "running", "stopping one host changed another"
            await driver.remove(other)
            assert await driver.state(other) == "none"
            assert await driver.state(host) == "running", "removing one host changed another"
        finally:
            if await driver.state(other) != "none":
                await driver.remove(other)

    async def test_a_host_never_created_is_none(self, driver: Provisioner, host: Host) -> None:
        ghost = Host(id=uuid.uuid4().hex, name="dyghost" + uuid.uuid4().hex[:6], driver=driver.info.name)
        assert await driver.state(ghost) == "none"
