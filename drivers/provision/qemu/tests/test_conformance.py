"""The provision kit, with one VM shared by its cases (each boot takes ~15 s under TCG, plus
the engine's install): the kit's ``host`` is the session's shared host, made again only after
a case removed it; the cases that remove it or make more VMs run last (conftest.py)."""

from __future__ import annotations

import pytest

from dockyard.specs.provision import HostRequest
from dockyard_plugin_sdk.conformance.provision import ProvisionerContract

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("removed_hosts_leave_nothing"), pytest.mark.timeout(900)]


# The driver lives in the session's event loop, so every case runs there; the kit's few sync
# cases carry the mark too, which pytest-asyncio warns about.
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio' but it is not an "
                            "async function:pytest.PytestWarning")
class TestQemu(ProvisionerContract):
    state_timeout = 120.0

    @pytest.fixture
    def driver(self, qemu_session):
        return qemu_session.driver

    @pytest.fixture
    def test_ca(self, qemu_session):
        return qemu_session.ca

    @pytest.fixture
    async def host(self, qemu_session):
        return await qemu_session.shared_host()

    @pytest.fixture
    def host_request(self, request, host_name):
        """The shared host's name for a case that also has the ``host`` (create returns what was
        asked for; a second host is named after it), a fresh one otherwise."""
        if "host" in request.fixturenames:
            return HostRequest(name=request.getfixturevalue("host").name, labels={"conformance": "yes"})
        return HostRequest(name=host_name, labels={"conformance": "yes"})
