"""The frozen window's breakdown a migration reports: the steps from both sides' marks, in
order, a step missing from one side skipped (no container needed)."""

from __future__ import annotations

from dockyard_migrate.source import window


def test_the_window_is_cut_at_each_sides_marks() -> None:
    t = 1000.0
    ours = {"freeze": t, "dump": t + 0.2, "archive": t + 0.21, "volumes": t + 0.21, "released": t + 0.21,
            "commit": t + 0.215, "restored": t + 0.45, "committed": t + 0.452, "done": t + 0.4521}
    theirs = {"archive": t + 0.214, "commit": t + 0.22, "restored": t + 0.449}
    got = window(ours, theirs)
    assert list(got) == ["dump", "archive", "volumes", "release", "to target", "restore", "to source", "commit", "done"]
    assert round(got["dump"]) == 200 and round(got["to target"]) == 10 and round(got["restore"]) == 229
    assert round(got["to source"]) == 1 and round(sum(got.values())) == 452


def test_an_older_target_without_marks_leaves_its_steps_out() -> None:
    got = window({"freeze": 10.0, "dump": 10.1, "archive": 10.2, "done": 10.5}, {})
    assert list(got) == ["dump", "archive", "done"] and round(got["done"]) == 300
