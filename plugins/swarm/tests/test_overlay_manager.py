"""An overlay network through the manager (issue 16): created once for the whole cluster, used by
containers the manager places on different nodes, which reach each other by name; the
manager's ``network inspect`` lists the endpoints of every node. Needs dockyard-network-overlay
on the engines (a test dependency)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

HTTPD = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


async def test_overlay_through_the_manager_spans_the_nodes(swarm_cluster: Any) -> None:
    pytest.importorskip("dockyard_network_overlay")
    c = swarm_cluster
    c.docker("network", "create", "-d", "overlay", "--subnet", "10.39.0.0/24", "appnet")
    try:
        listed = c.docker("network", "ls", "--filter", "name=appnet", "--format", "{{.Name}} {{.Scope}}").stdout
        assert listed.split() == ["appnet", "global"], listed  # once, not NODE/appnet per node
        c.docker("run", "-d", "--name", "web", "-e", "constraint:node==h1", "--network", "appnet",
                 "--network-alias", "site", "busybox", "sh", "-c", HTTPD)
        c.docker("run", "-d", "--name", "worker", "-e", "constraint:node==h2", "--network", "appnet",
                 "busybox", "sleep", "600")
        page = c.docker("exec", "worker", "wget", "-qO-", "http://site/").stdout
        assert page.startswith("hello-from-"), page
        c.docker("exec", "web", "ping", "-c", "1", "-W", "3", "worker")
        doc = json.loads(c.docker("network", "inspect", "appnet").stdout)[0]
        names = sorted(ep["Name"] for ep in doc["Containers"].values())
        assert names == ["web", "worker"], doc["Containers"]
    finally:
        c.docker("rm", "-f", "web", "worker", check=False)
        c.docker("network", "rm", "appnet", check=False)
