"""Every hookspec has a docstring with ``versionadded`` and a heading with its signature in
docs/hooks.md, every driver ABC method is documented there, and the file is not stale."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from dockyard.specs import CAPABILITY_BASES, DRIVER_BASES, SPEC_CLASSES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "hooks.md"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_tool("gen_hook_docs")
HOOKS = [(cls, name, func) for cls in SPEC_CLASSES for name, func, _opts in gen.hookspecs(cls)]


def test_there_are_hookspecs_to_check() -> None:
    assert len(HOOKS) >= 10
    assert len({name for _c, name, _f in HOOKS}) == len(HOOKS), "two spec classes define one hook"


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda c: c.__name__)
def test_every_dockyard_method_of_a_spec_class_is_a_hookspec(cls: type) -> None:
    unmarked = [n for n, f in vars(cls).items()
                if inspect.isfunction(f) and not n.startswith("_") and not hasattr(f, "dockyard_spec")]
    assert not unmarked, f"{cls.__name__}: methods without @hookspec: {unmarked}"
    misnamed = [n for n, f in vars(cls).items() if hasattr(f, "dockyard_spec") and not n.startswith("dockyard_")]
    assert not misnamed, f"{cls.__name__}: hookspecs not prefixed dockyard_: {misnamed}"


@pytest.mark.parametrize(("cls", "name", "func"), HOOKS, ids=[n for _c, n, _f in HOOKS])
def test_hookspec_docstring_has_versionadded(cls: type, name: str, func) -> None:
    doc = inspect.getdoc(func) or ""
    assert doc.strip(), f"{cls.__name__}.{name} has no docstring"
    assert ".. versionadded::" in doc, f"{cls.__name__}.{name}: docstring lacks '.. versionadded::'"


@pytest.mark.parametrize(("cls", "name", "func"), HOOKS, ids=[n for _c, n, _f in HOOKS])
def test_hookspec_is_documented_with_its_signature(cls: type, name: str, func) -> None:
    heading = f"### Hook `{gen.signature(func)}`"
    assert heading in DOCS.read_text(), f"docs/hooks.md lacks {heading!r}: run python tools/gen_hook_docs.py"


@pytest.mark.parametrize("kind", sorted(DRIVER_BASES))
def test_driver_abc_methods_are_documented(kind: str) -> None:
    text = DOCS.read_text()
    base = DRIVER_BASES[kind]
    assert f"### Driver `{base.__qualname__}` (`dockyard.drivers.{kind}`)" in text
    for _name, func, _tag in gen.driver_methods(base):
        assert f"#### `{gen.signature(func)}`" in text, f"{base.__qualname__}.{func.__name__} undocumented"


@pytest.mark.parametrize("key", sorted(CAPABILITY_BASES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_capability_protocols_are_documented(key: tuple[str, str]) -> None:
    text = DOCS.read_text()
    kind, capability = key
    base = CAPABILITY_BASES[key]
    assert f"### Driver `{base.__qualname__}` (capability `{capability}` of `{kind}` drivers)" in text
    assert issubclass(base, DRIVER_BASES[kind])
    methods = gen.driver_methods(base)
    assert methods, f"{base.__qualname__} adds no method: a capability protocol is its methods"
    for _name, func, _tag in methods:
        assert f"#### `{gen.signature(func)}`" in text, f"{base.__qualname__}.{func.__name__} undocumented"
        assert _tag == "abstract", f"{base.__qualname__}.{func.__name__}: a protocol method has no default"


def test_hooks_md_is_not_stale() -> None:
    assert DOCS.exists(), "docs/hooks.md is missing: run python tools/gen_hook_docs.py"
    assert DOCS.read_text() == gen.generate(), "docs/hooks.md is stale: run python tools/gen_hook_docs.py"


def test_signature_rendering() -> None:
    class Spec:
        def dockyard_x(self, kernel: Kernel, items: list[str] | None = None) -> dict[str, int]:  # noqa: F821
            """Doc."""

    assert gen.signature(Spec.dockyard_x) == \
        "dockyard_x(kernel: Kernel, items: list[str] | None = None) -> dict[str, int]"
