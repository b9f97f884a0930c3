"""A swarm master's manager, run by the master machine's engine (Docker Machine's swarm master).

Docker Machine ran ``swarm manage`` in a container on the machine created with
``--swarm-master``. Here the machine's engine runs it: an engine started with
``--cluster-store-opt swarm.master=tcp://ADDR:3376`` (``machine create --swarm-master`` gives it)
runs the ``swarm-master`` background service, which keeps a child ``dockyardd --role manager``
listening there with the engine's own mutual TLS material (a master's certificate carries
clientAuth too: the manager dials the other engines with it), restarts it when it exits, and
stops it with the engine (SIGTERM at shutdown; the kernel's parent-death signal if the engine is
killed). Its roots are ``<data-root>/swarm-master`` and ``<exec-root>/swarm-master``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

log = logging.getLogger("dockyard.swarm.master")

OPTION = "swarm.master"
RESTART_DELAY = 1.0
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def manager_argv(kernel: Kernel) -> tuple[list[str], Path]:
    """The manager's command line and its data root, from the engine's configuration."""
    from dockyard.tlsconfig import ServerTLS

    config = kernel.config
    listen = config.options_for("cluster-opts").get(OPTION, "")
    if not listen.startswith("tcp://"):
        raise InvalidArgument(f"cluster option {OPTION}={listen!r}: expected tcp://ADDR:PORT")
    tls = ServerTLS.from_config(config)
    if not tls.enabled or not tls.verify:
        raise InvalidArgument(f"cluster option {OPTION}: a swarm master serves with the engine's mutual TLS "
                              "(--tlsverify --tlscacert --tlscert --tlskey)")
    root = Path(str(config.get("data-root"))) / "swarm-master"
    run = Path(str(config.get("exec-root"))) / "swarm-master"
    root.mkdir(parents=True, exist_ok=True)
    # the store's own options (kv.* TLS to etcd) go along; the engine's heartbeat and master keys do not
    opts = [f"{k}={v}" for k, v in config.options_for("cluster-opts").items()
            if k != OPTION and not k.startswith("discovery.")]
    (root / "daemon.json").write_text(json.dumps({"role": "manager", "cluster-store": config.get("cluster-store"),
                                                  "cluster-opts": opts}))
    argv = [sys.executable, "-m", "dockyard.daemon", "--config-file", str(root / "daemon.json"),
            "--data-root", str(root / "data"), "--exec-root", str(run), "-H", listen,
            "--tlsverify", "--tlscacert", tls.ca, "--tlscert", tls.cert, "--tlskey", tls.key]
    return argv, root


async def run(kernel: Kernel) -> None:
    """The ``swarm-master`` background service: the manager kept running beside the engine."""
    argv, root = manager_argv(kernel)
    while True:
        with open(root / "manager.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                        stderr=out, preexec_fn=_die_with_parent)
        log.info("swarm master: manager (pid %d) on %s", proc.pid, argv[argv.index("-H") + 1])
        try:
            status = await proc.wait()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            raise
        log.warning("swarm master: the manager exited with %s (log %s); starting it again", status,
                    root / "manager.log")
        await asyncio.sleep(RESTART_DELAY)
