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
cycle, in the spec's order): ``prepare`` reserves the host and reports its addresses, a
:class:`~dockyard_plugin_sdk.testing.TestCA` makes the engine's server certificate for them,
``create`` leaves the host running, ``stop``/``start`` move it between ``stopped`` and
``running``, ``remove`` leaves ``none`` (also for a host only prepared, and twice), and
``engine_url`` is an address with a scheme.

A driver declaring the capability ``engine`` (:data:`ENGINE`: its hosts run a real engine this
machine reaches at ``engine_url``) is also checked over the wire: the engine answers ``/_ping``
and ``/info`` over mutual TLS with a client certificate of the test CA, its ``/info`` names the
host (Docker Machine sets the hostname), and it refuses a client without a certificate. A
driver declaring ``tls-rotation`` too (:data:`TLS_ROTATION`) replaces a created host's server
certificate with ``update_tls``: after a restart the engine presents the new one.
Every host a case creates is removed at teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from dockyard.model import Host
from dockyard.specs.provision import HOST_STATES, HostRequest, HostState, Provisioner
from dockyard_plugin_sdk.conformance import requires
from dockyard_plugin_sdk.conformance._common import DriverContract
from dockyard_plugin_sdk.testing import TestCA, async_wait_for

__all__ = ["ENGINE", "TLS_ROTATION", "ProvisionerContract"]

