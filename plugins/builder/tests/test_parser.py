"""Dockerfile parsing: lines, directives, flags, forms, stages; errors name the line."""

from __future__ import annotations

import pytest

from dockyard_builder.parser import DockerfileError, parse, parse_kv, split_lines, split_words


def test_continuations_comments_and_empty_lines_inside_an_instruction() -> None:
    text = "FROM busybox\nRUN echo a \\\n  # a comment in the middle\n\n    && echo b\nCMD x\n"
    df = parse(text)
    run, cmd = df.stages[0].instructions
    assert run.keyword == "RUN" and run.line == 2
    assert run.rest == "echo a     && echo b"
    assert run.original == "RUN echo a     && echo b"
    assert cmd.line == 6


def test_escape_directive_changes_the_continuation_character() -> None:
    text = "# escape=`\nFROM busybox\nRUN echo C:\\path `\n  done\n"
    escape, lines = split_lines(text)
    assert escape == "`"
    assert lines[1] == (3, "RUN echo C:\\path   done")


def test_syntax_directive_is_ignored_and_directives_stop_at_the_first_other_line() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=\\\nFROM busybox\n")
    assert df.escape == "\\" and df.stages[0].base == "busybox"
    # after a comment that is not a directive, "# escape=`" is just a comment
    assert parse("# hello\n# escape=`\nFROM busybox\n").escape == "\\"


def test_bad_escape_directive() -> None:
    with pytest.raises(DockerfileError, match="line 1: invalid escape token"):
        parse("# escape=x\nFROM busybox\n")


def test_exec_and_shell_forms() -> None:
    df = parse('FROM busybox\nCMD ["echo", "a b"]\nCMD echo "a b"\nRUN [not json\n')
    exec_, shell, broken = df.stages[0].instructions
    assert exec_.exec_form == ["echo", "a b"]
    assert shell.exec_form is None and shell.rest == 'echo "a b"'
    assert broken.exec_form is None  # not valid JSON: the shell form


def test_flags_are_parsed_and_unknown_ones_refused() -> None:
    df = parse("FROM --platform=linux/amd64 busybox AS b\nCOPY --from=b --chown=1:2 --chmod=0644 a /b\n")
    st = df.stages[0]
    assert st.platform == "linux/amd64" and st.name == "b"
    assert st.instructions[0].flags == {"from": "b", "chown": "1:2", "chmod": "0644"}
    assert st.instructions[0].rest == "a /b"
    with pytest.raises(DockerfileError, match="line 2: unknown flag: bogus"):
        parse("FROM busybox\nCOPY --bogus=1 a b\n")
    with pytest.raises(DockerfileError, match="line 2: .*requires BuildKit"):
        parse("FROM busybox\nRUN --mount=type=cache,target=/x true\n")


def test_errors_name_the_line() -> None:
    with pytest.raises(DockerfileError, match=r"^dockerfile parse error line 3: unknown instruction: FOO"):
        parse("FROM busybox\n\nfoo bar\n")
    with pytest.raises(DockerfileError, match="line 2: COPY requires at least two arguments"):
        parse("FROM busybox\nCOPY onlyone\n")
    with pytest.raises(DockerfileError, match="line 1: FROM requires either one or three arguments"):
        parse("FROM a b\n")
    with pytest.raises(DockerfileError, match="line 2: Chaining ONBUILD"):
        parse("FROM busybox\nONBUILD ONBUILD RUN x\n")
    with pytest.raises(DockerfileError, match="line 2: FROM isn't allowed as an ONBUILD trigger"):
        parse("FROM busybox\nONBUILD FROM x\n")
    with pytest.raises(DockerfileError, match="line 1: no build stage in current context"):
        parse("RUN true\nFROM busybox\n")
    with pytest.raises(DockerfileError, match="line 2: duplicate name 'a'"):
        parse("FROM busybox AS a\nFROM busybox AS A\n")
    with pytest.raises(DockerfileError, match="line 2: SHELL requires the arguments to be in JSON form"):
        parse("FROM busybox\nSHELL /bin/bash -c\n")
    with pytest.raises(DockerfileError, match="line 2: Unknown type 'FOO' in HEALTHCHECK"):
        parse("FROM busybox\nHEALTHCHECK FOO x\n")
    with pytest.raises(DockerfileError, match="file with no instructions"):
        parse("# only a comment\n")
    with pytest.raises(DockerfileError, match="no FROM instruction"):
        parse("ARG A=1\n")


def test_stages_meta_args_and_onbuild() -> None:
    df = parse("ARG BASE=busybox\nFROM $BASE AS Build\nONBUILD RUN echo hi\nFROM build\n")
    assert [a.rest for a in df.meta_args] == ["BASE=busybox"]
    assert [s.name for s in df.stages] == ["build", ""]
    assert df.stage_index("BUILD") == 0 and df.stage_index("1") == 1 and df.stage_index("nope") is None
    onbuild = df.stages[0].instructions[0]
    assert onbuild.inner is not None and onbuild.inner.keyword == "RUN" and onbuild.inner.rest == "echo hi"


def test_env_and_label_pairs() -> None:
    assert parse_kv('A=1 B="x y" C=\'z\'', "ENV", 1) == [("A", "1"), ("B", '"x y"'), ("C", "'z'")]
    assert parse_kv("NAME some value here", "ENV", 1) == [("NAME", "some value here")]
    with pytest.raises(DockerfileError, match="line 4: Syntax error - can't find ="):
        parse_kv("A=1 B", "LABEL", 4)
    assert split_words('a "b c" d\\ e') == ["a", '"b c"', "d\\ e"]
