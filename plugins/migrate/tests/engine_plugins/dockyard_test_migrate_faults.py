"""TEST ONLY -- never installed, declared by no distribution: a dockyard feature plugin the
migrate tests load into the engines of their netns hosts (``DOCKYARD_PLUGINS`` names this
module, this directory is on the engine's ``PYTHONPATH``: the SDK's ``engine_plugins_env``).

It implements ``dockyard_migration_phase``, the hook a migration calls at each phase, with
instructions from the directory ``$DOCKYARD_TEST_MIGRATE_FAULTS`` that the test controls:

- every phase reached is appended to ``<dir>/<host>.phases`` as ``SIDE PHASE CONTAINER ID``;
- a file ``<dir>/<host>`` holding ``SIDE:PHASE:ACTION`` makes this engine fail there once
  (the file is removed as it fires, so a test sees that it did): ACTION ``raise`` fails the
  migration at that point, ``kill`` ends the engine as kill -9 would.

``<host>`` is the engine's host name (a netns host's engine runs in a UTS namespace named
after the host).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.specs import hookimpl

ENV = "DOCKYARD_TEST_MIGRATE_FAULTS"


class InjectedFault(DockyardError):
    """The failure a test asked for."""


@hookimpl
def dockyard_migration_phase(kernel: Any, side: str, phase: str, container: str, migration: str) -> None:
    directory = os.environ.get(ENV)
    if not directory:
        return
    host = os.uname().nodename
    with open(Path(directory) / f"{host}.phases", "a") as log:
        log.write(f"{side} {phase} {container} {migration}\n")
    fault = Path(directory) / host
    try:
        want_side, want_phase, action = fault.read_text().strip().split(":")
    except (OSError, ValueError):
        return
    if (want_side, want_phase) != (side, phase):
        return
    fault.unlink(missing_ok=True)
    if action == "kill":
        os._exit(137)
    raise InjectedFault(f"fault injected at {side}:{phase}")
