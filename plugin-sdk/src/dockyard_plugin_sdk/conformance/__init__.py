"""Conformance kits, one module per driver kind.

Each module holds a mixin (not named ``Test*``, so pytest does not collect it alone) whose
``driver`` fixture raises ``NotImplementedError`` until a one-line subclass in the driver's
own tests supplies it. Cases that need a capability the driver's ``info.capabilities`` does not
declare are skipped with the reason (see :func:`requires`).
"""

from __future__ import annotations

import pytest

from dockyard.specs import Driver


def requires(driver: Driver, capability: str) -> None:
    """Skip the calling test unless ``driver.info.capabilities`` declares ``capability``."""
    if capability not in driver.info.capabilities:
        pytest.skip(f"driver does not declare capability {capability!r}")
