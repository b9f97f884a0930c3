"""The command line's fast path: a plugin command that runs without click.

``dockyard run --rm busybox true`` must cost little more than the interpreter's start (issue 21
item 10): click, the registry and the API client cost about 40 ms of imports on a quiet machine
before the first request. So, before click is imported, :func:`dispatch` looks the command up in
the registry's records file (:mod:`dockyard.entrycache`; a missing or stale file means the
normal path, which scans and writes it). When exactly one installed distribution provides the
command and its entry point's module, imported alone, defines

    def dockyard_fast_main(command: str, args: list[str], host: str | None) -> int | None

that function is called with the command's arguments and the root's ``-H`` value. It returns
the exit status, or None to hand the command to click unchanged: it must do so, *before any
request with an effect*, for every argument, option or situation it does not handle exactly as
its click command does (``--help``, a usage error, a TCP or TLS daemon, an image to pull...).
The module must stay cheap to import; its click command is served lazily (a module
``__getattr__``). Everything else (a conflict, a blocked distribution, a failed import) takes
the normal path, which reports it.

``DOCKYARD_NO_FAST=1`` turns the fast path off.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs 3-9 ms of imports (collections, functools, re)
if TYPE_CHECKING:
    from typing import Any

#: The attribute a command's module defines to run without click.
FAST_MAIN = "dockyard_fast_main"
#: Built-in commands (``dockyard.cli.root.BUILTINS``): never a plugin's fast path.
BUILTIN_NAMES = frozenset({"version", "info", "daemon", "system", "plugins"})
CLI_GROUP = "dockyard.cli"


def split_root(args: list[str]) -> tuple[str | None, str, list[str]] | None:
    """``(host, command, rest)`` when ``args`` are only the root's ``-H``/``--host`` options (in
    any of click's spellings, the last one winning) then a command name; None otherwise."""
    host = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-H", "--host"):
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            host, i = args[i + 1], i + 2
        elif arg.startswith("--host="):
            host, i = arg[len("--host="):], i + 1
        elif arg.startswith("-H") and len(arg) > 2 and not arg.startswith("-H-"):
            host, i = arg[2:], i + 1
        elif arg.startswith("-") or not arg:
            return None
        else:
            return host, arg, args[i + 1:]
    return None


def daemon_text(host: str | None, env: Any = None) -> str:
    """The daemon's address as written, chosen as ``dockyard.client.resolve_address`` chooses
    it (``-H``, ``DOCKYARD_HOST``, ``DOCKER_HOST``, then ``unix:///run/dockyard/dockyard.sock``),
    stripped: what messages name, as ``str(DaemonAddress)`` does."""
    env = os.environ if env is None else env
    return next((v for v in (host, env.get("DOCKYARD_HOST"), env.get("DOCKER_HOST")) if v and v.strip()),
                "unix:///run/dockyard/dockyard.sock").strip()


def unix_socket(host: str | None, env: Any = None) -> str | None:
    """The socket path when the daemon resolves to a unix socket as
    ``dockyard.client.resolve_address`` resolves it (``-H``, ``DOCKYARD_HOST``, ``DOCKER_HOST``,
    then ``unix:///run/dockyard/dockyard.sock``); None for any other address (TCP, TLS, a named
    pipe) or one that would not parse: the normal path handles those."""
    value = daemon_text(host, env)
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value if value.startswith(("/", "./")) else None
    if scheme != "unix" or not rest or "://" in rest:
        return None
    return rest


def lookup(command: str, records: list[dict[str, Any]], env: Any = None) -> str | None:
    """The ``module:attr`` target of ``command``, when exactly one distribution provides it and
    the environment does not block it (``DOCKYARD_DISABLE_PLUGINS``); None otherwise."""
    env = os.environ if env is None else env
    found = [r for r in records if r.get("group") == CLI_GROUP and r.get("name") == command]
    if len(found) != 1:
        return None
    rec = found[0]
    deny = {d.strip() for d in env.get("DOCKYARD_DISABLE_PLUGINS", "").split(",") if d.strip()}
    if deny & {command, f"cli:{command}", str(rec.get("distribution"))}:
        return None
    target = rec.get("target")
    return target if isinstance(target, str) and ":" in target else None


def dispatch(args: list[str]) -> int | None:
    """Run ``dockyard ARGS`` through its command's fast path; None when it has none or declines."""
    if os.environ.get("DOCKYARD_NO_FAST"):
        return None
    split = split_root(args)
    if split is None or split[1] in BUILTIN_NAMES:
        return None
    host, command, rest = split
    from dockyard import entrycache

    records = entrycache.read(entrycache.cache_dir())
    if records is None:
        return None
    target = lookup(command, records)
    if target is None:
        return None
    module_name = target.partition(":")[0].strip()
    try:
        __import__(module_name)
    except Exception:  # noqa: BLE001 - the normal path loads it again and reports the failure
        return None
    fast = vars(sys.modules[module_name]).get(FAST_MAIN)  # not getattr: a module __getattr__ imports click
    if not callable(fast):
        return None
    return fast(command, rest, host)
