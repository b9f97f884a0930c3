"""``POST /containers/{id}/migrate?node=NAME`` on a swarm manager: two netns hosts in a cluster
(etcd with mutual TLS, heartbeats), a manager dockyardd; a container placed on h1 through the
manager moves to h2, its counter goes on, and the manager's view (inspect's Node) follows."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

pytestmark = [pytest.mark.timeout(120)]
COUNTER = "while true; do i=$((i+1)); echo $i > /tmp/count.t; mv /tmp/count.t /tmp/count; sleep 0.05; done"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm(dockyard_owners: Any) -> AsyncIterator[tuple[Any, list[Any]]]:
    from dockyard_plugin_sdk.testing import (
        etcd_unavailable,
        netns_cluster,
        netns_hosts_unavailable,
        start_daemon,
    )

    reason = (None if os.access("/opt/criu/sbin/criu", os.X_OK) and shutil.which("runc") else
              "needs runc and CRIU 4.x at /opt/criu") or netns_hosts_unavailable() or etcd_unavailable()
    if reason is None:
        import importlib.util

        if importlib.util.find_spec("dockyard_swarm") is None:
            reason = "needs dockyard-swarm (the manager)"
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dyms{uuid.uuid4().hex[:6]}")
    async with netns_cluster(base, 2, owners=dockyard_owners, prefix="ms",
                             engine_options=("--default-runtime", "runc")) as c:
        certs = c.netns.ca.write_manager(base / "mc", ["127.0.0.1", c.gateway])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = {"role": "manager", "cluster-store": c.url, "tlsverify": True, "tlscacert": str(certs / "ca.pem"),
                    "tlscert": str(certs / "cert.pem"), "tlskey": str(certs / "key.pem"),
                    "cluster-opts": c.store_options}
        manager = await asyncio.to_thread(start_daemon, base / "m", "-H", f"tcp://127.0.0.1:{port}", config=settings,
                                          owners=dockyard_owners)
        try:
            yield manager, c.hosts
        finally:
            manager.stop()


def test_the_manager_moves_a_container_between_nodes(swarm: tuple[Any, list[Any]]) -> None:
    from dockyard.client import Client

    manager, (h1, h2) = swarm
    client = Client(f"unix://{manager.socket}", timeout=60)
    end = time.monotonic() + 20
    while len([n for n in client.get("/info").get("SystemStatus") or [] if n and str(n[0]).strip() in ("h1", "h2")]) < 2:
        assert time.monotonic() < end, "the nodes did not join"
        time.sleep(0.3)
    cid = client.post("/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", COUNTER],
                                             "Env": ["constraint:node==h1"]}, name="mv")["Id"]
    client.post(f"/containers/{cid}/start")
    time.sleep(0.5)
    assert h1.docker("inspect", "-f", "{{.State.Running}}", "mv").stdout.strip() == "true"
    docs = list(client.stream_json("POST", "/containers/mv/migrate", {"node": "h2", "mode": "stop-copy"}))
    results = [d["Result"] for d in docs if "Result" in d]
    assert results, docs
    assert h2.docker("inspect", "-f", "{{.State.Running}}", "mv").stdout.strip() == "true"
    assert h1.docker("ps", "-aq", "--filter", "name=mv").stdout.strip() == ""
    first = int(h2.docker("exec", "mv", "cat", "/tmp/count").stdout)
    assert first > 5  # went on from where it was
    inspect = client.get("/containers/mv/json")
    assert inspect["Id"] == results[0]["Id"] and inspect.get("Node", {}).get("Name") == "h2", inspect.get("Node")
    client.delete("/containers/mv", force=1)
