"""Variable substitution in Dockerfile words, after moby/buildkit's ``shell/lex.go``.

``process_word`` expands ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``,
``${VAR:+word}``, ``${VAR+word}``, ``${VAR:?message}`` and ``${VAR?message}`` and removes
quotes: single quotes keep everything literal, double quotes keep whitespace but expand, the
escape character (``\\`` or the ``# escape=`` one) escapes the next character outside quotes and
only ``"``, ``$`` and itself inside double quotes. ``process_words`` also splits the result into
words on unquoted whitespace (EXPOSE and the like).
"""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.errors import InvalidArgument


class SubstitutionError(InvalidArgument):
    """A ``${VAR?message}`` on an unset variable, or a malformed ``${...}``."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


class Lexer:
    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    # ------------------------------------------------------------------ public
    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self._stop_on(_Scanner(word), dict(env), "")

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        words, _ = self._process(word, env, split=True)
        return words

    # ------------------------------------------------------------------ internals
    def _process(self, word: str, env: Mapping[str, str], split: bool = False) -> tuple[list[str], None]:
        sc = _Scanner(word)
        env = dict(env)
        words: list[str] = []
        current: list[str] = []
        in_word = False

        def flush() -> None:
            nonlocal in_word
            if in_word:
                words.append("".join(current))
            current.clear()
            in_word = False

        while sc.peek():
            ch = sc.peek()
            if ch in " \t\n\r":
                sc.next()
                flush()
                continue
            if ch == "'":
                in_word = True
                current.append(self._single(sc))
            elif ch == '"':
                in_word = True
                current.append(self._double(sc, env))
            elif ch == "$":
                value = self._dollar(sc, env)
                # an unquoted expansion splits on whitespace
                parts = value.split()
                if not parts:
                    continue
                if value[:1].isspace():
                    flush()
                for i, p in enumerate(parts):
                    if i:
                        flush()
                    in_word = True
                    current.append(p)
                if value[-1:].isspace():
                    flush()
            elif ch == self.escape:
                sc.next()
                nxt = sc.next()
                in_word = True
                current.append(nxt)
            else:
                in_word = True
                current.append(sc.next())
        flush()
        return words, None

    def _stop_on(self, sc: _Scanner, env: dict[str, str], stop: str) -> str:
        out: list[str] = []
        while sc.peek():
            ch = sc.peek()
            if stop and ch == stop:
                sc.next()
                return "".join(out)
            if ch == "'":
                out.append(self._single(sc))
            elif ch == '"':
                out.append(self._double(sc, env))
            elif ch == "$":
                out.append(self._dollar(sc, env))
            elif ch == self.escape:
                sc.next()
                nxt = sc.next()
                if not nxt:
                    break
                out.append(nxt)
            else:
                out.append(sc.next())
        if stop:
            raise SubstitutionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def _single(self, sc: _Scanner) -> str:
        sc.next()  # '
        out: list[str] = []
        while True:
            ch = sc.next()
            if not ch:
                raise SubstitutionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self, sc: _Scanner, env: dict[str, str]) -> str:
        sc.next()  # "
        out: list[str] = []
        while True:
            ch = sc.peek()
            if not ch:
                raise SubstitutionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                sc.next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar(sc, env))
                continue
            sc.next()
            if ch == self.escape and sc.peek() in ('"', "$", self.escape) and sc.peek():
                ch = sc.next()
            out.append(ch)

    def _dollar(self, sc: _Scanner, env: dict[str, str]) -> str:
        sc.next()  # $
        if sc.peek() != "{":
            name = self._name(sc)
            if not name:
                return "$"
            return env.get(name, "")
        sc.next()  # {
        name = self._name(sc)
        if not name:
            raise SubstitutionError("bad substitution: missing variable name after ${")
        ch = sc.peek()
        if ch == "}":
            sc.next()
            return env.get(name, "")
        colon = False
        if ch == ":":
            colon = True
            sc.next()
            ch = sc.peek()
        if ch in ("-", "+", "?"):
            sc.next()
            word = self._stop_on(sc, env, "}")
            is_set = name in env
            value = env.get(name, "")
            present = (is_set and value != "") if colon else is_set
            if ch == "-":
                return value if present else word
            if ch == "+":
                return word if present else ""
            if not present:
                raise SubstitutionError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        raise SubstitutionError(f"unsupported modifier ({ch or 'end of word'}) in substitution ${{{name}...}}")

    @staticmethod
    def _name(sc: _Scanner) -> str:
        ch = sc.peek()
        if ch.isdigit():
            sc.next()
            return ch
        out = []
        while sc.peek() and (sc.peek().isalnum() or sc.peek() == "_"):
            out.append(sc.next())
        return "".join(out)
