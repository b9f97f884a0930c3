"""``dockyard supervise CONTAINER``: the foreground command of a generated container unit.

A supervisor watches a process; a container runs under conmon, a child of dockyardd, not of
the supervisor. This command stands for the container in the supervisor's eyes, the same way
for every backend:

* it starts the container (``--new``: first creates it from the settings in the unit, replacing
  a container of that name, with label ``dockyard.unit``), tells systemd it is ready
  (``READY=1`` when ``NOTIFY_SOCKET`` is set: ``Type=notify``), and runs for as long as the
  container runs;
* it exits with the container's status when the container stops by itself (137 after
  ``kill -9``), so the supervisor's restart policy applies; a container that dockyardd is
  restarting by its own restart policy is followed, not reported;
* SIGTERM (the supervisor stopping the unit) stops the container with ``--time`` seconds of
  grace (then SIGKILL, by dockyardd) and it exits 0; ``--new`` removes the container either way;
* dockyardd going away (a restart of the daemon's unit) is waited out: the container keeps
  running under conmon and is followed again once dockyardd answers.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from typing import Any

import click

from dockyard.cli.output import client_of

#: How long a stop waits for dockyardd to answer, beyond the container's own stop timeout.
STOP_SLACK = 10.0


def _say(text: str) -> None:
    print(f"dockyard supervise: {text}", file=sys.stderr, flush=True)


def _retrying(call: Any, give_up: float | None = None) -> Any:
    """``call()``, retried while dockyardd cannot be reached (being restarted), up to ``give_up``
    seconds (forever without)."""
    from dockyard.client.errors import ConnectionFailed

    deadline = None if give_up is None else time.monotonic() + give_up
    delay, told = 0.1, False
    while True:
        try:
            return call()
        except (ConnectionFailed, ConnectionError) as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            if not told:
                _say(f"dockyardd does not answer ({exc}); waiting for it")
                told = True
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def follow(client: Any, cid: str) -> int:
    """Block until the container stops for good; its exit status. Restarts by dockyardd (its
    restart policy) and restarts of dockyardd itself are followed through."""
    import http.client

    from dockyard.client.errors import ConnectionFailed

    while True:
        try:
            client.request("POST", f"/containers/{cid}/wait", {"condition": "not-running"}, timeout=None).read()
        except (ConnectionFailed, ConnectionError, http.client.HTTPException):  # dockyardd went away
            _retrying(lambda: client.get(f"/containers/{cid}/json"))
            continue
        state = _retrying(lambda: client.get(f"/containers/{cid}/json"))["State"]
        if state.get("Running") or state.get("Restarting") or state.get("Status") == "restarting":
            time.sleep(0.2)  # dockyardd's restart policy has it: follow the next run
            continue
        return int(state.get("ExitCode") or 0)


@click.command()
@click.option("--unit", default="", help="the unit's name (the label of a container --new creates)")
@click.option("-t", "--time", "stop_timeout", type=click.IntRange(0, 3600), default=10, show_default=True,
              help="seconds of grace when stopping the container")
@click.option("--new", is_flag=True, help="create the container at start (from --spec) and remove it at the end")
@click.option("--spec", default="", help="--new: the container's settings, as generated")
@click.argument("container")
@click.pass_context
def supervise(ctx: click.Context, unit: str, stop_timeout: int, new: bool, spec: str, container: str) -> None:
    """Run CONTAINER as a supervised service (the command of units made by `dockyard generate`)."""
    from dockyard import sdnotify
    from dockyard.errors import DockyardError, NotFound, NotModified

    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    client = client_of(ctx, timeout=60.0)
    try:
        if new:
            from dockyard_generate.units import UNIT_LABEL, decode_spec

            body = decode_spec(spec)
            body["Labels"] = {**(body.get("Labels") or {}), UNIT_LABEL: unit or container}
            try:  # the unit owns the name (podman's --replace)
                _retrying(lambda: client.delete(f"/containers/{container}", force=1))
            except NotFound:
                pass
            cid = _retrying(lambda: client.post("/containers/create", body, name=container))["Id"]
        else:
            cid = _retrying(lambda: client.get(f"/containers/{container}/json"))["Id"]
        try:
            _retrying(lambda: client.post(f"/containers/{cid}/start"))
        except NotModified:
            pass
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc
    _say(f"{container} ({cid[:12]}) started")
    try:
        sdnotify.notify(f"READY=1\nSTATUS=container {container} running")
    except OSError as exc:
        _say(f"sd_notify failed: {exc}")
    done: queue.Queue[tuple[str, Any]] = queue.Queue()

    def watch() -> None:
        try:
            done.put(("exit", follow(client, cid)))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            done.put(("error", exc))

    threading.Thread(target=watch, daemon=True, name="follow").start()
    status: int | None = None
    while status is None:
        try:
            kind, value = done.get(timeout=0.2)
        except queue.Empty:
            if stopping.is_set():
                break
            continue
        if kind == "error":
            _say(f"following {container} failed: {value}")
            status = 1
        else:
            status = int(value)
            _say(f"{container} exited with status {status}")
    if status is None:  # asked to stop
        _say(f"stopping {container} (grace {stop_timeout}s)")
        try:
            _retrying(lambda: client.request("POST", f"/containers/{cid}/stop", {"t": stop_timeout},
                                             timeout=stop_timeout + STOP_SLACK).read(), give_up=stop_timeout + STOP_SLACK)
        except NotModified:
            pass
        except NotFound:
            pass
        except DockyardError as exc:
            _say(f"stopping {container} failed: {exc}")
        status = 0
    if new:
        try:
            _retrying(lambda: client.delete(f"/containers/{cid}", force=1), give_up=STOP_SLACK)
        except NotFound:
            pass
        except DockyardError as exc:
            _say(f"removing {container} failed: {exc}")
    sys.exit(status)
