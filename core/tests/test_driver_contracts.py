"""Contracts between the kernel and its drivers stay explicit: the kernel keeps its own record of
which drivers are set up (nothing is written onto a driver), and a capability with a protocol
(``embedded-dns``) is checked against the driver's class when it loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import PluginLoadError
from dockyard.kernel import Kernel
from dockyard.registry import Registry, check_driver_class
from dockyard.specs import EmbeddedDnsDriver

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
