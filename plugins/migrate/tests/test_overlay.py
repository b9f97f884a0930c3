"""The issue's scenario on an overlay: a stateful busybox ``nc`` service on h1 that a client on
the overlay keeps talking to over ONE TCP connection (a request every 0.1 s, answered with the
next number of a counter held in the service's shell memory) moves to h2 with ``dockyard
migrate``: same overlay address, the client's connection kept, no request lost (the answers go
on 1, 2, 3... without a gap or a repeat), the count (state) intact. Two netns hosts sharing a
real etcd (mutual TLS), ~3 s to make."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

pytestmark = [pytest.mark.timeout(120)]

SERVICE = "mkfifo /tmp/f; nc -l -p 7000 < /tmp/f | (while read l; do i=$((i+1)); echo $i; done) > /tmp/f"
CLIENT = "(while true; do echo x; sleep 0.1; done) | nc 10.79.0.10 7000 > /tmp/answers"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(dockyard_owners: Any, faults: Any) -> AsyncIterator[list[Any]]:
    from dockyard_plugin_sdk.testing import etcd_unavailable, netns_cluster, netns_hosts_unavailable

    reason = (None if os.access("/opt/criu/sbin/criu", os.X_OK) and shutil.which("runc") else
              "needs runc and CRIU 4.x at /opt/criu") or netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    # heartbeat and TTL as dockerd's defaults (2 s, 6 s): no swarm here, only the overlay's store
    async with netns_cluster(Path(f"/tmp/dymo{uuid.uuid4().hex[:6]}"), 2, owners=dockyard_owners, prefix="mg",
                             heartbeat=2, ttl=6, engine_options=["--default-runtime", "runc"],
                             engine_env=faults.engine_env()) as c:  # conftest's Faults
        yield c.hosts


def answers(host: Any) -> list[int]:
    out = host.docker("exec", "cli", "cat", "/tmp/answers", check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


@pytest.mark.parametrize("fault", ["", "source:restore:raise"], ids=["moved", "failed-resumed"])
def test_client_keeps_its_connection_across_the_move(cluster: list[Any], faults: Any, fault: str) -> None:
    """Moved, or (a failure after the address was given up) resumed on h1: either way the
    client's connection goes on."""
    h1, h2 = cluster
    home = h1 if fault else h2
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.79.0.0/24", "ov")
    try:
        h1.docker("run", "-d", "--name", "srv", "--network", "ov", "--ip", "10.79.0.10", "busybox", "sh", "-c", SERVICE)
        time.sleep(0.3)
        h1.docker("run", "-d", "--name", "cli", "--network", "ov", "busybox", "sh", "-c", CLIENT)
        end = time.monotonic() + 10
        while len(answers(h1)) < 5:
            assert time.monotonic() < end, "the client gets no answers"
            time.sleep(0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
        env.update({k: v for k, v in h1.docker_env().items() if k != "DOCKER_CONFIG"})
        if fault:
            faults.inject(h1, *fault.split(":"))
        out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "migrate", "--mode", "stop-copy", "srv", h2.url],
                             env=env, capture_output=True, text=True, timeout=90)
        assert (out.returncode != 0) == bool(fault), out.stdout + out.stderr + h1.log[-2000:] + h2.log[-2000:]
        before = len(answers(h1))
        end = time.monotonic() + 15
        while len(answers(h1)) < before + 10:
            if time.monotonic() > end:
                diag = {"cli": h1.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "cli", check=False).stdout,
                        "cli-logs": h1.docker("logs", "cli", check=False).stdout + h1.docker("logs", "cli", check=False).stderr,
                        "srv": home.docker("inspect", "-f", "{{.State.Status}} {{json .NetworkSettings.Networks}}", "srv",
                                           check=False).stdout,
                        "srv-netstat": home.docker("exec", "srv", "netstat", "-tn", check=False).stdout,
                        "srv-ps": home.docker("exec", "srv", "ps", check=False).stdout,
                        "h1-ps": h1.docker("ps", "-a", check=False).stdout}
                Path("/tmp/migrate-overlay-diag.txt").write_text(repr(diag) + "\n" + out.stdout + out.stderr + h1.log[-6000:])
                raise AssertionError(f"the client's connection did not carry on: {diag}")
            time.sleep(0.2)
        got = answers(h1)
        assert got == list(range(1, len(got) + 1)), got  # no request lost, none answered twice
        assert home.docker("inspect", "-f", "{{.NetworkSettings.Networks.ov.IPAddress}}", "srv").stdout.strip() == "10.79.0.10"
        assert h1.docker("inspect", "-f", "{{.State.Running}}", "cli").stdout.strip() == "true"
        other = h2 if home is h1 else h1
        assert other.docker("ps", "-aq", "--filter", "name=srv").stdout.strip() == ""
    finally:
        for h in (h1, h2):
            h.docker("rm", "-f", "srv", "cli", check=False)
        h1.docker("network", "rm", "ov", check=False)
