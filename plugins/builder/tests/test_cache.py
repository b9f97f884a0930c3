"""Cache keys and the persisted index; context digests (what invalidates a COPY)."""

from __future__ import annotations

import os
from pathlib import Path

from dockyard_builder.cache import BuildCache, step_key
from dockyard_builder.context import file_digests, tree_digest


def test_step_key_depends_on_parent_instruction_and_inputs() -> None:
    base = step_key("sha256:p1", "RUN [\"true\"]", ["a=1"])
    assert base == step_key("sha256:p1", "RUN [\"true\"]", ["a=1"])
    assert base != step_key("sha256:p2", "RUN [\"true\"]", ["a=1"])
    assert base != step_key("sha256:p1", "RUN [\"false\"]", ["a=1"])
    assert base != step_key("sha256:p1", "RUN [\"true\"]", ["a=2"])
    assert base != step_key("sha256:p1", "RUN [\"true\"]", [])
    # no ambiguity from joining: ("ab", "c") differs from ("a", "bc")
    assert step_key("p", "ab", ["c"]) != step_key("p", "a", ["bc"])


def test_index_persists_and_forgets_removed_images(tmp_path: Path) -> None:
    db = tmp_path / "builder" / "cache.db"
    live = {"sha256:img1", "sha256:img2"}
    c = BuildCache(db)
    assert c.get("k1", live.__contains__) is None
    c.put("k1", "sha256:img1")
    c.put("k2", "sha256:img2")
    again = BuildCache(db)  # a new daemon reads the same index
    assert again.get("k1", live.__contains__) == "sha256:img1"
    live.discard("sha256:img1")
    assert again.get("k1", live.__contains__) is None
    assert len(again) == 1  # the stale entry was dropped
    live.discard("sha256:img2")
    assert again.prune(live.__contains__) == 1 and len(again) == 0


def test_tree_digest_covers_content_mode_and_names_not_mtime(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f.txt"
    f.write_text("one")
    first = tree_digest(tmp_path, "d")
    os.utime(f, (1, 1))
    assert tree_digest(tmp_path, "d") == first  # touch alone: same (as tarsum)
    f.write_text("two")
    second = tree_digest(tmp_path, "d")
    assert second != first
    f.chmod(0o700)
    third = tree_digest(tmp_path, "d")
    assert third != second
    f.rename(tmp_path / "d" / "g.txt")
    assert tree_digest(tmp_path, "d") != third
    (tmp_path / "d" / "link").symlink_to("g.txt")
    files = file_digests(tmp_path, "d")
    assert sorted(files) == ["d/g.txt", "d/link"]
    import hashlib

    assert files["d/g.txt"] == "sha256:" + hashlib.sha256(b"two").hexdigest()  # plain content digests
    assert files["d/link"] == "sha256:" + hashlib.sha256(b"g.txt").hexdigest()
