"""``.dockerignore``: moby/patternmatcher semantics.

Patterns are read as the docker CLI reads them (``#`` comments, blank lines skipped, ``!``
exceptions, ``filepath.Clean``, a leading ``/`` dropped) and matched like Go's
``filepath.Match`` extended with ``**`` (any number of directories, even none). A pattern
that matches a directory matches everything below it; the last matching pattern wins, so a
later ``!keep.txt`` re-includes a file an earlier pattern excluded.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a "!" pattern
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def read_patterns(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` file, as the CLI's ``ignorefile.ReadAll`` gives them."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if line.startswith("/"):
                line = line.lstrip("/") or "/"
        out.append("!" + line if invert else line)
    return out


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    out.append(".*")
                else:
                    out.append("(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= n:
                raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: unterminated [")
            body = pattern[i + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


class Matcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            excl = p.startswith("!")
            body = p[1:] if excl else p
            if not body:
                raise InvalidArgument("illegal exclusion pattern: \"!\"")
            self.patterns.append(Pattern(p, excl, _compile(body)))

    @classmethod
    def from_file_text(cls, text: str) -> Matcher:
        return cls(read_patterns(text))

    def excluded(self, path: str) -> bool:
        """``MatchesOrParentMatches`` for a context-relative, slash-separated path."""
        path = posixpath.normpath(path).lstrip("/")
        parents = path.split("/")[:-1]
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            hit = pat.match(path)
            if not hit:
                for i in range(len(parents)):
                    if pat.match("/".join(parents[:i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)
