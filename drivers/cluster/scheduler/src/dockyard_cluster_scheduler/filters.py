"""Swarm classic's filters (``docker/swarm`` ``scheduler/filter/``), as core's
:class:`~dockyard.specs.cluster.SchedulerFilter` descriptors.

Each ``prepare(request)`` parses what the request asks once and returns the per-node check
(None: nothing to check), with index hints where a passing node surely has a key: the core
scheduler then looks at those nodes only.

- ``constraint``: ``node`` (name or ID), the engine's labels and fields (``storagedriver``,
  ``kernelversion``, ``operatingsystem``, ``ostype``, ``architecture``: ``x86_64`` or ``amd64``). A node without the
  label matches ``!=`` and not ``==`` (its value is ``""``).
- ``affinity``: ``container`` (ID or name of a container on the node), ``image`` (ID,
  ``repo:tag`` or repo of an image on the node), any other key: a label of a container there.
- ``port``: no container on the node binds a requested host port with the same protocol on
  the same address, or either on every address.
- ``dependency``: every container named by ``--volumes-from``, ``--link`` and ``--net
  container:`` is on the node.
- ``health``: the node is healthy.
- ``platform``: the node runs the create's ``platform`` (``docker run --platform``), natively
  or under emulation, with containerd's fallbacks (``Node.runs``).
- ``containerslots``: a node labelled ``containerslots=N`` holds fewer than N containers
  (stopped ones count; a label that is not a number sets no limit).
"""

from __future__ import annotations

import string
from collections.abc import Callable

from dockyard.specs.cluster import FilterCheck, Node, PlacementRequest, SchedulerFilter
from dockyard_cluster_scheduler.expr import Expr, parse_all

#: Constraint keys read from the node's fields rather than its labels.
FIELDS = {"storagedriver": "storage_driver", "kernelversion": "kernel_version",
          "operatingsystem": "operating_system", "ostype": "os_type", "architecture": "architecture"}
_HEX = frozenset(string.hexdigits)


def _attribute(node: Node, key: str) -> str:
    attr = FIELDS.get(key)
    if attr is not None:
        return getattr(node, attr)
    value = node.labels.get(key)
    if value is not None:
        return value
    for k, v in node.labels.items():  # the expression's key is lower case; the label's may not be
        if k.lower() == key:
            return v
    return ""


def _all(checks: list[Callable[[Node], str | None]]) -> Callable[[Node], str | None]:
    if len(checks) == 1:
        return checks[0]

    def check(node: Node) -> str | None:
        for c in checks:
            why = c(node)
            if why is not None:
                return why
        return None

    return check


# ---------------------------------------------------------------------------- constraint
#: ``architecture`` matches Docker's spelling (``docker info``) and the OCI/Go one, as swarm
#: mode's platform filter (x86_64 = amd64, aarch64 = arm64).
ARCH_ALIASES = {"x86_64": "amd64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "aarch64",
                "armv7l": "arm", "i686": "386", "i386": "386", "s390x": "s390x", "ppc64le": "ppc64le"}


def _constraint_check(e: Expr) -> Callable[[Node], str | None]:
    alias = ARCH_ALIASES if e.key == "architecture" else None
    if e.key == "node":
        def check(node: Node) -> str | None:
            hit = e.match(node.name, node.id) if node.id else e.match(node.name)
            return None if hit else f"{e.text} not met"
        return check

    def check_attr(node: Node) -> str | None:
        value = _attribute(node, e.key)
        if e.match(value) if alias is None else e.match(value, alias.get(value, value)):
            return None
        return f"{e.text} not met ({e.key}={value!r})" if value else f"{e.text} not met (no {e.key})"
    return check_attr


def prepare_constraint(request: PlacementRequest) -> FilterCheck | None:
    if not request.constraints:
        return None
    exprs = parse_all(request.constraints, "constraint")
    return FilterCheck(_all([_constraint_check(e) for e in exprs]), tuple(_hint(e) for e in exprs if _hintable(e)))


def _hintable(e: Expr) -> bool:
    # "==" only; a pattern that matches "" would also take nodes without the key (unindexed);
    # an architecture may be indexed under its other spelling
    return e.op == "==" and (e.literal or not e.match("")) and e.key != "architecture"


def _hint(e: Expr) -> tuple:
    """The index hint of an ``==`` expression: its literal value, or its pattern as a predicate
    over the key's values (the scheduler unions the nodes of every value it accepts)."""
    return (e.key, e.value) if e.literal else (e.key, e.value, e.match)


