"""Feature hooks of the manager's containers service (entry point ``dockyard.plugins:
swarm-containers``): its settings, and the API middleware that refreshes the container cache
before the front's synchronous reads.

Settings (``daemon.json`` keys; ``dockyard swarm manage --strategy/--filter`` passes them):
``strategy`` (Swarm classic's ``--strategy``: ``spread``, ``binpack``, ``random``, or any a
plugin adds), ``filters`` (``--filter``, repeatable: the filters to apply; all installed ones
when unset), ``overcommit`` (Swarm's ``swarm.overcommit``, 0.05). Unknown names stop the
manager at start.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from dockyard.specs import ApiMiddleware, hookimpl
from dockyard.specs.config import ConfigOption

#: ``/containers/{ref}/ACTION`` routes whose handler reads the cache synchronously first.
_READS = {"json", "wait", "stats", "logs", "attach", "exec"}
_PATH = re.compile(r"^(?:/v[0-9.]+)?/(containers|exec)/([^/]+)(?:/([a-z]+))?$")


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [
        ConfigOption("strategy", str, None, "swarm manager: the scheduling strategy (spread, binpack, random)"),
        ConfigOption("filters", list, None, "swarm manager: the scheduler filters to apply (default: all installed)"),
        ConfigOption("overcommit", float, None, "swarm manager: the fraction of a node's CPUs and memory "
                                                "placements may promise beyond its totals (0.05)"),
    ]


def _service(kernel: Any) -> Any:
    from dockyard_swarm.containers import ClusterContainers

    if kernel.role != "manager" or not kernel.has_service("containers"):
        return None
    svc = kernel.service("containers")
    return svc if isinstance(svc, ClusterContainers) else None


@web.middleware
async def refresh_containers(request: web.Request, handler: Any) -> web.StreamResponse:
    from dockyard.server import KERNEL_KEY

    m = _PATH.match(request.path)
    if m is not None:
        svc = _service(request.app[KERNEL_KEY])
        if svc is not None:
            kind, ref, action = m.groups()
            if kind == "containers" and ref == "json" and action is None and request.method == "GET":
                await svc.refresh_all()
            elif kind == "containers" and ref not in ("create", "prune", "json") and (
                    action in _READS or (action is None and request.method == "GET")):
                await svc.refresh(ref)
            elif kind == "exec" and action == "json":
                await svc.refresh_exec(ref)
            elif kind == "exec" and action == "start":
                rexec = svc._execs.get(ref)
                if rexec is not None:
                    await svc.refresh(rexec.placed.id)
    return await handler(request)


@hookimpl
def dockyard_event(kernel: Any, event: Any) -> None:
    """Container events the nodes report (relayed with ``Event.node``) keep the cache honest."""
    if not event.node or event.type != "container" or kernel.role != "manager":
        return
    svc = _service(kernel)
    if svc is not None:
        svc.node_event(event.actor_id, event.action, str(event.node.get("Name") or ""))


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    if kernel.role != "manager":
        return []
    # inside the front's error mapping (docker-errors, order 10): a NotFound here is a 404
    return [ApiMiddleware("swarm-containers-refresh", refresh_containers, order=60)]
