"""Every hook specification is exercised by at least one test (STYLE rule 12)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dockyard.specs import SPEC_CLASSES

ROOT = Path(__file__).resolve().parents[2]
TEST_GLOBS = ("core/tests/**/*.py", "tests/**/*.py", "plugin-sdk/tests/**/*.py",
              "plugins/*/tests/**/*.py", "drivers/*/*/tests/**/*.py")
SELF = Path(__file__).resolve()


def hook_names() -> list[str]:
    return sorted(name for cls in SPEC_CLASSES for name, fn in inspect.getmembers(cls, inspect.isfunction)
                  if name.startswith("dockyard_"))


def _test_sources() -> str:
    texts = []
    for pattern in TEST_GLOBS:
        for path in ROOT.glob(pattern):
            if path.resolve() != SELF:
                texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def sources() -> str:
    return _test_sources()


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_test(hook: str, sources: str) -> None:
    assert f"def {hook}(" in sources, f"no test implements {hook}: add one that checks how it is called"
