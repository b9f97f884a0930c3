"""Two netns hosts (module scope, ~2 s), each a real engine with TLS that checkpoints with runc
and CRIU 4.x; the busybox image bootstrapped on both."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

CRIU = "/opt/criu/sbin/criu"


@dataclass
class Pair:
    root: Path
    netns: Any  # NetnsHosts
    hosts: list[Any]


def unavailable() -> str | None:
    from dockyard_plugin_sdk.testing import netns_hosts_unavailable

    if not os.access(CRIU, os.X_OK):
        return "needs CRIU 4.x at /opt/criu (make install builds it)"
    if not shutil.which("runc") or not shutil.which("conmon"):
        return "needs runc and conmon"
    return netns_hosts_unavailable()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(dockyard_owners: Any) -> AsyncIterator[Pair]:
    from dockyard_plugin_sdk.testing import NetnsHosts

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dymg{uuid.uuid4().hex[:6]}")
    netns = await NetnsHosts.open(base / "n", owners=dockyard_owners)
    try:
        hosts = await netns.create(2, engine_options=["--default-runtime", "runc"])
        await asyncio.gather(*(asyncio.to_thread(h.bootstrap, "busybox") for h in hosts))
        yield Pair(root=base, netns=netns, hosts=hosts)
    finally:
        errors = await netns.close()
        shutil.rmtree(base, ignore_errors=True)
        assert not errors, errors
