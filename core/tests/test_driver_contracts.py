"""Contracts between the kernel and its drivers stay explicit: the kernel keeps its own record of
which drivers are set up (nothing is written onto a driver); a capability with a protocol
(``embedded-dns``) is checked against the driver's class when it loads; a kind's area is the
spec module of its ABC, and the distribution a missing driver comes from is declared by
installed distributions (``dockyard.providers``), not by a table in core."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled, PluginConflictError, PluginLoadError
from dockyard.kernel import Kernel
from dockyard.registry import Registry, check_driver_class
from dockyard.specs import (
    AREAS,
    DRIVER_BASES,
    NAMESPACES,
    PROVIDER_GROUP,
    DriverProvider,
    EmbeddedDnsDriver,
    conventional_distribution,
)

COUNTING_VOLUME_DRIVER = """
from dockyard.specs import DriverInfo, VolumeDriver

CALLS = []


class Counting(VolumeDriver):
    info = DriverInfo("counting", "volume")

    async def setup(self):
        CALLS.append("setup")

    async def close(self):
        CALLS.append("close")

    async def create(self, name, options): return "/"
    async def remove(self, name): pass
    async def mount(self, name, container_id): raise NotImplementedError
    async def unmount(self, name, container_id): pass
    async def list(self): return []
"""


def kernel(tmp_path: Path) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, autoload=False, environ={})


async def test_the_kernel_records_ready_drivers_itself(make_dist, tmp_path: Path) -> None:
    make_dist("dockyard-storage-counting", {"dockyard.drivers.volume": {"counting": "counting_vol:Counting"}},
              {"counting_vol": COUNTING_VOLUME_DRIVER})
    import counting_vol

    k = kernel(tmp_path)
    built = k.driver("volume", "counting")
    assert not k.is_ready("volume", "counting") and k.ready_drivers("volume") == {}
    attrs = set(vars(built))
    drv = await k.driver_ready("volume", "counting")
    assert drv is built and await k.driver_ready("volume", "counting") is drv
    assert counting_vol.CALLS == ["setup"]
    assert k.is_ready("volume", "counting") and k.ready_drivers("volume") == {"counting": drv}
    assert set(vars(drv)) == attrs, "the kernel wrote attributes onto the driver"
    assert drv.context.data_dir.is_dir() and drv.context.run_dir.is_dir()
    await k.stop()
    assert counting_vol.CALLS == ["setup", "close"]
    assert not k.is_ready("volume", "counting") and k.ready_drivers("volume") == {}
    await k.stop()  # closed once
    assert counting_vol.CALLS == ["setup", "close"]


async def test_a_driver_never_set_up_is_not_closed(make_dist, tmp_path: Path) -> None:
    make_dist("dockyard-storage-counting", {"dockyard.drivers.volume": {"counting": "counting_vol2:Counting"}},
              {"counting_vol2": COUNTING_VOLUME_DRIVER})
    import counting_vol2

    k = kernel(tmp_path)
    k.driver("volume", "counting")
    await k.stop()
    assert counting_vol2.CALLS == []


# ---------------------------------------------------------------------------- embedded DNS
NETWORK_DRIVER = """
from dockyard.specs import DriverInfo, EmbeddedDnsDriver, NetworkDriver


class Toy({base}):
    info = DriverInfo("toy", "network", capabilities=frozenset({caps}))

    async def create_network(self, network): return {{}}
    async def delete_network(self, network): pass
    async def join(self, request): raise NotImplementedError
    async def leave(self, request, result): pass
{dns}
"""

DNS_METHODS = """
    async def dns_set_records(self, network_id, records): pass
    async def dns_attach(self, sandbox_id, netns_path, network_ids, upstreams): pass
    async def dns_detach(self, sandbox_id): pass
