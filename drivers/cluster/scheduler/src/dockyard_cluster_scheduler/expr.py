"""Swarm classic's placement expressions: ``KEY==VALUE``, ``KEY!=VALUE``, soft ``==~`` / ``!=~``.

As ``docker/swarm`` ``scheduler/filter/expr.go``: the key is ``[a-z_][a-z0-9-_.]+`` (case
insensitive, compared in lower case), the first operator found (``==`` before ``!=``) splits
it, and a ``~`` right after the operator makes it soft. The value is a literal, a glob (``*``
matches any run of characters: ``us*``) or a regular expression between slashes
(``/node-[12]/``, ``/(?i)node1/``; unanchored, as Go's ``regexp.MatchString``). A value matches when it matches any of the strings it is
given (a node's name and ID, every container on a node...); ``!=`` is the negation of that.

Two deliberate differences: characters other than ``*`` in a glob are literal (Swarm pasted
them into a regexp unescaped, so ``us.east`` matched ``us-east``), and a regexp that does not
compile is an error at once (Swarm logged it and matched nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from dockyard.errors import InvalidArgument

OPERATORS = ("==", "!=")
_KEY = re.compile(r"[a-z_][a-z0-9\-_.]+", re.IGNORECASE)
# Swarm's value alphabet (expr.go), plus the braces and comma of regexp repetitions.
_VALUE = re.compile(r"[a-z0-9:\-_\s.*/()?+\[\]\\^$|{},@=!]+", re.IGNORECASE)


@dataclass(frozen=True)
class Expr:
    """One parsed expression. ``text`` is what the user wrote (after the ``constraint:``)."""

    key: str
    op: str
    value: str
    soft: bool
    text: str
    pattern: re.Pattern[str] | None  # None for a literal
    literal: bool  # the value is matched exactly (neither a glob nor a regexp)

    def match(self, *whats: str) -> bool:
        """Whether the expression holds over ``whats`` (``==``: one matches; ``!=``: none)."""
        if self.literal:
            hit = self.value in whats
        else:
            search = self.pattern.search  # type: ignore[union-attr]
            hit = any(search(w) is not None for w in whats)
        return hit if self.op == "==" else not hit


def _is_regexp(value: str) -> bool:
    return len(value) >= 2 and value[0] == "/" and value[-1] == "/"


def parse(text: str, kind: str = "constraint") -> Expr:
    """Parse one expression; InvalidArgument names what is wrong (``kind`` names it)."""
    return _parse(text, kind)


@lru_cache(maxsize=4096)
def _parse(text: str, kind: str) -> Expr:
    for op in OPERATORS:
        key, sep, value = text.partition(op)
        if sep:
            break
    else:
        raise InvalidArgument(f"{kind} {text!r}: one of the operators ==, != is expected ({kind}:KEY==VALUE)")
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise InvalidArgument(f"{kind} {text!r}: invalid key {key!r} (letters, digits, '-', '_', '.'; "
                              "at least two characters, not starting with a digit)")
    soft = value.startswith("~")
    if soft:
        value = value[1:]
    if not value or not _VALUE.fullmatch(value):
        raise InvalidArgument(f"{kind} {text!r}: invalid value {value!r}")
    pattern = None
    if _is_regexp(value):
        try:
            pattern = re.compile(value[1:-1])
        except re.error as e:
            raise InvalidArgument(f"{kind} {text!r}: invalid regular expression {value}: {e}") from e
    elif "*" in value:
        pattern = re.compile(r"\A" + ".*".join(re.escape(part) for part in value.split("*")) + r"\Z", re.DOTALL)
    return Expr(key.lower(), op, value, soft, text, pattern, pattern is None)


def parse_all(texts: list[str], kind: str) -> list[Expr]:
    return [parse(t, kind) for t in texts]
