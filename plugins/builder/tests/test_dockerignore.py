"""``.dockerignore`` matching (moby/patternmatcher semantics) and its server-side application."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_builder.context import BuildContext
from dockyard_builder.dockerignore import Matcher, read_patterns


def m(*patterns: str) -> Matcher:
    return Matcher(list(patterns))


def test_read_patterns_like_the_cli() -> None:
    text = "# comment\n\n  *.tmp  \n/abs/path\n!keep.tmp\n./dir/../other/\n"
    assert read_patterns(text) == ["*.tmp", "abs/path", "!keep.tmp", "other"]


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["*.tmp"], "a.tmp", True),
    (["*.tmp"], "sub/a.tmp", False),  # * does not cross /
    (["**/*.tmp"], "sub/deep/a.tmp", True),
    (["**/*.tmp"], "a.tmp", True),  # ** matches no directory too
    (["sub/**"], "sub/x/y", True),
    (["sub"], "sub/x/y", True),  # a matching parent directory excludes its contents
    (["sub/x"], "sub", False),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["[a-c].txt"], "b.txt", True),
    (["[^a-c].txt"], "b.txt", False),
    (["[^a-c].txt"], "d.txt", True),
    (["*.tmp", "!keep.tmp"], "keep.tmp", False),
    (["*.tmp", "!keep.tmp"], "drop.tmp", True),
    (["!keep.tmp", "*.tmp"], "keep.tmp", True),  # the last matching pattern wins
    (["docs", "!docs/keep.md"], "docs/keep.md", False),
    (["docs", "!docs/keep.md"], "docs/other.md", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["**"], "anything/at/all", True),
])
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert m(*patterns).excluded(path) is excluded


def test_context_applies_dockerignore_and_keeps_reading_the_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / ".dockerignore").write_text("secret\n**/*.log\nDockerfile\n!logs/keep.log\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("k")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("a")
    (tmp_path / "logs" / "keep.log").write_text("k")
    (tmp_path / "app.py").write_text("print()")
    (tmp_path / "secret-link").symlink_to("secret")  # a link to a directory, excluded by name
    (tmp_path / ".dockerignore").write_text("secret\nsecret-link\n**/*.log\nDockerfile\n!logs/keep.log\n")
    ctx = BuildContext.open(tmp_path)
    assert ctx.dockerfile_text == "FROM busybox\n"
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == [".dockerignore", "app.py", "logs", "logs/keep.log"]


def test_excluded_directories_and_links_without_exceptions(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / ".dockerignore").write_text("build\nlinked\n")
    (tmp_path / "build" / "deep").mkdir(parents=True)
    (tmp_path / "build" / "deep" / "x").write_text("x")
    (tmp_path / "kept").mkdir()
    (tmp_path / "linked").symlink_to("kept")
    BuildContext.open(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == [".dockerignore", "Dockerfile", "kept"]
