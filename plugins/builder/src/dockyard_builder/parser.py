"""Dockerfile parsing: lines, directives, flags, exec and shell forms, stages.

Our own parser rather than dockerfile-parse: that library keeps no flag structure, treats the
``# escape=`` directive loosely and has no notion of stages or ONBUILD's nested instruction,
all of which the builder needs with the line each came from. Semantics follow moby/buildkit's
``frontend/dockerfile/parser`` and ``instructions``:

- parser directives (``# escape=`` and ``# syntax=``, the latter ignored) only at the very top;
- comment lines are dropped, also in the middle of a continued instruction, as are empty lines
  there; an instruction continues while a line ends with the escape character, and the pieces are
  joined without the escape character (``original`` is what ``Step n/m :`` shows);
- ``--flag=value`` options at the start of FROM, COPY, ADD, RUN and HEALTHCHECK;
- a JSON array of strings is the exec form, anything else the shell form;
- ARG before the first FROM are the global (meta) ARGs, usable in FROM lines only.

Every error names its line: ``dockerfile parse error line 3: unknown instruction: FOO``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})

#: Flags each instruction accepts (name -> takes a value).
FLAGS: dict[str, dict[str, bool]] = {
    "FROM": {"platform": True},
    "COPY": {"from": True, "chown": True, "chmod": True, "link": False},
    "ADD": {"chown": True, "chmod": True, "link": False, "checksum": True, "keep-git-dir": False},
    "RUN": {"mount": True, "network": True, "security": True},
    "HEALTHCHECK": {"interval": True, "timeout": True, "start-period": True, "start-interval": True,
                    "retries": True},
}

_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG_RE = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?(?=\s|$)")
_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_.]*$")


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.detail = message
        super().__init__(f"dockerfile parse error line {line}: {message}" if line else
                         f"dockerfile parse error: {message}")


@dataclass
class Instruction:
    keyword: str  # upper case
    original: str  # the instruction as written, continuations joined
    rest: str  # the arguments after the flags
    line: int
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # a JSON array argument
    inner: Instruction | None = None  # ONBUILD's instruction

    @property
    def args_text(self) -> str:
        return self.rest


@dataclass
class Stage:
    index: int
    base: str  # as written (may hold $ARGs)
    name: str  # lower-cased alias, "" if none
    platform: str
    line: int
    from_instr: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    escape: str
    meta_args: list[Instruction]
    stages: list[Stage]

    def stage_index(self, name: str) -> int | None:
        """The index of the stage named ``name`` (case-insensitive), or of stage number ``name``."""
        low = name.lower()
        for st in self.stages:
            if st.name and st.name == low:
                return st.index
        if low.isdigit() and int(low) < len(self.stages):
            return int(low)
        return None


def split_lines(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The escape character and the logical lines ``(first line number, text)``."""
    lines = text.replace("\r\n", "\n").split("\n")
    escape = "\\"
    i = 0
    seen: set[str] = set()
    while i < len(lines):
        m = _DIRECTIVE_RE.match(lines[i].strip())
        if not m:
            break
        name, value = m.group(1).lower(), m.group(2)
        if name not in ("escape", "syntax", "check"):
            break
        if name in seen:
            raise DockerfileError(i + 1, f"only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(i + 1, f"invalid escape token '{value}' does not match ` or \\")
            escape = value
        i += 1
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for idx in range(i, len(lines)):
        raw = lines[idx]
        stripped = raw.strip()
        if not parts:
            if not stripped or stripped.startswith("#"):
                continue
            start = idx + 1
            line = raw.strip()
        else:
            if not stripped or stripped.startswith("#"):
                continue
            line = raw.rstrip()
        if line.rstrip(" \t").endswith(escape):
            parts.append(line.rstrip(" \t")[:-1])
            continue
        parts.append(line)
        out.append((start, "".join(parts)))
        parts = []
    if parts:
        out.append((start, "".join(parts)))
    return escape, out


def parse_instruction(text: str, line: int, escape: str = "\\", nested: bool = False) -> Instruction:
    m = re.match(r"(\S+)\s*(.*)$", text, re.S)
    if not m:
        raise DockerfileError(line, "empty instruction")
    keyword, rest = m.group(1).upper(), m.group(2)
    if keyword not in INSTRUCTIONS:
        raise DockerfileError(line, f"unknown instruction: {keyword}")
    flags: dict[str, str] = {}
    allowed = FLAGS.get(keyword, {})
    if allowed:
        while True:
            fm = _FLAG_RE.match(rest)
            if not fm:
                break
            name, value = fm.group(1).lower(), fm.group(2)
            if name not in allowed:
                raise DockerfileError(line, f"unknown flag: {name}")
            if allowed[name] and value is None:
                raise DockerfileError(line, f"missing a value on flag: {name}")
            if name in flags and name != "mount":
                raise DockerfileError(line, f"duplicate flag specified: {name}")
            flags[name] = "true" if value is None else value
            rest = rest[fm.end():].lstrip()
    inst = Instruction(keyword=keyword, original=text, rest=rest.strip(), line=line, flags=flags)
    stripped = inst.rest
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            inst.exec_form = value
    _validate(inst, escape, nested)
    return inst


def _validate(inst: Instruction, escape: str, nested: bool) -> None:
    kw, rest, line = inst.keyword, inst.rest, inst.line
    if kw == "ONBUILD":
        if not rest:
            raise DockerfileError(line, "ONBUILD requires at least one argument")
        inner = parse_instruction(rest, line, escape, nested=True)
        if inner.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            what = "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed" if inner.keyword == "ONBUILD" \
                else f"{inner.keyword} isn't allowed as an ONBUILD trigger"
            raise DockerfileError(line, what)
        inst.inner = inner
        return
    if kw in ("CMD", "ENTRYPOINT"):
        return  # an empty CMD / ENTRYPOINT resets it
    if kw == "SHELL":
        if inst.exec_form is None or not inst.exec_form:
            raise DockerfileError(line, "SHELL requires the arguments to be in JSON form")
        return
    if not rest:
        raise DockerfileError(line, f"{kw} requires at least one argument")
    if kw in ("COPY", "ADD"):
        n = len(inst.exec_form) if inst.exec_form is not None else len(rest.split())
        if n < 2:
            raise DockerfileError(line, f"{kw} requires at least two arguments, but only one was provided. "
                                  "Destination could not be determined.")
        if inst.flags.get("from") and kw == "COPY" and not inst.flags["from"]:
            raise DockerfileError(line, "--from needs a stage or image name")
    elif kw == "RUN" and "mount" in inst.flags:
        raise DockerfileError(line, "the --mount option requires BuildKit, which dockyard's classic builder "
                              "does not implement")
    elif kw == "HEALTHCHECK":
        word = rest.split(None, 1)[0].upper()
        if word not in ("NONE", "CMD"):
            raise DockerfileError(line, f"Unknown type {word!r} in HEALTHCHECK (try CMD)")
        if word == "NONE" and (len(rest.split()) > 1 or inst.flags):
            raise DockerfileError(line, "HEALTHCHECK NONE takes no arguments")
        if word == "CMD" and len(rest.split(None, 1)) < 2:
            raise DockerfileError(line, "Missing command after HEALTHCHECK CMD")
    elif kw == "FROM":
        words = rest.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise DockerfileError(line, "FROM requires either one or three arguments")
        if len(words) == 3 and not _STAGE_NAME_RE.match(words[2].lower()):
            raise DockerfileError(line, f"invalid name for build stage: {words[2]!r}, name can't start "
                                  "with a number or contain symbols")
    elif kw in ("ENV", "LABEL"):
        parse_kv(rest, kw, line, escape)
    elif kw == "ARG":
        for w in split_words(rest, escape):
            name = w.split("=", 1)[0]
            if not name:
                raise DockerfileError(line, "ARG names can not be blank")


def split_words(text: str, escape: str = "\\") -> list[str]:
    """buildkit's ``parseWords``: split on whitespace outside quotes; quotes and escapes are kept."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank = True
    i = 0
    while i < len(text):
        ch = text[i]
        if blank:
            if ch.isspace():
                i += 1
                continue
            blank = False
        if ch.isspace() and not quote:
            words.append("".join(word))
            word = []
            blank = True
            i += 1
            continue
        if ch == escape and i + 1 < len(text) and quote != "'":
            word.append(ch)
            word.append(text[i + 1])
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in ("'", '"'):
            quote = ch
        word.append(ch)
        i += 1
    if not blank:
        words.append("".join(word))
    return words


def parse_kv(rest: str, keyword: str, line: int, escape: str = "\\") -> list[tuple[str, str]]:
    """ENV/LABEL ``key=value ...`` (or the legacy ``key value``), values still quoted/unexpanded."""
    words = split_words(rest, escape)
    if not words:
        raise DockerfileError(line, f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise DockerfileError(line, f"{keyword} must have two arguments")
        return [(parts[0], parts[1].strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise DockerfileError(line, f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        k, v = w.split("=", 1)
        if not k:
            raise DockerfileError(line, f"{keyword} names can not be blank")
        out.append((k, v))
    return out


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile into global ARGs and stages (raises :class:`DockerfileError`)."""
    escape, lines = split_lines(text)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for line_no, body in lines:
        inst = parse_instruction(body, line_no, escape)
        if inst.keyword == "FROM":
            words = inst.rest.split()
            name = words[2].lower() if len(words) == 3 else ""
            if name and any(s.name == name for s in stages):
                raise DockerfileError(line_no, f"duplicate name {name!r} for build stage")
            stages.append(Stage(index=len(stages), base=words[0], name=name,
                                platform=inst.flags.get("platform", ""), line=line_no, from_instr=inst))
        elif not stages:
            if inst.keyword != "ARG":
                raise DockerfileError(line_no, f"no build stage in current context: {inst.keyword} "
                                      "before the first FROM")
            meta.append(inst)
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise DockerfileError(0, "file with no instructions" if not lines else "no FROM instruction")
    return Dockerfile(escape=escape, meta_args=meta, stages=stages)
