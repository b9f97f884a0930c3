"""The SDK's provision kit against a real sshd target (see conftest.py).

All cases use one target. A module-wide engine (``anchor``) stays installed on it meanwhile,
so the venv of the wheelhouse, which the engines of one install root share, is made once; each
case still installs, starts and uninstalls its own hosts' engines in full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dockyard.specs.provision import EngineInstall, HostRequest
from dockyard_plugin_sdk.conformance.provision import ProvisionerContract
from dockyard_plugin_sdk.testing import TestCA
from dockyard_provision_ssh.installer import SshEngineInstaller


@pytest.fixture(scope="module")
def anchor(module_target, tmp_path_factory) -> Iterator[None]:
    installer = SshEngineInstaller(tmp_path_factory.mktemp("wheelhouse"))
    target = module_target.ssh_target()
    module_target.track("anchor")
    ca = TestCA()
    url = f"tcp://{module_target.address}:2399"
    spec = EngineInstall(name="anchor", listen=("tcp://0.0.0.0:2399",), engine_url=url,
                         tls=ca.engine_tls([module_target.address]))
    asyncio.run(installer.install(target, spec))
    try:
        yield
    finally:
        asyncio.run(installer.uninstall(target, "anchor"))


class TestSsh(ProvisionerContract):
    @pytest.fixture
    def driver(self, ssh_driver):
        return ssh_driver

    @pytest.fixture
    def host_request(self, host_name: str, module_target, anchor) -> HostRequest:
        # the kit's second host is the name with another last letter: both are tracked
        for name in (host_name, host_name[:-1] + "x", host_name[:-1] + "y"):
            module_target.track(name)
        return HostRequest(name=host_name, options=module_target.options(), labels={"conformance": "yes"})
