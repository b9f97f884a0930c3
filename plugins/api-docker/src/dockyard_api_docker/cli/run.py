"""``dockyard run`` and ``dockyard create``, plus the hijacked-stream client they and
``dockyard exec``/``start -a`` use (the same request sequence as the docker CLI: create → attach →
wait → start, see ``attach-and-streams.md`` §4)."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
from typing import Any
from urllib.parse import urlencode, urlparse

import click

from dockyard.cli.output import client_of, run_api

# ---------------------------------------------------------------------------- hijack client


class HijackError(click.ClickException):
    pass


def _connect(host: str) -> socket.socket:
    url = urlparse(host)
    if url.scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(url.path or url.netloc)
    else:
        s = socket.create_connection((url.hostname or "localhost", url.port or 2375))
    return s


def hijack(host: str, path: str, params: dict[str, Any], body: Any = None) -> socket.socket:
    """POST ``path`` with upgrade headers; returns the raw socket after the ``101``."""
    from dockyard.client import API_PREFIX

    sock = _connect(host)
    data = json.dumps(body).encode() if body is not None else b""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    head = (f"POST {API_PREFIX}{path}{'?' + query if query else ''} HTTP/1.1\r\nHost: localhost\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    sock.sendall(head + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise HijackError("the daemon closed the connection during the upgrade")
        buf += chunk
    header, _, rest = buf.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if status != 101:
        text = rest.decode(errors="replace")
        try:
            text = json.loads(text.strip().splitlines()[-1]).get("message", text)
        except (ValueError, IndexError, AttributeError):
            pass
        sock.close()
        raise HijackError(text or f"HTTP {status}")
    if rest:
        sock = _Prefixed(sock, rest)  # type: ignore[assignment]
    return sock


class _Prefixed:
    """A socket whose first reads return bytes that arrived with the 101."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock, self._prefix = sock, prefix

    def recv(self, n: int) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return self._sock.recv(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _read_exact(sock: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return out
        out += chunk
    return out


def copy_output(sock: Any, tty: bool) -> None:
    """Write the stream to stdout/stderr until the daemon closes it."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        if tty:
            data = sock.recv(65536)
            if not data:
                return
            out.write(data)
            out.flush()
            continue
        header = _read_exact(sock, 8)
        if len(header) < 8:
            return
        stream, length = header[0], struct.unpack(">L", header[4:])[0]
        payload = _read_exact(sock, length)
        target = err if stream == 2 else out
        target.write(payload)
        target.flush()


def copy_input(sock: Any) -> None:
    """stdin to the socket, then half-close."""
    try:
        fd = sys.stdin.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def stream_session(sock: Any, tty: bool, stdin: bool) -> None:
    if stdin:
        threading.Thread(target=copy_input, args=(sock,), daemon=True).start()
    else:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    restore = None
    if tty and stdin and sys.stdin.isatty():
        import termios
        import tty as ttymod

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        ttymod.setraw(fd)
        restore = (fd, saved)
    try:
        copy_output(sock, tty)
    finally:
        if restore is not None:
            import termios

            termios.tcsetattr(restore[0], termios.TCSADRAIN, restore[1])
        sock.close()


# ---------------------------------------------------------------------------- create body
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
    raise click.BadParameter(f"invalid duration {text!r}")


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
    if o["health_cmd"]:
        body["Healthcheck"] = {"Test": ["CMD-SHELL", o["health_cmd"]], "Interval": _duration_ns(o["health_interval"]),
                               "Timeout": _duration_ns(o["health_timeout"]), "Retries": o["health_retries"] or 0,
                               "StartPeriod": _duration_ns(o["health_start_period"])}
    if o["stop_signal"]:
        body["StopSignal"] = o["stop_signal"]
    return body


def create_options(f: Any) -> Any:
    opts = [
        click.option("--name", default=None, help="container name"),
        click.option("-e", "--env", multiple=True, help="KEY=value (repeatable)"),
        click.option("-l", "--label", multiple=True, help="key=value (repeatable)"),
        click.option("-i", "--interactive", is_flag=True, help="keep stdin open"),
        click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-terminal"),
        click.option("-w", "--workdir", default=None),
        click.option("-u", "--user", default=None),
        click.option("-p", "--publish", multiple=True, help="[ip:]host:container[/proto]"),
        click.option("-v", "--volume", multiple=True, help="name-or-path:/dest[:ro]"),
        click.option("--network", default=None),
        click.option("--restart", default=None, help="no | on-failure[:N] | always | unless-stopped"),
        click.option("-m", "--memory", default=None, help="memory limit (e.g. 64m)"),
        click.option("--cpus", default=None),
        click.option("--entrypoint", default=None),
        click.option("-h", "--hostname", default=None),
        click.option("--privileged", is_flag=True),
        click.option("--init", is_flag=True),
        click.option("--runtime", default=None),
        click.option("--stop-signal", default=None),
        click.option("--health-cmd", default=None),
        click.option("--health-interval", default=None),
        click.option("--health-timeout", default=None),
        click.option("--health-retries", type=int, default=None),
        click.option("--health-start-period", default=None),
        click.option("--rm", is_flag=True, help="remove the container when it exits"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def do_create(ctx: click.Context, o: dict[str, Any], image: str, command: tuple[str, ...]) -> str:
    from dockyard.errors import NotFound

    client = client_of(ctx)
    body = create_body(o, image, command)
    params = {"name": o["name"]} if o["name"] else {}
    try:
        res = client.post("/containers/create", body, **params)
    except NotFound as exc:
        if "image" not in str(exc).lower():
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Unable to find image '{image}' locally", err=True)
        name, _, tag = image.partition(":")
        try:
            for msg in client.stream_json("POST", "/images/create", {"fromImage": name, "tag": tag or "latest"}):
                if msg.get("error"):
                    raise click.ClickException(msg["error"])
        except NotFound as exc2:
            raise click.ClickException(str(exc2)) from exc2
        res = run_api(lambda: client.post("/containers/create", body, **params))
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - typed errors from the client
        raise click.ClickException(str(exc)) from exc
    return str(res["Id"])


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a container (prints its ID)."""
    click.echo(do_create(ctx, o, image, command))


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@click.option("-d", "--detach", is_flag=True, help="run in the background and print the ID")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create and start a container; without -d, stream its output and exit with its code."""
    client = client_of(ctx)
    cid = do_create(ctx, o, image, command)
    if o["detach"]:
        run_api(lambda: client.post(f"/containers/{cid}/start"))
        click.echo(cid)
        return
    sock = hijack(client.host, f"/containers/{cid}/attach",
                  {"stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if o["interactive"] else None})
    result: dict[str, Any] = {}

    def waiter() -> None:
        try:
            resp = client.request("POST", f"/containers/{cid}/wait",
                                  {"condition": "removed" if o["rm"] else "next-exit"}, timeout=None)
            result.update(json.loads(resp.read() or b"{}"))
        except Exception as exc:  # noqa: BLE001
            result["Error"] = {"Message": str(exc)}

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    try:
        client.post(f"/containers/{cid}/start")
    except Exception as exc:  # noqa: BLE001
        sock.close()
        click.echo(f"Error: {exc}", err=True)
        if o["rm"]:
            try:
                client.delete(f"/containers/{cid}", force=1)
            except Exception:  # noqa: BLE001
                pass
        ctx.exit(125)
    stream_session(sock, o["tty"], o["interactive"])
    t.join()
    if result.get("Error"):
        click.echo(f"Error: {result['Error'].get('Message')}", err=True)
        ctx.exit(125)
    ctx.exit(int(result.get("StatusCode", 0)))
