"""The ``dockyard`` meta-distribution (the root ``pyproject.toml``): the default set, and every
other distribution of the tree reachable through an extra, ``all`` holding them all."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.conftest import ROOT, distributions

META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TREE = {canonicalize_name(tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"])
        for d in distributions()}


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_requirement_is_a_distribution_of_the_tree_in_its_range() -> None:
    every = META["dependencies"] + [r for rs in META["optional-dependencies"].values() for r in rs]
    for req in map(Requirement, every):
        assert canonicalize_name(req.name) in TREE, f"{req} names no distribution of tools/distributions.py"
        assert str(req.specifier) in ("<0.2,>=0.1", ">=0.1,<0.2"), f"{req}: want >=0.1,<0.2"


def test_the_default_set_runs_containers() -> None:
    assert names(META["dependencies"]) == {
        "dockyard-core", "dockyard-engine", "dockyard-api-docker", "dockyard-arch-linux",
        "dockyard-storage-overlay", "dockyard-storage-vfs", "dockyard-storage-local",
        "dockyard-network-bridge", "dockyard-network-ipam",
        "dockyard-builder", "dockyard-distribution", "dockyard-compose"}


def test_the_rest_is_in_extras_and_all_holds_every_extra() -> None:
    extras = {name: names(reqs) for name, reqs in META["optional-dependencies"].items()}
    assert all(extras.values()), f"empty extras: {[n for n, v in extras.items() if not v]}"
    others = set().union(*(v for n, v in extras.items() if n != "all"))
    assert extras["all"] == others
    assert others.isdisjoint(names(META["dependencies"]))
    orphans = sorted(TREE - names(META["dependencies"]) - others)
    assert not orphans, (f"{', '.join(orphans)}: in no extra of the root pyproject.toml; give each one "
                         "(e.g. machine = [\"dockyard-machine>=0.1,<0.2\"]) and list it in `all`")
