"""The sqlite state store: typed round trips, name uniqueness, atomicity, kill -9 safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dockyard.errors import Conflict, NotFound
from dockyard.model import Container, ContainerConfig, ContainerStatus, HostConfig, Network, new_id
from dockyard.store import Store


def container(name: str) -> Container:
    return Container(id=new_id(), name=name, image_id="sha256:" + "0" * 64,
                     config=ContainerConfig(image="busybox", cmd=["true"]), host_config=HostConfig())


def test_round_trip_keeps_types(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    c = container("web")
    c.state.status = ContainerStatus.RUNNING
    with store.transaction() as tx:
        tx.put(c)
    got = store.get(Container, c.id)
    assert got == c and got.state.status is ContainerStatus.RUNNING
    assert store.by_name(Container, "web") == c
    assert store.by_prefix(Container, c.id[:12]) == [c]
    assert store.count(Container) == 1 and store.count(Network) == 0


def test_names_are_unique_per_kind(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    with store.transaction() as tx:
        tx.put(container("web"))
        tx.put(Network(id=new_id(), name="web"))  # another kind may reuse it
    with pytest.raises(Conflict, match="'web' is already in use"):
        with store.transaction() as tx:
            tx.put(container("web"))


def test_a_failed_transaction_changes_nothing(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    with pytest.raises(Conflict):
        with store.transaction() as tx:
            tx.put(container("a"))
            tx.put(container("b"))
            tx.put(container("a"))
    assert store.list(Container) == []


def test_missing_objects_are_not_found(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    with pytest.raises(NotFound):
        store.get(Container, "nope")
    with pytest.raises(NotFound):
        with store.transaction() as tx:
            tx.delete(Container, "nope")


def test_prefix_lookup_escapes_wildcards(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    with store.transaction() as tx:
        tx.put(container("a"))
    assert store.by_prefix(Container, "%") == [] and store.by_prefix(Container, "_") == []


def test_commits_survive_kill_9(tmp_path: Path):
    """A writer killed mid-stream leaves every committed object and nothing half-written."""
    db = tmp_path / "state.db"
    script = textwrap.dedent(f"""
        import sys
        from dockyard.model import Container, ContainerConfig, HostConfig, new_id
        from dockyard.store import Store
        store = Store(__import__("pathlib").Path({str(db)!r}))
        i = 0
        while True:
            with store.transaction() as tx:
                for j in range(5):  # five objects per transaction: all or none
                    tx.put(Container(id=new_id(), name=f"c{{i}}-{{j}}", image_id="sha256:x",
                                     config=ContainerConfig(), host_config=HostConfig()))
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = -1
    deadline = time.monotonic() + 20
    while committed < 40 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(db)
    n = store.count(Container)
    assert n % 5 == 0, "a transaction was half-applied"
    assert n >= (committed + 1) * 5, "a reported commit was lost"
    (integrity,) = store._conn.execute("PRAGMA integrity_check").fetchone()
    assert integrity == "ok"
