"""The engine declares the distributions of the drivers it uses by default, so that a missing
one is named right even where the name does not follow ``dockyard-<area>-<name>``."""

from __future__ import annotations

import pytest

from dockyard.errors import DriverNotInstalled
from dockyard.registry import Registry
from dockyard.specs import NAMESPACES, PROVIDER_GROUP
from dockyard_engine.default_drivers import PROVIDERS
from dockyard_engine.networks import BUILTIN


def test_the_declaration_is_an_installed_entry_point() -> None:
    reg = Registry(environ={})
    reg.scan()
    (rec,) = reg.find(PROVIDER_GROUP, "dockyard-engine")
    assert rec.distribution == "dockyard-engine" and tuple(rec.load()) == PROVIDERS


def test_every_driver_the_engine_picks_by_itself_is_declared() -> None:
    declared = {(p.kind, p.name) for p in PROVIDERS}
    defaults = {(kind, default) for kind, (_area, _key, default) in NAMESPACES.items()
                if kind in ("arch", "storage", "volume", "network", "ipam") and default}
    assert defaults | {("network", d) for d in BUILTIN.values()} <= declared


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: f"{p.kind}:{p.name}")
def test_a_missing_default_driver_names_its_distribution(provider) -> None:
    reg = Registry(environ={})
    reg.scan()
    reg.records = [r for r in reg.records if not (r.kind == provider.kind and r.name == provider.name)]
    with pytest.raises(DriverNotInstalled) as exc:
        reg.load_driver(provider.kind, provider.name)
    assert f"pip install {provider.distribution}" in str(exc.value)
