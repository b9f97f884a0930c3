"""upstart jobs, checked by a parser of upstart's stanza grammar (init(5) of upstart 1.x).

upstart itself is not available here: Debian dropped it after jessie and this machine boots
nothing with it, so no job runs for real. The parser refuses unknown stanzas, wrong arities,
unbalanced ``start on`` expressions and unterminated script blocks; the tests check the stanzas
dockyardd and a container service need."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from dockyard.specs.supervisor import ContainerUnit, DaemonUnit
from dockyard_supervisor_upstart.backend import Upstart

#: stanza -> (minimum, maximum) number of words after it (None: any)
STANZAS = {"description": (1, 1), "author": (1, 1), "version": (1, 1), "usage": (1, 1), "emits": (1, None),
           "start": (2, None), "stop": (2, None), "respawn": (0, 3), "normal": (2, None), "kill": (2, 2),
           "limit": (3, 3), "env": (1, 1), "export": (1, 1), "exec": (1, None), "expect": (1, 1),
           "console": (1, 1), "setuid": (1, 1), "setgid": (1, 1), "chdir": (1, 1), "chroot": (1, 1),
           "umask": (1, 1), "nice": (1, 1), "oom": (2, 2), "task": (0, 0), "manual": (0, 0), "instance": (1, None),
           "post-stop": (1, None), "pre-start": (1, None), "post-start": (1, None), "pre-stop": (1, None),
           "script": (0, 0)}
SIGNALS = {"SIGTERM", "SIGINT", "SIGQUIT", "SIGKILL", "SIGHUP", "SIGUSR1", "SIGUSR2", "TERM", "INT", "KILL", "HUP"}


def parse(text: str) -> dict[str, list[list[str]]]:
    """Stanzas and their words; ``script`` blocks as one word (their body, checked with sh -n)."""
    out: dict[str, list[list[str]]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        while words and words[0] in ("start", "stop") and words.count("(") + "".join(words).count("(") and \
                "".join(words).count("(") > "".join(words).count(")"):
            assert i < len(lines), "unbalanced parentheses in an event expression"
            words += shlex.split(lines[i], comments=True)
            i += 1
        name, args = words[0], words[1:]
        assert name in STANZAS, f"unknown stanza {name!r}"
        lo, hi = STANZAS[name]
        if name in ("pre-start", "post-start", "pre-stop", "post-stop") and args == ["script"]:
            name, args = f"{name} script", []
        if name == "script" or name.endswith(" script"):
            body = []
            while i < len(lines) and lines[i].strip() != "end script":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{name}: no 'end script'"
            i += 1
            res = subprocess.run(["sh", "-n"], input="\n".join(body), text=True, capture_output=True)
            assert res.returncode == 0, f"{name} body: {res.stderr}"
            args = ["\n".join(body)]
        else:
            assert lo <= len(args) and (hi is None or len(args) <= hi), f"{name}: {len(args)} arguments"
        if name in ("start", "stop"):
            assert args[0] == "on", f"{name} {args[0]!r}: expected 'on'"
            expr = " ".join(args[1:])
            assert expr.count("(") == expr.count(")"), f"unbalanced: {expr}"
        if name == "kill":
            assert (args[0] == "timeout" and args[1].isdigit()) or (args[0] == "signal" and args[1] in SIGNALS), args
        if name == "respawn" and args:
            assert args[0] == "limit" and (args[1:] == ["unlimited"] or all(a.isdigit() for a in args[1:])), args
        if name == "env":
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", args[0]), args
        if name == "normal":
            assert args[0] == "exit", args
        out.setdefault(name, []).append(args)
    return out


def test_daemon_job() -> None:
    (f,) = Upstart().daemon_files(DaemonUnit(environment=(("HTTP_PROXY", "http://p:3128"),), stop_timeout=25))
    assert f.path == "dockyard.conf"
    job = parse(f.text)
    assert job["respawn"] == [[], ["limit", "5", "60"]]
    assert ["timeout", "25"] in job["kill"] and ["signal", "SIGTERM"] in job["kill"]
    assert "expect" not in job  # dockyardd stays in the foreground
    assert job["start"][0][1:] == ["(local-filesystems", "and", "net-device-up", "IFACE!=lo)"]
    assert job["stop"] == [["on", "runlevel", "[!2345]"]]
    assert job["env"] == [["HTTP_PROXY=http://p:3128"]]
    assert "exec /usr/bin/dockyardd -H unix:///run/dockyard/dockyard.sock --pidfile /run/dockyard/dockyardd.pid" \
        in job["script"][0][0]


@pytest.mark.parametrize(("restart", "respawn", "normal"), [("on-failure", True, True), ("always", True, False),
                                                            ("no", False, False)])
def test_container_job(restart: str, respawn: bool, normal: bool) -> None:
    (f,) = Upstart().container_files(ContainerUnit("container-web", "web", ("/usr/bin/dockyard", "supervise", "web"),
                                                   restart=restart, stop_timeout=5))
    job = parse(f.text)
    assert job["start"] == [["on", "started", "dockyard"]]
    assert job["stop"] == [["on", "runlevel", "[!2345]"]]  # never with the daemon
    assert ("respawn" in job) is respawn and ("normal" in job) is normal
    assert ["timeout", "20"] in job["kill"]


def test_the_parser_refuses_what_upstart_refuses() -> None:
    for bad in ("respawnn\n", "kill timeout x\n", "start on (a and b\n", "script\necho hi\n", "env 1A=b\n"):
        with pytest.raises(AssertionError):
            parse(bad)
