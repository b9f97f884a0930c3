"""Variable substitution per buildkit's shell lexer."""

from __future__ import annotations

import pytest

from dockyard_builder.shell import Lexer, SubstitutionError

ENV = {"A": "alpha", "EMPTY": "", "SP": "x  y"}


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "alpha"),
    ("${A}", "alpha"),
    ("pre${A}post", "prealphapost"),
    ("$A.txt", "alpha.txt"),
    ("$UNSET", ""),
    ("${UNSET:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),  # set (even empty) without the colon: no default
    ("${UNSET-dflt}", "dflt"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${UNSET:-$A}", "alpha"),  # nested expansion in the word
    ("${UNSET:-a b}", "a b"),
    ("'$A'", "$A"),  # single quotes: literal
    ('"$A b"', "alpha b"),
    ('"\\$A"', "$A"),
    ("\\$A", "$A"),
    ('a\\ b', "a b"),
    ('"q\\"q"', 'q"q'),
    ("$", "$"),
    ("cost $5", "cost "),  # $5 is a (positional) name
    ("${A:?must be set}", "alpha"),
])
def test_process_word(word: str, expected: str) -> None:
    assert Lexer().process_word(word, ENV) == expected


def test_required_variable_errors() -> None:
    with pytest.raises(SubstitutionError, match="UNSET: must be set"):
        Lexer().process_word("${UNSET:?must be set}", ENV)
    with pytest.raises(SubstitutionError, match="EMPTY"):
        Lexer().process_word("${EMPTY:?}", ENV)
    assert Lexer().process_word("${EMPTY?}", ENV) == ""


def test_malformed() -> None:
    with pytest.raises(SubstitutionError):
        Lexer().process_word("${A", ENV)
    with pytest.raises(SubstitutionError):
        Lexer().process_word("'open", ENV)
    with pytest.raises(SubstitutionError, match="unsupported modifier"):
        Lexer().process_word("${A/x/y}", ENV)


def test_backtick_escape() -> None:
    lx = Lexer("`")
    assert lx.process_word("C:\\dir `$A", ENV) == "C:\\dir $A"


def test_process_words_splits_unquoted_expansions() -> None:
    lx = Lexer()
    assert lx.process_words("80 $SP '8 9'", ENV) == ["80", "x", "y", "8 9"]
    assert lx.process_words('"$SP"', ENV) == ["x  y"]
    assert lx.process_words("a$SP", ENV) == ["ax", "y"]
