"""``dockyard run`` and ``dockyard create``: the request sequence of the docker CLI (create →
attach → wait → start, see ``attach-and-streams.md`` §4).

This module imports no click and no HTTP library, so that ``dockyard run`` can go through
:func:`dockyard_fast_main` (``dockyard.cli.fast``) at about the interpreter's own start-up cost:
its options are one table (:data:`RUN_OPTIONS`) read both by the click commands (served lazily
from ``_run_click`` through this module's ``__getattr__``) and by the click-free parser
:func:`parse_args`, which declines (None) whatever it does not parse exactly as click does; and
everything after the create is one function, :func:`run_created`, that both paths call, on
``dockyard.cli.wire`` connections.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing and collections.abc cost 3-9 ms of imports (functools, re...)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from dockyard.cli.wire import Connection

#: The create options: (declarations, kind, help). ``kind``: "flag", "value", "many"
#: (repeatable, a tuple), "int" or "bool" (a Go boolean that is on unless given ``=false``:
#: ``--sig-proxy=false``; the bare option is true).
CREATE_OPTIONS: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("--name",), "value", "container name"),
    (("-e", "--env"), "many", "KEY=value (repeatable)"),
    (("-l", "--label"), "many", "key=value (repeatable)"),
    (("-i", "--interactive"), "flag", "keep stdin open"),
    (("-t", "--tty"), "flag", "allocate a pseudo-terminal"),
    (("-w", "--workdir"), "value", None),
    (("-u", "--user"), "value", None),
    (("-p", "--publish"), "many", "[ip:]host:container[/proto]"),
    (("-v", "--volume"), "many", "name-or-path:/dest[:ro]"),
    (("--network",), "value", None),
    (("--restart",), "value", "no | on-failure[:N] | always | unless-stopped"),
    (("-m", "--memory"), "value", "memory limit (e.g. 64m)"),
    (("--cpus",), "value", None),
    (("--entrypoint",), "value", None),
    (("-h", "--hostname"), "value", None),
    (("--privileged",), "flag", None),
    (("--init",), "flag", None),
    (("--runtime",), "value", None),
    (("--stop-signal",), "value", None),
    (("--health-cmd",), "value", None),
    (("--health-interval",), "value", None),
    (("--health-timeout",), "value", None),
    (("--health-retries",), "int", None),
    (("--health-start-period",), "value", None),
    (("--rm",), "flag", "remove the container when it exits"),
)
#: ``run`` adds these (docker's ``AddRunFlags``).
RUN_ONLY_OPTIONS: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("-d", "--detach"), "flag", "run in the background and print the ID"),
    (("--sig-proxy",), "bool", "forward the signals this process gets to the container (default true; "
                               "--sig-proxy=false: do not)"),
)
RUN_OPTIONS = CREATE_OPTIONS + RUN_ONLY_OPTIONS
_DEFAULTS = {"flag": False, "value": None, "many": (), "int": None, "bool": True}
#: The values of a "bool" option both Go's ``strconv.ParseBool`` and click's ``BOOL`` take alike.
_BOOL_WORDS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def option_name(decls: tuple[str, ...]) -> str:
    """The parameter name click gives an option: its first long name, dashes as underscores."""
    return next(d for d in decls if d.startswith("--"))[2:].replace("-", "_")


# ---------------------------------------------------------------------------- create body
class BadValue(ValueError):
    """An option value the body cannot hold (the click command reports it as click does)."""


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _duration_ns(text: str | None) -> int:
    if not text:
        return 0
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    for suffix in ("ns", "us", "ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * units[suffix])
    raise BadValue(f"invalid duration {text!r}")


def _bytes(text: str | None) -> int:
    if not text:
        return 0
    t = text.strip().lower().rstrip("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _ports(values: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in values:
        parts = spec.split(":")
        cport = parts[-1]
        if "/" not in cport:
            cport += "/tcp"
        ip, hport = ("", "")
        if len(parts) == 3:
            ip, hport = parts[0], parts[1]
        elif len(parts) == 2:
            hport = parts[0]
        exposed[cport] = {}
        bindings.setdefault(cport, []).append({"HostIp": ip, "HostPort": hport})
    return exposed, bindings


def console_size() -> tuple[int, int] | None:
    """(rows, columns) of the terminal on stdout; None when stdout is not a terminal."""
    try:
        if not os.isatty(1):
            return None
        cols, rows = os.get_terminal_size(1)
    except OSError:
        return None
    return rows, cols


def create_body(o: dict[str, Any], image: str, command: tuple[str, ...]) -> dict[str, Any]:
    exposed, bindings = _ports(o["publish"])
    restart = o["restart"] or "no"
    rname, _, rcount = restart.partition(":")
    body: dict[str, Any] = {
        "Image": image, "Cmd": list(command) or None, "Env": list(o["env"]) or None,
        "Labels": _pairs(o["label"]), "Tty": o["tty"], "OpenStdin": o["interactive"],
        "StdinOnce": o["interactive"], "AttachStdin": o["interactive"],
        "AttachStdout": not o.get("detach"), "AttachStderr": not o.get("detach"),
        "WorkingDir": o["workdir"] or "", "User": o["user"] or "", "ExposedPorts": exposed or None,
        "Entrypoint": [o["entrypoint"]] if o["entrypoint"] is not None else None,
        "Hostname": o["hostname"] or "",
        "HostConfig": {
            "AutoRemove": o["rm"], "Binds": list(o["volume"]) or None, "PortBindings": bindings or None,
            "NetworkMode": o["network"] or "default",
            "RestartPolicy": {"Name": rname, "MaximumRetryCount": int(rcount or 0)},
            "Memory": _bytes(o["memory"]), "NanoCpus": int(float(o["cpus"] or 0) * 1e9),
            "Privileged": o["privileged"], "Init": o["init"] or None, "Runtime": o["runtime"] or "",
        },
    }
    if o["tty"]:
        size = console_size()
        if size is not None:  # docker: the terminal's size when stdout is one (0x0 included)
            body["HostConfig"]["ConsoleSize"] = list(size)
    if o["health_cmd"]:
        body["Healthcheck"] = {"Test": ["CMD-SHELL", o["health_cmd"]], "Interval": _duration_ns(o["health_interval"]),
                               "Timeout": _duration_ns(o["health_timeout"]), "Retries": o["health_retries"] or 0,
                               "StartPeriod": _duration_ns(o["health_start_period"])}
    if o["stop_signal"]:
        body["StopSignal"] = o["stop_signal"]
    return body


# ---------------------------------------------------------------------------- click-free parsing
def parse_args(args: list[str], options: tuple[tuple[tuple[str, ...], str, str | None], ...] = RUN_OPTIONS,
               ) -> tuple[dict[str, Any], str, tuple[str, ...]] | None:
    """``(options, image, command)`` as click parses ``args`` for a command with ``options``,
    ``IMAGE`` and ``COMMAND...`` (interspersed arguments off: options end at the image); None
    for anything it does not take exactly as click would (``--help``, an unknown option, a
    missing or dash-led value, a bad integer, no image), which click then reports."""
    spec: dict[str, tuple[str, str]] = {}
    for decls, kind, _help in options:
        for d in decls:
            spec[d] = (option_name(decls), kind)
    o: dict[str, Any] = {option_name(decls): _DEFAULTS[kind] for decls, kind, _help in options}

    def put(name: str, kind: str, value: str) -> bool:
        if kind == "many":
            o[name] = (*o[name], value)
        elif kind == "int":
            try:
                o[name] = int(value)
            except ValueError:
                return False
        else:
            o[name] = value
        return True

    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            opt, eq, value = arg.partition("=")
            if opt not in spec:
                return None
            name, kind = spec[opt]
            if kind == "flag":
                if eq:
                    return None
                o[name] = True
                i += 1
                continue
            if kind == "bool":  # click takes a following word as the value: only "=" or none
                if eq:
                    if value.lower() not in _BOOL_WORDS or value not in (value.lower(), value.upper(),
                                                                        value.capitalize()):
                        return None
                    o[name] = _BOOL_WORDS[value.lower()]
                elif i + 1 < len(args) and args[i + 1].startswith("-") and len(args[i + 1]) > 1:
                    o[name] = True
                else:
                    return None
                i += 1
                continue
            if not eq:
                if i + 1 >= len(args) or args[i + 1].startswith("-"):
                    return None
                value = args[i + 1]
                i += 1
            if not put(name, kind, value):
                return None
            i += 1
            continue
        j = 1  # a cluster of short options: flags, then at most one that takes a value
        while j < len(arg):
            opt = "-" + arg[j]
            if opt not in spec:
                return None
            name, kind = spec[opt]
            if kind == "flag":
                o[name] = True
                j += 1
                continue
            if kind == "bool":  # none has a short name
                return None
            value = arg[j + 1:]
            if not value:
                if i + 1 >= len(args) or args[i + 1].startswith("-"):
                    return None
                value = args[i + 1]
                i += 1
            if not put(name, kind, value):
                return None
            break
        i += 1
    if i >= len(args):
        return None
    return o, args[i], tuple(args[i + 1:])


# ---------------------------------------------------------------------------- after the create
def _err(text: str) -> None:
    sys.stderr.write(f"Error: {text}\n")
    sys.stderr.flush()


def _failure(exc: BaseException, where: str) -> str:
    """A message for an exception from a connection: an OS error names the daemon."""
    from dockyard.cli.wire import WireError

    if isinstance(exc, OSError) and not isinstance(exc, WireError):
        return f"cannot talk to the dockyard daemon at {where}: {exc}"
    if isinstance(exc, WireError):
        return f"the daemon at {where} broke the protocol: {exc}"
    return str(exc)


def _api_message(status: int, raw: bytes, what: str) -> str:
    """The message of an error answer, as ``dockyard.client`` raises it."""
    from dockyard.client.errors import api_error

    return str(api_error(status, raw, what))


class OutputClosed(Exception):
    """The reader of this process's stdout or stderr went away (``dockyard run ... | head -1``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"write /dev/{name}: broken pipe")
        self.name = name


