"""Placement across a pool of engines: Swarm classic's shape (filters, then one strategy).

Filters and strategies come from plugins through ``dockyard_scheduler_filters`` /
``dockyard_scheduler_strategies`` (see ``specs/cluster.py``); this module only composes them.
Soft constraints (``~`` after the operator) are honoured first and dropped when no node
survives them, as in Swarm classic.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, InvalidArgument, PluginConflictError
from dockyard.specs.cluster import Node, PlacementRequest, SchedulerFilter, SchedulerStrategy

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


def _collect(kernel: Kernel, hook: Any, kind: str) -> dict:
    """Descriptors by unique name; two plugins giving one name is a conflict naming both."""
    by_name: dict = {}
    owner: dict[str, str] = {}
    for impl in hook.get_hookimpls():
        for item in impl.function(kernel=kernel) or ():
            if item.name in by_name:
                raise PluginConflictError(f"scheduler {kind}", item.name, [owner[item.name], impl.plugin_name])
            by_name[item.name], owner[item.name] = item, impl.plugin_name
    return dict(sorted(by_name.items()))


def filters(kernel: Kernel) -> dict[str, SchedulerFilter]:
    """Every filter plugins provide, by unique name."""
    return _collect(kernel, kernel.hook.dockyard_scheduler_filters, "filter")


def strategies(kernel: Kernel) -> dict[str, SchedulerStrategy]:
    """Every strategy plugins provide, by unique name."""
    return _collect(kernel, kernel.hook.dockyard_scheduler_strategies, "strategy")


def _hard(request: PlacementRequest) -> PlacementRequest:
    keep = [c for c in request.constraints if "~" not in c]
    aff = [a for a in request.affinities if "~" not in a]
    return replace(request, constraints=keep, affinities=aff)


def place(kernel: Kernel, request: PlacementRequest, nodes: list[Node], strategy: str,
          enabled: list[str] | None = None) -> list[Node]:
    """Candidate nodes for ``request``, best first.

    ``enabled`` names the filters to apply (all when None). Raises InvalidArgument for an
    unknown filter or strategy and Conflict when no node can take the request.
    """
    flts = filters(kernel)
    strats = strategies(kernel)
    if strategy not in strats:
        raise InvalidArgument(f"unknown scheduling strategy {strategy!r}; installed: {', '.join(strats) or 'none'}")
    names = list(flts) if enabled is None else enabled
    unknown = sorted(set(names) - set(flts))
    if unknown:
        raise InvalidArgument(f"unknown scheduler filter(s): {', '.join(unknown)}")

    def survivors(req: PlacementRequest) -> list[Node]:
        out = list(nodes)
        for name in names:
            out = flts[name].func(req, out)
        return out

    candidates = survivors(request)
    if not candidates and request != _hard(request):
        candidates = survivors(_hard(request))
    if not candidates:
        raise Conflict(f"no node can take {request.name or request.image!r}: "
                       f"{len(nodes)} node(s) considered, none passed the filters {', '.join(names)}")
    return strats[strategy].func(request, candidates)
