"""``dockyard machine env``: what Docker Machine's ``env`` prints, shell by shell
(``commands/env.go``): the four variables, ``NO_PROXY`` with ``--no-proxy``, and the usage
hint (``# Run this command to configure your shell: `` -- with its trailing space -- and the
command line to ``eval``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

SHELLS = ("bash", "cmd", "emacs", "fish", "powershell", "tcsh")

#: (prefix, delimiter, suffix) per shell, for setting and for unsetting.
_SET = {
    "fish": ("set -gx ", ' "', '";\n'),
    "powershell": ("$Env:", ' = "', '"\n'),
    "cmd": ("SET ", "=", "\n"),
    "emacs": ('(setenv "', '" "', '")\n'),
    "tcsh": ("setenv ", ' "', '";\n'),
    "posix": ("export ", '="', '"\n'),
}
_UNSET = {
    "fish": ("set -e ", "", ";\n"),
    "powershell": ("Remove-Item Env:\\\\", "", "\n"),
    "cmd": ("SET ", "=", "\n"),
    "emacs": ('(setenv "', '" nil', ")\n"),
    "tcsh": ("unsetenv ", "", ";\n"),
    "posix": ("unset ", "", "\n"),
}
VARIABLES = ("DOCKER_TLS_VERIFY", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME")


def detect(environ: Mapping[str, str] | None = None) -> str:
    """The user's shell from ``$SHELL`` (Docker Machine's ``shell.Detect`` on Unix): its base
    name; sh, bash, zsh, ksh and anything unknown print POSIX ``export``."""
    env = os.environ if environ is None else environ
    name = os.path.basename(env.get("SHELL", "")) or "bash"
    return name


def _style(shell: str) -> str:
    return shell if shell in _SET else "posix"


def usage_hint(shell: str, argv: Sequence[str]) -> str:
    """``# Run this command to configure your shell: \\n# eval $(...)\\n`` for ``argv``."""
    args = list(argv)
    if args and (" " in args[0] or "\\" in args[0]):
        args[0] = f'"{args[0]}"'
    line = " ".join(args)
    comment = "#"
    style = _style(shell)
    if style == "fish":
        cmd = f"eval ({line})"
    elif style == "powershell":
        cmd = f"& {line} | Invoke-Expression"
    elif style == "cmd":
        cmd, comment = f"\t@FOR /f \"tokens=*\" %i IN ('{line}') DO @%i", "REM"
    elif style == "emacs":
        cmd, comment = f'(with-temp-buffer (shell-command "{line}" (current-buffer)) (eval-buffer))', ";;"
    elif style == "tcsh":
        cmd, comment = f"eval `{line}`", ":"
    else:
        cmd = f"eval $({line})"
    return f"{comment} Run this command to configure your shell: \n{comment} {cmd}\n"


@dataclass
class EnvValues:
    host: str = ""
    cert_path: str = ""
    machine: str = ""
    tls_verify: str = "1"
    no_proxy: tuple[str, str] | None = None  # (variable, value)


def render(shell: str, values: EnvValues, argv: Sequence[str], unset: bool = False) -> str:
    """The assignments of ``values`` (with ``unset``: their removal; values are then empty),
    then the usage hint for ``argv``."""
    prefix, delim, suffix = (_UNSET if unset else _SET)[_style(shell)]
    pairs = [("DOCKER_TLS_VERIFY", values.tls_verify), ("DOCKER_HOST", values.host),
             ("DOCKER_CERT_PATH", values.cert_path), ("DOCKER_MACHINE_NAME", values.machine)]
    if values.no_proxy is not None:
        pairs.append(values.no_proxy)
    out = "".join(f"{prefix}{k}{delim}{'' if unset else v}{suffix}" for k, v in pairs)
    return out + usage_hint(shell, argv)


def no_proxy(ip: str, environ: Mapping[str, str] | None = None, unset: bool = False) -> tuple[str, str]:
    """``NO_PROXY`` (or an existing lower-case ``no_proxy``) with ``ip`` added once."""
    env = os.environ if environ is None else environ
    var, value = "no_proxy", env.get("no_proxy", "")
    if not value:
        var, value = "NO_PROXY", env.get("NO_PROXY", "")
    if unset:
        return var, ""
    if not value:
        value = ip
    elif ip not in value:
        value = f"{value},{ip}"
    return var, value


def program_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The command line the hint repeats: ``sys.argv`` with the program as the user would type
    it (its base name when that is what ``PATH`` finds, else the path it was run by)."""
    args = list(sys.argv if argv is None else argv)
    if args:
        prog = args[0]
        base = os.path.basename(prog)
        found = shutil.which(base)
        if found and os.path.realpath(found) == os.path.realpath(prog):
            args[0] = base
    return args


def check_shell(shell: str) -> str:
    if shell not in SHELLS and shell not in ("sh", "zsh", "ksh", "dash"):
        raise InvalidArgument(f"unknown shell {shell!r}: one of {', '.join(SHELLS)}")
    return shell


__all__ = ["SHELLS", "VARIABLES", "EnvValues", "check_shell", "detect", "no_proxy", "program_argv", "render",
           "usage_hint"]