def output_closed(exc: OutputClosed) -> int:
    """End as the docker CLI does when its output's reader goes: its copy fails with the write's
    error, printed as it is, and status 1 (the container runs on: it is not signalled). The
    closed stream is pointed at /dev/null first, so nothing the interpreter flushes later (at
    its exit) fails again with a second report."""
    fd = (sys.stdout if exc.name == "stdout" else sys.stderr).fileno()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    try:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return 1


def _copy(conn: Connection, tty: bool) -> str | None:
    """Copy the attach stream to stdout/stderr until it ends: raw with ``tty``, else split by
    Docker's 8-byte frame header (``dockyard.client.streams``). The message of a daemon error
    frame (stream 3), else None; :class:`OutputClosed` when a reader has gone."""
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write(target: BinaryIO, data: bytes) -> None:
        try:
            target.write(data)
            target.flush()
        except BrokenPipeError:
            raise OutputClosed("stderr" if target is err else "stdout") from None

    if tty:
        while data := conn.recv():
            write(out, data)
        return None
    buf = b""
    while True:
        data = conn.recv()
        if not data:
            if len(buf) > 8:  # a truncated last frame: what arrived of it
                write(err if buf[0] == 2 else out, buf[8:])
            return None
        buf += data
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            stream, payload, buf = buf[0], buf[8:8 + size], buf[8 + size:]
            if not payload:
                continue
            if stream == 3:
                return f"error from daemon in stream: {payload.decode(errors='replace')}"
            write(err if stream == 2 else out, payload)