"""


@pytest.mark.parametrize("n, base, caps, dns, reason", [
    (1, "NetworkDriver", '{"embedded-dns"}', DNS_METHODS,
     "declares capability 'embedded-dns' but is not a subclass of dockyard.specs.network.EmbeddedDnsDriver"),
    (2, "EmbeddedDnsDriver", "", DNS_METHODS,
     "subclasses dockyard.specs.network.EmbeddedDnsDriver but does not declare capability 'embedded-dns'"),
    (3, "EmbeddedDnsDriver", '{"embedded-dns"}', "", "does not implement dns_attach, dns_detach, dns_set_records"),
])
def test_a_capability_and_its_protocol_are_checked_at_load(make_dist, n, base, caps, dns, reason) -> None:
    mod = f"toy_net_{n}"
    make_dist("dockyard-network-toy", {"dockyard.drivers.network": {"toy": f"{mod}:Toy"}},
              {mod: NETWORK_DRIVER.format(base=base, caps=caps, dns=dns)})
    reg = Registry(environ={})
    reg.scan()
    with pytest.raises(PluginLoadError, match=re.escape(reason)):
        reg.load_driver("network", "toy")
    assert reg.find("dockyard.drivers.network", "toy")[0].status == "failed"


def test_a_driver_with_the_capability_and_its_protocol_loads(make_dist) -> None:
    make_dist("dockyard-network-toy", {"dockyard.drivers.network": {"toy": "toy_net_ok:Toy"}},
              {"toy_net_ok": NETWORK_DRIVER.format(base="EmbeddedDnsDriver", caps='{"embedded-dns"}',
                                                   dns=DNS_METHODS)})
    reg = Registry(environ={})
    reg.scan()
    cls = reg.load_driver("network", "toy")
    assert issubclass(cls, EmbeddedDnsDriver) and check_driver_class(cls, "network") == ""
    plain = NETWORK_DRIVER.format(base="NetworkDriver", caps="", dns="")
    namespace: dict[str, object] = {}
    exec(compile(plain, "<plain>", "exec"), namespace)  # a driver without DNS stays as simple as before
    assert check_driver_class(namespace["Toy"], "network") == ""


# ---------------------------------------------------------------------------- areas and providers
def test_each_kind_belongs_to_the_area_whose_spec_module_defines_its_abc() -> None:
    for kind, (area, _key, _default) in NAMESPACES.items():
        assert DRIVER_BASES[kind].__module__ == f"dockyard.specs.{area}", kind
        assert kind in AREAS[area]
    assert sorted(k for kinds in AREAS.values() for k in kinds) == sorted(NAMESPACES)


def providers_dist(make_dist, dist: str, mod: str, body: str):
    return make_dist(dist, {"dockyard.providers": {dist: f"{mod}:PROVIDERS"}},
                     {mod: "from dockyard.specs import DriverProvider\n" + body})


def scanned(**environ: str) -> Registry:
    reg = Registry(environ=dict(environ))
    reg.scan()
    return reg


def test_a_missing_driver_names_the_distribution_an_installed_one_declares(make_dist) -> None:
    providers_dist(make_dist, "acme-engine", "acme_providers",
                   'PROVIDERS = (DriverProvider("network", "fancy", "acme-networking"),\n'
                   '             DriverProvider("volume", "nfs", "acme-storage-pack"))\n')
    make_dist("dockyard-network-toy", {"dockyard.drivers.network": {"toy": "toy_net_listed:Toy"}},
              {"toy_net_listed": NETWORK_DRIVER.format(base="NetworkDriver", caps="", dns="")})
    reg = scanned()
    with pytest.raises(DriverNotInstalled, match="pip install acme-networking") as exc:
        reg.load_driver("network", "fancy")
    assert exc.value.distribution == "acme-networking" and "toy" in exc.value.installed
    assert reg.provider_of("volume", "nfs") == "acme-storage-pack"
    assert reg.provider_of("volume", "other") == "dockyard-storage-other"  # the convention
    assert conventional_distribution("ipam", "default") == "dockyard-network-default"  # hence declarations
    rec = reg.find(PROVIDER_GROUP, "acme-engine")[0]
    assert (rec.kind, rec.area, rec.status) == ("provider", "provider", "loaded")


def test_an_installed_driver_is_named_by_its_own_distribution(make_dist) -> None:
    make_dist("acme-storage-pack", {"dockyard.drivers.volume": {"counting": "counting_vol3:Counting"}},
              {"counting_vol3": COUNTING_VOLUME_DRIVER})
    providers_dist(make_dist, "acme-engine", "acme_providers2",
                   'PROVIDERS = (DriverProvider("volume", "counting", "someone-else"),)\n')
    assert scanned().provider_of("volume", "counting") == "acme-storage-pack"


def test_disagreeing_declarations_are_a_recorded_conflict(make_dist) -> None:
    providers_dist(make_dist, "acme-engine", "acme_providers3",
                   'PROVIDERS = (DriverProvider("network", "fancy", "acme-networking"),)\n')
    providers_dist(make_dist, "other-engine", "other_providers3",
                   'PROVIDERS = (DriverProvider("network", "fancy", "other-networking"),)\n')
    reg = scanned()
    with pytest.raises(DriverNotInstalled, match="pip install dockyard-network-fancy"):
        reg.load_driver("network", "fancy")
    conflict = next(p for p in reg.problems if isinstance(p, PluginConflictError))
    assert "acme-networking (declared by acme-engine)" in str(conflict)
    assert "other-networking (declared by other-engine)" in str(conflict)


@pytest.mark.parametrize("n, body, cause", [
    (1, "raise RuntimeError('no providers today')\n", "no providers today"),
    (2, "PROVIDERS = [('network', 'fancy', 'acme-networking')]\n", "must be an iterable of dockyard.specs.DriverProvider"),
])
def test_a_broken_declaration_is_recorded_and_the_convention_used(make_dist, n, body, cause) -> None:
    providers_dist(make_dist, "acme-engine", f"bad_providers{n}", body)
    reg = scanned()
    assert reg.provider_of("network", "fancy") == "dockyard-network-fancy"
    rec = reg.find(PROVIDER_GROUP, "acme-engine")[0]
    assert rec.status == "failed" and cause in rec.error
    assert any(isinstance(p, PluginLoadError) and cause in str(p) for p in reg.problems)


def test_provider_hints_obey_deny_but_not_allow(make_dist) -> None:
    providers_dist(make_dist, "acme-engine", "acme_providers4",
                   'PROVIDERS = (DriverProvider("network", "fancy", "acme-networking"),)\n')
    denied = scanned(DOCKYARD_DISABLE_PLUGINS="acme-engine")
    assert denied.provider_of("network", "fancy") == "dockyard-network-fancy"
    assert "acme_providers4" not in sys.modules  # a denied distribution's code is not imported
    assert scanned(DOCKYARD_LOAD_PLUGINS="bridge").provider_of("network", "fancy") == "acme-networking"


def test_driver_provider_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown driver kind"):
        DriverProvider("networks", "x", "d")
    with pytest.raises(ValueError, match="needs a driver name and a distribution"):
        DriverProvider("network", "x", "")


async def test_no_installed_layer_driver_names_the_default_distribution(tmp_path: Path) -> None:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    k = Kernel.build(cfg, autoload=False, environ={"DOCKYARD_DISABLE_PLUGINS": "overlay,vfs"})
    with pytest.raises(DriverNotInstalled, match="pip install dockyard-storage-overlay"):
        await k.driver_ready("storage")
