"""The lifecycle log alone: chained, signed, numbered, group-committed from a thread; each
hostile edit (an entry removed, two reordered, one edited, one re-signed by another key, the
tail cut) is found by ``verify``, which names the entry."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import pytest

from dockyard.events import EventBus
from dockyard.model import Event
from dockyard_provenance.journal import HEAD_NAME, LOG_NAME, LifecycleJournal, load_or_make_key, story, verify


def _log(directory: Path, n: int) -> None:
    async def go() -> None:
        bus = EventBus()
        bus.attach(LifecycleJournal(directory))
        for i in range(n):
            bus.emit(Event("container", ("create", "start", "die", "destroy")[i % 4], f"c{i // 4}",
                           {"name": f"n{i // 4}", "image": "busybox"}))
        await bus.durable()
        assert bus.journal is not None
        await bus.journal.close()

    asyncio.run(go())


def _lines(d: Path) -> list[bytes]:
    return (d / LOG_NAME).read_bytes().splitlines(keepends=True)


def _write(d: Path, lines: list[bytes]) -> None:
    (d / LOG_NAME).write_bytes(b"".join(lines))


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    _log(tmp_path, 12)
    return tmp_path


def test_chain_numbers_and_restart(tmp_path: Path) -> None:
    _log(tmp_path, 8)
    _log(tmp_path, 8)  # a restart continues the numbering and the chain
    v = verify(tmp_path)
    assert v.ok and v.entries == 16 and v.last_seq == 16, v
    docs = [json.loads(x) for x in _lines(tmp_path)]
    assert [d["seq"] for d in docs] == list(range(1, 17))
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(docs))
    assert [e["Action"] for e in story(tmp_path, {"c1"})] == ["create", "start", "die", "destroy"] * 2


def test_torn_last_line_is_cut_at_start(tmp_path: Path) -> None:
    _log(tmp_path, 4)
    with open(tmp_path / LOG_NAME, "ab") as f:
        f.write(b'{"seq": 5, "time": 1, "pr')  # killed while writing: never acknowledged
    _log(tmp_path, 2)
    assert verify(tmp_path).ok and verify(tmp_path).last_seq == 6


def test_under_load_nothing_is_lost(tmp_path: Path) -> None:
    async def go() -> float:
        bus = EventBus()
        bus.attach(LifecycleJournal(tmp_path))
        t = time.perf_counter()
        for i in range(5000):
            bus.emit(Event("container", "exec_start: true", f"c{i}"))
        took = time.perf_counter() - t
        await bus.durable()
        assert bus.journal is not None
        await bus.journal.close()
        return took

    took = asyncio.run(go())
    assert took < 1.0, f"5000 appends held the event loop {took:.2f} s"
    assert verify(tmp_path).entries == 5000


def test_write_mode_syncs_batches_together_and_before_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write`` mode: the first batch after a quiet spell is synced at once, the batches of
    the next ``SYNC_EVERY`` seconds by one sync at its end, and what is left at the stop."""
    import dockyard_provenance.journal as jmod

    synced: list[int] = []
    real = jmod.os.fdatasync
    monkeypatch.setattr(jmod.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])

    async def go(every: float, wait_deferred: bool) -> LifecycleJournal:
        j = LifecycleJournal(tmp_path)
        j.SYNC_EVERY = every
        bus = EventBus()
        bus.attach(j)
        for i in range(4):  # four batches: each waited for, as four requests do
            bus.emit(Event("container", "start", f"c{i}"))
            await bus.durable()
        if wait_deferred:
            deadline = time.monotonic() + 10
            while j._unsynced and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not j._unsynced, "the deferred sync never came"
        await j.close()
        return j

    j = asyncio.run(go(3600.0, wait_deferred=False))  # never due: the stop syncs the rest
    assert synced == [j._fd, j._head_fd] * 2, synced
    synced.clear()
    j = asyncio.run(go(0.2, wait_deferred=True))  # due 0.2 s after the first: synced without a stop
    assert len(synced) >= 4, synced  # the first batch's, the deferred one's (more if slower than 0.2 s)
    assert verify(tmp_path).entries == 8


def test_entry_removed(logdir: Path) -> None:
    lines = _lines(logdir)
    _write(logdir, lines[:4] + lines[5:])
    v = verify(logdir)
    assert not v.ok and v.bad_seq == 5 and "entry 5 is missing" in v.problem, v


def test_entries_reordered(logdir: Path) -> None:
    lines = _lines(logdir)
    lines[6], lines[7] = lines[7], lines[6]
    _write(logdir, lines)
    v = verify(logdir)
    assert not v.ok and v.bad_seq == 7 and "out of order" in v.problem and "entry 7" in v.problem, v


def test_entry_edited(logdir: Path) -> None:
    lines = _lines(logdir)
    doc = json.loads(lines[2])
    doc["event"]["attributes"]["image"] = "evil"
    lines[2] = json.dumps(doc).encode() + b"\n"
    _write(logdir, lines)
    v = verify(logdir)
    assert not v.ok and v.bad_seq == 3 and "entry 3 (line 3) was edited" in v.problem, v


def test_entry_edited_and_rehashed(logdir: Path) -> None:
    """Edited with its hash recomputed (and the next one's link): the signature gives it away."""
    from dockyard_provenance.journal import entry_hash

    lines = _lines(logdir)
    doc = json.loads(lines[2])
    doc["event"]["action"] = "stop"
    doc["hash"] = entry_hash(doc["seq"], doc["time"], doc["prev"], doc["event"])
    lines[2] = json.dumps(doc).encode() + b"\n"
    _write(logdir, lines)
    v = verify(logdir)
    assert not v.ok and v.bad_seq == 3 and "signature" in v.problem, v


def test_resigned_with_another_key(logdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A log rewritten whole by another key does not verify with the host's public key."""
    other = tmp_path_factory.mktemp("other")
    pub = (logdir / "lifecycle.pub").read_bytes()
    _log(other, 12)
    (other / "lifecycle.pub").write_bytes(pub)
    v = verify(other)
    assert not v.ok and v.bad_seq == 1 and "signature" in v.problem, v
    assert load_or_make_key(other)  # its own key still loads


def test_tail_truncated(logdir: Path) -> None:
    lines = _lines(logdir)
    _write(logdir, lines[:9])
    v = verify(logdir)
    assert not v.ok and v.bad_seq == 10 and "truncated" in v.problem and "entries 10 to 12" in v.problem, v


def test_head_removed_with_the_tail_is_still_caught_by_the_key(logdir: Path) -> None:
    (logdir / HEAD_NAME).write_bytes(b'{"seq": 9, "hash": "00", "sig": "AAAA"}\n')
    v = verify(logdir)
    assert not v.ok and "head" in v.problem, v