def _pump_stdin(conn: Connection) -> None:
    """stdin to the connection until its end, then half-close (``streams.pump_stdin``)."""
    try:
        fd = sys.stdin.fileno()
        while data := os.read(fd, 65536):
            conn.sock.sendall(data)
    except (OSError, ValueError):
        pass
    finally:
        conn.close_write()


#: The signals ``docker run`` forwards to the container (``--sig-proxy``, on by default, with or
#: without a TTY as docker 28 does): all but SIGCHLD, SIGPIPE, SIGURG, those that cannot be
#: caught, and the synchronous ones (a fault of this process); the kill request names them as
#: docker does (``TERM``).
PROXIED_SIGNALS = ("HUP", "INT", "QUIT", "ABRT", "USR1", "USR2", "ALRM", "TERM", "STKFLT", "CONT", "TSTP",
                   "TTIN", "TTOU", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR")
#: docker 28 ends itself at the third SIGINT/SIGTERM, forwarded or not, with this line and 1.
FORCE_EXIT_AFTER = 3
FORCE_EXIT_TEXT = "\ngot 3 SIGTERM/SIGINTs, forcefully exiting\n"


def proxy_signals(open_conn: Callable[[], Connection], cid: str, forward: bool = True) -> Callable[[], None]:
    """Handle the signals this process gets while it runs container ``cid``, as the docker CLI
    does; returns the function that restores the previous handlers. With ``forward``
    (``--sig-proxy``) each of :data:`PROXIED_SIGNALS` goes to the container (``POST
    .../kill?signal=NAME``, docker's ``ForwardAllSignals``; a failed request is ignored as docker
    ignores it). Either way SIGINT and SIGTERM do not end this process: the third of them does,
    with docker's line and status 1 (without ``forward`` the container keeps running).
    Nothing outside the main thread."""
    import _signal

    from dockyard.cli.wire import target

    names = {getattr(_signal, f"SIG{n}"): n for n in PROXIED_SIGNALS if hasattr(_signal, f"SIG{n}")}
    terminating = (_signal.SIGINT, _signal.SIGTERM)
    seen = [0]

    def handle(signum: int, _frame: Any) -> None:
        if forward:
            try:
                conn = open_conn()
                try:
                    conn.request("POST", target(f"/containers/{cid}/kill", {"signal": names[signum]}))
                finally:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
        if signum in terminating:
            seen[0] += 1
            if seen[0] >= FORCE_EXIT_AFTER:
                sys.stderr.write(FORCE_EXIT_TEXT)
                sys.stderr.flush()
                raise SystemExit(1)

    saved = {}
    try:
        for signum in names if forward else terminating:
            saved[signum] = _signal.signal(signum, handle)
    except ValueError:  # not the main thread
        pass

    def restore() -> None:
        for signum, handler in saved.items():
            _signal.signal(signum, handler)

    return restore


def follow_terminal_size(open_conn: Callable[[], Connection], cid: str) -> Callable[[], None]:
    """docker's ``MonitorTtySize``: resize container ``cid``'s terminal to stdout's now
    (``POST .../resize?h=&w=``, skipped for a 0x0 terminal) and on each SIGWINCH, then call
    the handler that was there (:func:`proxy_signals` forwards it too, as docker does);
    returns the function that restores that handler."""
    import _signal

    from dockyard.cli.wire import target

    saved: Any = None

    def resize(*args: Any) -> None:
        size = console_size()
        if size is not None and all(size):
            try:
                conn = open_conn()
                try:
                    conn.request("POST", target(f"/containers/{cid}/resize", {"h": size[0], "w": size[1]}))
                finally:
                    conn.close()
            except Exception:  # noqa: BLE001 - docker only logs a failed resize
                pass
        if args and callable(saved):
            saved(*args)

    resize()
    try:
        saved = _signal.signal(_signal.SIGWINCH, resize)
    except (ValueError, AttributeError):  # not the main thread; no SIGWINCH here
        return lambda: None
    return lambda: _signal.signal(_signal.SIGWINCH, saved)


def start_status(message: str) -> int:
    """docker's exit status for a start the daemon refused with ``message``
    (``runStartContainerErr``): 127 when the command is not found, 126 when it cannot be
    invoked, else 125."""
    if any(m in message for m in ("executable file not found", "no such file or directory",
                                  "system cannot find the file specified")):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def run_created(open_conn: Callable[[], Connection], cid: str, o: dict[str, Any], where: str,
                conn: Connection | None = None) -> int:
    """Everything ``run`` does once container ``cid`` is created; the exit status.

    Detached: start, print the ID. Otherwise as the docker CLI: attach (raw stream on a
    connection of its own) and ``wait`` (``removed`` with ``--rm``, else ``next-exit``) are sent
    together, and both answers' headers are read before ``start``, so neither the output nor
    the exit of a fast container can be missed; without ``-i`` the attach is half-closed at
    once; the output is copied until the daemon closes the stream, then the wait's body gives
    the exit status. The signals this process gets go to the container unless
    ``--sig-proxy=false`` (:func:`proxy_signals`), so ``Ctrl-C`` or a ``kill`` reach it as with
    docker; with a TTY on a terminal, the container's follows the terminal's size
    (:func:`follow_terminal_size`). ``open_conn`` opens a connection to the daemon; ``conn``,
    when given, is an idle one to reuse for ``start``. Errors are printed as the click commands
    print them: ``Error: ...`` and 1; a failed start gives docker's status (125, or for an
    answer of the daemon :func:`start_status`'s 127 / 126; with ``--rm`` the container is
    removed), a failed wait 125.
    """
    from dockyard.cli.wire import target

    rm = bool(o["rm"])

    def start() -> int:
        """0, or the status of a failed start (its error printed; with --rm the container goes)."""
        nonlocal conn
        status = 125
        try:
            if conn is None or not conn.reusable:
                conn = open_conn()
            resp, raw = conn.request("POST", target(f"/containers/{cid}/start"))
            if resp.status < 300:
                return 0
            problem = _api_message(resp.status, raw, f"POST /containers/{cid}/start")
            status = start_status(problem)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the daemon
            problem = _failure(exc, where)
        finally:
            if conn is not None:
                conn.close()
        _err(problem)
        if rm:  # dockerd removes it too; docker waits for that, this makes sure of it
            try:
                delete = open_conn()
                delete.request("DELETE", target(f"/containers/{cid}", {"force": 1}))
                delete.close()
            except Exception:  # noqa: BLE001
                pass
        return status

    if o.get("detach"):
        status = start()
        if status:
            return status
        sys.stdout.write(cid + "\n")
        sys.stdout.flush()
        return 0
    tty, interactive = bool(o["tty"]), bool(o["interactive"])
    attach = waiter = None
    restore = proxy_signals(open_conn, cid, forward=o.get("sig_proxy", True) is not False)
    restore_winch = None
    try:
        try:
            attach = open_conn()
            attach.send("POST", target(f"/containers/{cid}/attach", {
                "stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if interactive else None}), upgrade=True)
            waiter = open_conn()
            waiter.send("POST", target(f"/containers/{cid}/wait", {"condition": "removed" if rm else "next-exit"}))
            answer = attach.head()
            if answer.status not in (101, 200):  # 200: engines without the upgrade stream the same way
                _err(_api_message(answer.status, attach.body(answer, "POST"), f"POST /containers/{cid}/attach"))
                return 1
        except Exception as exc:  # noqa: BLE001
            _err(_failure(exc, where))
            return 1
        attach.sock.settimeout(None)  # the stream and the wait last as long as the container
        waiter.sock.settimeout(None)
        wait_error = None
        try:
            waited = waiter.head()
            if waited.status >= 300:
                wait_error = _api_message(waited.status, waiter.body(waited, "POST"), f"POST /containers/{cid}/wait")
        except Exception as exc:  # noqa: BLE001
            wait_error = _failure(exc, where)
        if not interactive:
            attach.close_write()  # no stdin: the daemon sees its end at once, as docker does
        status = start()
        if status:
            return status
        if tty and console_size() is not None:
            restore_winch = follow_terminal_size(open_conn, cid)
        if interactive:
            import _thread

            _thread.start_new_thread(_pump_stdin, (attach,))
        try:
            if tty and interactive and sys.stdin.isatty():
                from dockyard.client.streams import raw_terminal

                with raw_terminal(True):
                    stream_error = _copy(attach, tty)
            else:
                stream_error = _copy(attach, tty)
        except OutputClosed as exc:
            return output_closed(exc)
        attach.close()
        if stream_error is not None:
            _err(stream_error)
            return 1
        if wait_error is None:
            try:
                result = waiter.json_body(waited)
                if not isinstance(result, dict):
                    raise ValueError(f"unexpected wait answer {result!r}")
            except Exception as exc:  # noqa: BLE001
                result = {"Error": {"Message": _failure(exc, where)}}
            if result.get("Error"):
                wait_error = (result["Error"] or {}).get("Message")
        if wait_error is not None:
            _err(str(wait_error))
            return 125
        return int(result.get("StatusCode", 0))
    finally:
        for undo in (restore_winch, restore):  # the SIGWINCH handler chains to the proxy's
            if undo is not None:
                undo()
        for c in (attach, waiter):
            if c is not None:
                c.close()


# ---------------------------------------------------------------------------- the fast path
def dockyard_fast_main(command: str, args: list[str], host: str | None) -> int | None:
    """``dockyard run`` without click (``dockyard.cli.fast``): a unix-socket daemon, options
    :func:`parse_args` takes, and a create the daemon answers 201; anything else (including a
    missing image to pull) goes to the click command, before any request with an effect."""
    if command != "run":
        return None
    parsed = parse_args(args)
    if parsed is None:
        return None
    o, image, cmd = parsed
    from dockyard.cli.fast import daemon_text, unix_socket

    path = unix_socket(host)
    if path is None:
        return None
    from dockyard.cli.wire import Connection, connect_unix, target
    from dockyard.jsonlite import dumps, loads

    try:
        body = dumps(create_body(o, image, cmd)).encode()
    except (ValueError, TypeError):
        return None
    try:
        conn = Connection(connect_unix(path, 60.0))
    except OSError:
        return None
    try:
        resp, raw = conn.request("POST", target("/containers/create", {"name": o["name"]} if o["name"] else {}),
                                 body)
        cid = str(loads(raw)["Id"]) if resp.status < 300 else None
    except (OSError, ValueError, KeyError, TypeError):
        cid = None
    if cid is None:  # an image to pull, a conflict, a bad option...: the click command's report
        conn.close()
        return None
    where = daemon_text(host)  # as the click command's messages name it
    try:
        return run_created(lambda: Connection(connect_unix(path, 60.0)), cid, o, where, conn)
    except KeyboardInterrupt:  # as click's standalone mode ends
        sys.stderr.write("\nAborted!\n")
        return 1


def __getattr__(name: str) -> Any:
    """The click commands and helpers, imported on first use (they import click)."""
    if name in ("run", "create", "create_options", "do_create"):
        from dockyard_api_docker.cli import _run_click

        return getattr(_run_click, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