#: The capability of a provision driver whose hosts run a real engine reachable at
#: ``engine_url`` with mutual TLS (a test double without one does not declare it).
ENGINE = "engine"
#: The capability of a provision driver that replaces a created host's engine certificate
#: (``Provisioner.update_tls``).
TLS_ROTATION = "tls-rotation"
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
        """What the cases ask ``prepare`` for; override to pass driver options."""
        return HostRequest(name=host_name, labels={"conformance": "yes"})

    @pytest.fixture
    def test_ca(self) -> TestCA:
        """The CA of the engines' server certificates and of the cases' client certificate."""
        return TestCA()

    @pytest.fixture
    def client_certs(self, test_ca: TestCA, tmp_path: Path) -> Path:
        """``ca.pem``, ``cert.pem``, ``key.pem``: a client the engines must accept."""
        return test_ca.write_client(tmp_path / "client-certs")

    async def provision(self, driver: Provisioner, request: HostRequest, ca: TestCA) -> Host:
        """The spec's order: prepare, a server certificate for the host's addresses, create.
        (What :func:`dockyard.provisioning.provision` does, minus the kernel's hook.)"""
        host = await driver.prepare(request)
        try:
            assert host.addresses, "prepare() must report the addresses the engine is reached by"
            return await driver.create(host, ca.engine_tls(host.addresses), list(request.engine_options))
        except BaseException:
            await driver.remove(host)
            raise

    @pytest.fixture
    async def host(self, driver: Provisioner, host_request: HostRequest, test_ca: TestCA) -> AsyncIterator[Host]:
        """A created host, removed at teardown (remove of a removed host does nothing)."""
        created = await self.provision(driver, host_request, test_ca)
        try:
            yield created
        finally:
            await driver.remove(created)

    async def state_of(self, driver: Provisioner, host: Host) -> str:
        st = await driver.state(host)
        assert isinstance(st, HostState), f"state() returned {st!r}, not a HostState"
        assert st.state in HOST_STATES, f"state() returned {st.state!r}, not one of {HOST_STATES}"
        return st.state

    async def wait_state(self, driver: Provisioner, host: Host, want: str) -> None:
        async def reached() -> bool:
            return await self.state_of(driver, host) == want

        await async_wait_for(reached, self.state_timeout, f"host {host.name} to be {want!r}")

    # ------------------------------------------------------------------ cases
    async def test_prepare_reserves_a_host_that_is_not_yet_there(self, driver: Provisioner,
                                                                 host_request: HostRequest) -> None:
        host = await driver.prepare(host_request)
        try:
            assert host.name == host_request.name and host.id
            assert host.addresses and all(isinstance(a, str) and a for a in host.addresses)
            assert host.engine_url.startswith(URL_SCHEMES), host.engine_url
            assert await self.state_of(driver, host) == "none"
        finally:
            await driver.remove(host)
        assert await self.state_of(driver, host) == "none"

    async def test_create_returns_the_host_it_was_asked_for(self, driver: Provisioner, host: Host,
                                                            host_request: HostRequest) -> None:
        assert isinstance(host, Host)
        assert host.name == host_request.name
        assert host.driver == driver.info.name
        assert host.id, "a created host needs an id"
        assert host.labels.get("conformance") == "yes"
        assert host.addresses, "a created host reports its addresses"

    async def test_created_host_is_running(self, driver: Provisioner, host: Host) -> None:
        await self.wait_state(driver, host, "running")

    async def test_engine_url_has_a_scheme(self, driver: Provisioner, host: Host) -> None:
        url = await driver.engine_url(host)
        assert isinstance(url, str) and url.startswith(URL_SCHEMES), url

    async def test_state_is_one_of_the_documented_values(self, driver: Provisioner, host: Host) -> None:
        assert await self.state_of(driver, host) in HOST_STATES

    async def test_stop_then_start(self, driver: Provisioner, host: Host) -> None:
        await self.wait_state(driver, host, "running")
        await driver.stop(host)
        await self.wait_state(driver, host, "stopped")
        await driver.start(host)
        await self.wait_state(driver, host, "running")

    async def test_remove_leaves_no_host(self, driver: Provisioner, host: Host) -> None:
        await driver.remove(host)
        assert await self.state_of(driver, host) == "none"
        await driver.remove(host)  # a second remove does nothing
        assert await self.state_of(driver, host) == "none"

    async def test_remove_a_stopped_host(self, driver: Provisioner, host: Host) -> None:
        await driver.stop(host)
        await self.wait_state(driver, host, "stopped")
        await driver.remove(host)
        assert await self.state_of(driver, host) == "none"

    async def test_hosts_are_independent(self, driver: Provisioner, host: Host,
                                         host_request: HostRequest, test_ca: TestCA) -> None:
        other_req = HostRequest(name=host_request.name[:-1] + ("x" if host_request.name[-1] != "x" else "y"),
                                options=dict(host_request.options), labels={"conformance": "yes"})
        other = await self.provision(driver, other_req, test_ca)
        try:
            assert other.id != host.id
            await driver.stop(other)
            await self.wait_state(driver, other, "stopped")
            assert await self.state_of(driver, host) == "running", "stopping one host changed another"
            await driver.remove(other)
            assert await self.state_of(driver, other) == "none"
            assert await self.state_of(driver, host) == "running", "removing one host changed another"
        finally:
            await driver.remove(other)

    async def test_a_host_never_created_is_none(self, driver: Provisioner, host: Host) -> None:
        ghost = Host(id=uuid.uuid4().hex, name="dyghost" + uuid.uuid4().hex[:6], driver=driver.info.name)
        assert await self.state_of(driver, ghost) == "none"
        await driver.remove(ghost)  # nothing to remove: nothing happens

    # ------------------------------------------------------------------ the engine, over the wire
    async def test_engine_answers_ping_over_mutual_tls(self, driver: Provisioner, host: Host,
                                                       client_certs: Path) -> None:
        requires(driver, ENGINE)
        status, body = await asyncio.to_thread(_get, await driver.engine_url(host), "/_ping", client_certs)
        assert (status, body) == (200, b"OK"), (status, body)

    async def test_engine_info_over_mutual_tls_names_the_host(self, driver: Provisioner, host: Host,
                                                              client_certs: Path) -> None:
        import json

        requires(driver, ENGINE)
        status, body = await asyncio.to_thread(_get, await driver.engine_url(host), "/info", client_certs)
        assert status == 200, (status, body[:500])
        assert json.loads(body)["Name"] == host.name, "the engine's host name is the host's name"

    async def test_engine_refuses_a_client_without_a_certificate(self, driver: Provisioner, host: Host,
                                                                 client_certs: Path) -> None:
        requires(driver, ENGINE)
        try:
            status, _body = await asyncio.to_thread(_get, await driver.engine_url(host), "/info", client_certs,
                                                    present_certificate=False)
        except OSError:  # the handshake (TLS 1.2) or the first read (TLS 1.3) fails: refused
            return
        pytest.fail(f"the engine answered {status} to a client without a certificate")

    async def test_update_tls_rotates_the_engine_certificate(self, driver: Provisioner, host: Host,
                                                             test_ca: TestCA, client_certs: Path) -> None:
        requires(driver, ENGINE)
        requires(driver, TLS_ROTATION)
        url = await driver.engine_url(host)
        before = await asyncio.to_thread(_served_certificate, url, client_certs)
        await driver.update_tls(host, test_ca.engine_tls(host.addresses))
        assert await asyncio.to_thread(_served_certificate, url, client_certs) == before, \
            "update_tls() must not change what a running engine presents before it restarts"
        await driver.stop(host)
        await self.wait_state(driver, host, "stopped")
        await driver.start(host)
        await self.wait_state(driver, host, "running")
        after = await asyncio.to_thread(_served_certificate, url, client_certs)
        assert after != before, "after a restart the engine still presents the old certificate"
        status, body = await asyncio.to_thread(_get, url, "/_ping", client_certs)
        assert (status, body) == (200, b"OK"), "the rotated engine refuses the same client"

    async def test_update_tls_of_a_host_never_created_is_not_found(self, driver: Provisioner,
                                                                   test_ca: TestCA) -> None:
        from dockyard.errors import NotFound

        requires(driver, TLS_ROTATION)
        ghost = Host(id=uuid.uuid4().hex, name="dyghost" + uuid.uuid4().hex[:6], driver=driver.info.name)
        with pytest.raises(NotFound):
            await driver.update_tls(ghost, test_ca.engine_tls(["192.0.2.1"]))


def _served_certificate(url: str, certs: Path) -> bytes:
    """The DER certificate the engine at ``tcp://ADDR:PORT`` presents (checked against
    ``certs/ca.pem``), with the client certificate of ``certs``."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://", 1))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    with socket.create_connection((parts.hostname, parts.port or 2376), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der, "the engine presented no certificate"
    return der


def _get(url: str, path: str, certs: Path, present_certificate: bool = True) -> tuple[int, bytes]:
    """GET ``path`` from the engine at ``tcp://ADDR:PORT`` over TLS, checking its certificate
    against ``certs/ca.pem`` and the address; with the client certificate of ``certs`` or none."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("tcp://", "https://", 1))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if present_certificate:
        ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 2376, context=ctx, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()

