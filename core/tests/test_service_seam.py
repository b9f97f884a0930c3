"""The service seam: providers found by entry point, one per name and role, started in the
order their declarations give, and a clear error for a service nobody provides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import PluginConflictError, ServiceNotInstalled
from dockyard.kernel import Kernel
from dockyard.services import Service, ServiceInfo, start_order

PROVIDER = '''
from dockyard.services import Service, ServiceInfo

LOG = []


class Recording(Service):
    def __init__(self, kernel, name):
        super().__init__(kernel)
        self.name = name

    async def start(self):
        LOG.append("start " + self.name)

    async def stop(self):
        LOG.append("stop " + self.name)


def make(name):
    return lambda kernel: Recording(kernel, name)


SERVICES = (
    ServiceInfo("containers", make("containers"), after=("images", "volumes", "networks")),
    ServiceInfo("images", make("images"), after=("volumes",)),
    ServiceInfo("volumes", make("volumes")),
)
MANAGER = (ServiceInfo("containers", make("cluster-containers"), roles=("manager",)),)
CLASH = (ServiceInfo("images", make("other-images")),)
BROKEN = (object(),)
'''


def build(tmp_path: Path, **values: str) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"), **values})
    return Kernel.build(cfg, autoload=False, environ={})


def only(kernel: Kernel, *names: str) -> None:
    """Let the registry see only the fake providers (the real engine is installed too)."""
    kernel.registry.allow = set(names)
    kernel.registry.scan()


@pytest.fixture
def provider(make_dist: Callable[..., object]) -> None:
    make_dist("fake-engine", {"dockyard.services": {"fake": "fake_services:SERVICES",
                                                   "fake-manager": "fake_services:MANAGER"}},
              {"fake_services": PROVIDER})


async def test_services_start_in_declared_order_and_stop_in_reverse(tmp_path: Path, provider: None) -> None:
    import fake_services  # type: ignore[import-not-found]

    fake_services.LOG.clear()
    k = build(tmp_path)
    only(k, "fake", "fake-manager")
    assert k.start_order() == ["volumes", "images", "containers"]
    await k.start()
    await k.stop()
    assert fake_services.LOG == ["start volumes", "start images", "start containers",
                                 "stop containers", "stop images", "stop volumes"]


def test_the_role_picks_the_provider(tmp_path: Path, provider: None) -> None:
    k = build(tmp_path, role="manager")
    only(k, "fake", "fake-manager")
    assert sorted(k.service_infos()) == ["containers"]
    assert k.containers.name == "cluster-containers"  # type: ignore[attr-defined]
    with pytest.raises(ServiceNotInstalled, match="images service is not installed for the .manager. role.*dockyard-manager"):
        k.images  # noqa: B018


def test_a_missing_service_names_the_distribution_to_install(tmp_path: Path) -> None:
    k = build(tmp_path)
    only(k)  # nothing provides services
    assert not k.has_service("containers")
    with pytest.raises(ServiceNotInstalled, match="pip install dockyard-engine"):
        k.containers  # noqa: B018


async def test_two_providers_of_one_name_and_role_stop_the_kernel(tmp_path: Path, provider: None,
                                                                   make_dist: Callable[..., object]) -> None:
    make_dist("other-engine", {"dockyard.services": {"other": "fake_services:CLASH"}}, {})
    k = build(tmp_path)
    only(k, "fake", "other")
    assert "images" not in k.service_infos()
    [err] = [p for p in k.registry.problems if isinstance(p, PluginConflictError)]
    assert "fake-engine" in str(err) and "other-engine" in str(err)
    with pytest.raises(PluginConflictError):
        await k.start()
    if k.store is not None:
        k.store.close()


def test_a_provider_of_the_wrong_shape_is_recorded_not_used(tmp_path: Path, provider: None,
                                                             make_dist: Callable[..., object]) -> None:
    make_dist("broken-engine", {"dockyard.services": {"broken": "fake_services:BROKEN"}}, {})
    k = build(tmp_path)
    only(k, "broken")
    assert k.service_infos() == {}
    [rec] = k.registry.find("dockyard.services", "broken")
    assert rec.status == "failed" and "ServiceInfo" in rec.error


def test_start_order_refuses_a_cycle() -> None:
    def factory(kernel: Kernel) -> Service:
        return Service(kernel)

    infos = {"a": ServiceInfo("a", factory, after=("b",)), "b": ServiceInfo("b", factory, after=("a",))}
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        start_order(infos)


def test_start_order_ignores_services_nobody_provides() -> None:
    def factory(kernel: Kernel) -> Service:
        return Service(kernel)

    infos = {"containers": ServiceInfo("containers", factory, after=("networks", "images")),
             "images": ServiceInfo("images", factory)}
    assert start_order(infos) == ["images", "containers"]


def test_service_names_are_checked() -> None:
    with pytest.raises(ValueError, match="invalid service name"):
        ServiceInfo("Containers", lambda k: Service(k))
    with pytest.raises(ValueError, match="after itself"):
        ServiceInfo("a", lambda k: Service(k), after=("a",))
