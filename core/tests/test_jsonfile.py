"""RecordDir: one JSON document per ID, written atomically, read back as the dataclass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.jsonfile import RecordDir, write_json


@dataclass
class Rec:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


def test_save_load_all_count_remove(tmp_path: Path) -> None:
    d = RecordDir(tmp_path / "hosts", Rec)
    assert d.all() == [] and d.count() == 0 and d.load("a") is None
    d.save(Rec("a", "h1", {"k": "v"}))
    d.save(Rec("b", "h2"))
    assert d.load("a") == Rec("a", "h1", {"k": "v"})
    assert [r.name for r in d.all()] == ["h1", "h2"] and d.count() == 2
    assert not list((tmp_path / "hosts").glob("*.tmp"))
    d.remove("a")
    d.remove("a")  # removing twice is no error
    assert [r.id for r in d.all()] == ["b"]


def test_unreadable_records(tmp_path: Path) -> None:
    d = RecordDir(tmp_path, Rec)
    d.save(Rec("good", "h"))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"id": "other", "unknown": 1}')
    assert [r.id for r in d.all()] == ["good"]  # listing skips what does not read back
    with pytest.raises(ValueError):
        d.load("bad")
    assert RecordDir(tmp_path, Rec, lenient=True).load("bad") is None
    assert RecordDir(tmp_path, Rec, lenient=True).load("other") is None


def test_writers_in_two_threads_do_not_share_a_temporary_file(tmp_path: Path) -> None:
    """Two threads replacing the same file at once (drivers write through asyncio.to_thread):
    each rename moves its own complete document, and nothing temporary is left."""
    import threading

    path = tmp_path / "state.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                write_json(path, {"writer": n, "i": i, "pad": "x" * 4096})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