# ---------------------------------------------------------------------------- affinity
def _repos(refs: set[str]) -> list[str]:
    out = list(refs)
    for ref in refs:
        repo, sep, tag = ref.rpartition(":")
        if sep and "/" not in tag and not ref.startswith("sha256:"):
            out.append(repo)
    return out


def _affinity_check(e: Expr) -> Callable[[Node], str | None]:
    if e.key == "container":
        def whats(node: Node) -> list[str]:
            out = []
            for c in node.containers:
                out.append(c.id)
                if c.name:
                    out.append(c.name.lstrip("/"))
            return out
        what = "containers"
    elif e.key == "image":
        def whats(node: Node) -> list[str]:
            return _repos(node.images)
        what = "images"
    else:
        def whats(node: Node) -> list[str]:
            return [c.labels.get(e.key, "") for c in node.containers]
        what = f"containers' {e.key} labels"

    def check(node: Node) -> str | None:
        return None if e.match(*whats(node)) else f"{e.text} not met (by the node's {what})"
    return check


def prepare_affinity(request: PlacementRequest) -> FilterCheck | None:
    if not request.affinities:
        return None
    exprs = parse_all(request.affinities, "affinity")
    hints = tuple(("container", e.value) for e in exprs if e.key == "container" and e.op == "==" and e.literal)
    return FilterCheck(_all([_affinity_check(e) for e in exprs]), hints)


# ---------------------------------------------------------------------------- port
def prepare_port(request: PlacementRequest) -> FilterCheck | None:
    wanted = list(request.ports)
    if not wanted:
        return None

    def check(node: Node) -> str | None:
        for binding in wanted:
            taken = node.port_in_use(binding)
            if taken is not None:
                addr, port, proto = binding
                return f"host port {port}/{proto} already bound on {taken}"
        return None

    return FilterCheck(check)


# ---------------------------------------------------------------------------- dependency
def prepare_dependency(request: PlacementRequest) -> FilterCheck | None:
    deps = list(request.dependencies)
    if not deps:
        return None

    def check(node: Node) -> str | None:
        missing = [d for d in deps if node.container(d) is None]
        return f"not on the node: {', '.join(missing)}" if missing else None

    # a name (not an ID prefix) is indexed exactly; an all-hex reference may be a prefix
    hints = tuple(("container", d.lstrip("/")) for d in deps if not set(d) <= _HEX)
    return FilterCheck(check, hints)


# ---------------------------------------------------------------------------- containerslots
def _slots(node: Node) -> str | None:
    raw = node.labels.get("containerslots")
    if raw is None:
        return None
    try:
        slots = int(raw)
    except ValueError:
        return None  # not a number: no limit, as Swarm
    return None if len(node.containers) < slots else f"all {slots} container slots taken"


_SLOTS = FilterCheck(_slots)


def prepare_containerslots(request: PlacementRequest) -> FilterCheck | None:
    return _SLOTS


# ---------------------------------------------------------------------------- health
def _healthy(node: Node) -> str | None:
    return None if node.healthy else "node is unhealthy"


_HEALTH = FilterCheck(_healthy)


def prepare_health(request: PlacementRequest) -> FilterCheck | None:
    return _HEALTH


# ---------------------------------------------------------------------------- platform
def prepare_platform(request: PlacementRequest) -> FilterCheck | None:
    """Swarmkit's platform filter for a create's ``platform``: the node runs it natively or
    under emulation (:meth:`Node.runs`, containerd's fallbacks: an arm64 node takes arm/v7)."""
    want = request.platform
    if not want:
        return None

    def check(node: Node) -> str | None:
        if node.runs(want):
            return None
        runs = ", ".join([*node.platforms] or [f"{node.os_type}/{node.architecture}"])
        emulated = f" (emulated: {', '.join(node.emulated_platforms)})" if node.emulated_platforms else ""
        return f"runs {runs}{emulated}, not {want}"

    return FilterCheck(check)


FILTERS = (
    SchedulerFilter("health", prepare_health, "skip nodes that are unhealthy (missed heartbeats)"),
    SchedulerFilter("platform", prepare_platform,
                    "the create's platform runs on the node, natively or emulated (native ranked first)"),
    SchedulerFilter("port", prepare_port, "no clash of host ports per address and protocol"),
    SchedulerFilter("containerslots", prepare_containerslots,
                    "node label containerslots=N: at most N containers (stopped ones count)"),
    SchedulerFilter("dependency", prepare_dependency, "--volumes-from, --link, --net container: on the same node"),
    SchedulerFilter("affinity", prepare_affinity, "affinity:container==, image==, container labels (~ soft)"),
    SchedulerFilter("constraint", prepare_constraint,
                    "constraint:KEY==VALUE on node name, engine labels and fields (~ soft)"),
)
