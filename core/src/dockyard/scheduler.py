"""Placement across a pool of engines: Swarm classic's shape (filters, then one strategy).

Filters and strategies come from plugins through ``dockyard_scheduler_filters`` /
``dockyard_scheduler_strategies`` (see ``specs/cluster.py``); this module composes them and
keeps the state they read between placements.

- :class:`Scheduler` holds the nodes. ``place(request)`` returns the best nodes for a request;
  ``reserve(node, container)`` records a placement (reservations, names, images, ports), after
  which the next ``place`` sees it. Soft expressions (``==~``/``!=~``) are honoured first and
  dropped when no node survives them, as in Swarm classic. A request no node can take raises
  :class:`NoNodeAvailable`, naming for each node the filter that removed it.
- Reservations: a node takes a request when its reserved CPUs and memory plus the request's
  fit within its totals times ``1 + overcommit`` (Swarm's ``swarm.overcommit``, default 0.05).
- Fast paths (Swarm re-ranks every node per request; at 10,000 nodes that is about 10 ms in
  Python, bench (a)): the nodes are indexed by name, ID, container, image and attribute, and a filter's
  ``FilterCheck.index`` hint narrows the nodes to look at; for each (domain, request size, platform) the
  strategy's order is kept in a heap, updated as nodes change, so a placement pops nodes best
  first until one passes every check instead of sorting them all.
- :func:`place` is the one-call form over a list of nodes (builds a scheduler per call).
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, InvalidArgument, PluginConflictError
from dockyard.specs.cluster import (
    FilterCheck,
    Node,
    NodeContainer,
    PlacementRequest,
    PortBinding,
    SchedulerFilter,
    SchedulerStrategy,
)

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

DEFAULT_STRATEGY = "spread"
DEFAULT_OVERCOMMIT = 0.05
#: Look at a narrowed domain node by node (no heap) when it has at most this many nodes.
DIRECT_LIMIT = 64
#: A refusal runs the refusing filter's check on at most this many nodes outside its hint.
REFUSAL_CHECKS = 1000
#: Orders kept: domains (each hint's nodes), and request sizes per domain; the least recently
#: used goes first.
MAX_DOMAINS = 64
MAX_SIZES = 32
#: ... and at most this many heap entries in all of them (about 300 MB).
MAX_ENTRIES = 2_000_000

CONSTRAINTS_LABEL = "com.docker.swarm.constraints"
AFFINITIES_LABEL = "com.docker.swarm.affinities"
RESCHEDULE_LABEL = "com.docker.swarm.reschedule-policies"
RESCHEDULE_POLICIES = ("on-node-failure", "off")


class NoNodeAvailable(Conflict):
    """No node can take the request. ``reasons``: node name -> ``"filter: why"``."""

    def __init__(self, message: str, reasons: dict[str, str]):
        super().__init__(message)
        self.reasons = reasons


# ---------------------------------------------------------------------------- descriptors
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


def select(kernel: Kernel, strategy: str = DEFAULT_STRATEGY,
           enabled: Sequence[str] | None = None) -> tuple[SchedulerStrategy, list[SchedulerFilter]]:
    """The strategy and filters named (``enabled`` None: every installed filter), as the
    manager's ``--strategy``/``--filter`` select them. Unknown names raise InvalidArgument."""
    flts, strats = filters(kernel), strategies(kernel)
    if strategy not in strats:
        raise InvalidArgument(f"unknown scheduling strategy {strategy!r}; installed: {', '.join(strats) or 'none'}"
                              + ("" if strats else " (pip install dockyard-cluster-scheduler)"))
    names = list(flts) if enabled is None else list(dict.fromkeys(enabled))
    unknown = [n for n in names if n not in flts]
    if unknown:
        raise InvalidArgument(f"unknown scheduler filter(s) {', '.join(map(repr, unknown))}; "
                              f"installed: {', '.join(flts) or 'none'}")
    return strats[strategy], [flts[n] for n in names]


# ---------------------------------------------------------------------------- the scheduler
class _Ordered:
    """One strategy order over a domain of nodes for one request size: a heap of
    ``(*key, name, version)`` (flat: tuples compare faster unnested); a node's change pushes a
    fresh entry, and entries of an older version are dropped when they surface."""

    __slots__ = ("heap", "keyfn", "live")

    def __init__(self, keyfn: Any, nodes: Sequence[Node], versions: dict[str, int]):
        if nodes and not isinstance(keyfn(nodes[0]), tuple):  # a strategy's plain key: make it a tuple
            plain = keyfn
            keyfn = lambda node: (plain(node),)  # noqa: E731
        self.keyfn = keyfn
        self.heap = [keyfn(n) + (n.name, versions[n.name]) for n in nodes]
        heapq.heapify(self.heap)
        self.live = len(self.heap)


#: A domain: the nodes an index hint names. ``(key, value)``: nodes with exactly that value;
#: ``(key, name, predicate)``: nodes with a value the predicate accepts (``name`` tells
#: patterns apart). ``None``: every node.
Domain = tuple | None


class Scheduler:
    """Nodes, the selected filters and strategy, and the state placements change.

    Not thread-safe; one manager task places at a time (as Swarm's scheduler lock).
    """

    def __init__(self, strategy: SchedulerStrategy, filters: Sequence[SchedulerFilter] = (),
                 nodes: Iterable[Node] = (), overcommit: float = DEFAULT_OVERCOMMIT,
                 rng: random.Random | None = None):
        if overcommit < 0:
            raise InvalidArgument(f"overcommit must be >= 0, not {overcommit}")
        self.strategy = strategy
        self.filters = list(filters)
        self.overcommit = overcommit
        self._rng = rng or random.Random()
        self.nodes: dict[str, Node] = {}
        self._version: dict[str, int] = {}
        self._clock = 0  # versions come from it: a node that leaves and returns revives no old entry
        self._index: dict[tuple[str, str], set[str]] = {}  # (key, value) -> node names
        self._values: dict[str, set[str]] = {}  # key -> its indexed values
        self._generation: dict[str, int] = {}  # key -> bumped when its values come or go
        self._matched: dict[tuple, tuple[int, set[str]]] = {}  # predicate domain -> (generation, names)
        self._heaps: dict[Domain, dict[tuple, _Ordered]] = {}  # domain -> request size -> order
        self._order: list[str] = []  # node names, for random picks
        self.set_nodes(nodes)

    @classmethod
    def from_kernel(cls, kernel: Kernel, strategy: str = DEFAULT_STRATEGY,
                    enabled: Sequence[str] | None = None, nodes: Iterable[Node] = (),
                    overcommit: float = DEFAULT_OVERCOMMIT) -> Scheduler:
        """A scheduler with the named strategy and filters; unknown names raise InvalidArgument."""
        strat, flts = select(kernel, strategy, enabled)
        return cls(strat, flts, nodes, overcommit)

    # -------------------------------------------------------------- state
    def set_nodes(self, nodes: Iterable[Node]) -> None:
        """Replace every node (drops the orderings)."""
        self.nodes = {n.name: n for n in nodes}
        self._version = dict.fromkeys(self.nodes, 0)
        self._order = list(self.nodes)
        self._heaps.clear()
        self._index, self._values, self._matched = {}, {}, {}
        for node in self.nodes.values():
            self._index_node(node, add=True)

    def update(self, node: Node) -> None:
        """Add ``node`` or replace the node of its name (a refresh from the store)."""
        old = self.nodes.get(node.name)
        if old is not None:
            self._index_node(old, add=False)
        else:
            self._order.append(node.name)
            self._version[node.name] = 0  # _changed gives it a fresh version
        self.nodes[node.name] = node
        self._index_node(node, add=True)
        self._changed(node)

    def remove_node(self, name: str) -> Node | None:
        """Forget a node (dropped from the pool); None when unknown."""
        node = self.nodes.pop(name, None)
        if node is not None:
            self._index_node(node, add=False)
            self._version.pop(name, None)  # its heap entries are stale from now on
            self._order.remove(name)
        return node

    def reserve(self, node: str | Node, container: NodeContainer) -> Node:
        """Record ``container`` as placed on ``node``: the next placements see its
        reservation, name, image and host ports."""
        n = self._node(node)
        n.add(container)
        self._index_container(n, container, add=True)
        self._changed(n)
        return n

    def release(self, node: str | Node, ref: str) -> NodeContainer | None:
        """Forget a container (by ID or name) on ``node``, releasing what it reserved."""
        n = self._node(node)
        c = n.remove(ref)
        if c is not None:
            self._index_container(n, c, add=False)
            self._changed(n)
        return c

    def _node(self, node: str | Node) -> Node:
        name = node if isinstance(node, str) else node.name
        try:
            return self.nodes[name]
        except KeyError:
            raise InvalidArgument(f"no node named {name!r} in the pool") from None

    def _index_node(self, node: Node, add: bool) -> None:
        keys = [("node", node.name)] + ([("node", node.id)] if node.id else [])
        keys += list(node.attributes().items())
        keys += [("image", ref) for ref in node.images]
        for key in keys:
            self._index_put(key, node.name, add)
        for c in node.containers:
            self._index_container(node, c, add)

    def _index_container(self, node: Node, c: NodeContainer, add: bool) -> None:
        for ref in (c.id, c.name.lstrip("/")):
            if ref:
                self._index_put(("container", ref), node.name, add)
        if add:  # an image stays on the node when its container goes
            for ref in (c.image, c.image_id):
                if ref:
                    self._index_put(("image", ref), node.name, True)

    def _index_put(self, key: tuple[str, str], name: str, add: bool) -> None:
        names = self._index.get(key)
        if add:
            if names is None:
                names = self._index[key] = set()
            if name not in names:
                names.add(name)
                self._values.setdefault(key[0], set()).add(key[1])
                self._generation[key[0]] = self._generation.get(key[0], 0) + 1
        elif names is not None and name in names:
            names.discard(name)
            if not names:
                del self._index[key]
                self._values[key[0]].discard(key[1])
            self._generation[key[0]] = self._generation.get(key[0], 0) + 1

    def _domain_names(self, domain: Domain) -> Any:
        """The names of the nodes in ``domain`` (a set; every name for None)."""
        if domain is None:
            return self._order
        if len(domain) == 2:
            return self._index.get(domain, ())
        key, _name, predicate = domain
        gen = self._generation.get(key, 0)
        cached = self._matched.get(domain)
        if cached is not None and cached[0] == gen:
            return cached[1]
        names: set[str] = set()
        for value in self._values.get(key, ()):
            if predicate(value):
                names |= self._index[(key, value)]
        if cached is not None:  # members may have come since its orders were made
            self._heaps.pop(domain, None)
        elif len(self._matched) >= MAX_DOMAINS:
            self._matched.pop(next(iter(self._matched)))
        self._matched[domain] = (gen, names)
        return names

    def _changed(self, node: Node) -> None:
        """Push ``node``'s fresh entry into every order of a domain it is in (its older
        entries turn stale). The placement's hot path: a few pushes per order kept."""
        name = node.name
        self._clock += 1
        v = self._version[name] = self._clock
        tail = (name, v)
        push = heapq.heappush
        for domain, shapes in self._heaps.items():
            if domain is not None:
                members = self._index.get(domain, ()) if len(domain) == 2 else self._matched.get(domain, (0, ()))[1]
                if name not in members:
                    continue
            for ordered in shapes.values():
                heap = ordered.heap
                push(heap, ordered.keyfn(node) + tail)
                if len(heap) > 2 * ordered.live + 64:  # compact: keep the live entries only
                    version = self._version
                    heap[:] = [e for e in heap if version.get(e[-2]) == e[-1]]
                    heapq.heapify(heap)
                    ordered.live = len(heap)

    # -------------------------------------------------------------- placing
    def fits(self, node: Node, request: PlacementRequest) -> str | None:
        """None when ``node`` has room for ``request``'s reservations, else why not."""
        room = 1.0 + self.overcommit
        if request.cpus > 0 and node.reserved_cpus + request.cpus > node.cpus * room + 1e-9:
            return (f"needs {request.cpus:g} CPUs, {max(0.0, node.cpus * room - node.reserved_cpus):g} "
                    f"of {node.cpus:g} free")
        if request.memory > 0 and node.reserved_memory + request.memory > node.memory * room:
            return (f"needs {_mib(request.memory)} of memory, "
                    f"{_mib(max(0, int(node.memory * room) - node.reserved_memory))} of {_mib(node.memory)} free")
        return None

    def place(self, request: PlacementRequest, limit: int | None = 1) -> list[Node]:
        """The best nodes for ``request``, best first: at most ``limit`` (None: every node
        that can take it, ranked). Nothing changes until :meth:`reserve`. Raises
        InvalidArgument for a malformed request, :class:`NoNodeAvailable` when no node can
        take it."""
        found = self._place(request, limit)
        if found:
            return found
        if request.has_soft():  # Swarm's second try: without the soft expressions
            request = request.hard()
            found = self._place(request, limit)
            if found:
                return found
        raise self._refusal(request, self._prepare(request))

    def _prepare(self, request: PlacementRequest) -> list[tuple[str, FilterCheck]]:
        out = []
        for f in self.filters:
            fc = f.prepare(request)
            if fc is not None:
                out.append((f.name, fc))
        return out

    def _place(self, request: PlacementRequest, limit: int | None) -> list[Node]:
        checks = self._prepare(request)
        keyfn = self.strategy.rank(request, self.overcommit)
        domain, names = self._domain(checks)
        if limit is None or len(names) <= DIRECT_LIMIT:
            return self._scan(request, checks, keyfn, names, limit)
        if keyfn is None:
            return self._sample(request, checks, names, limit) or self._scan(request, checks, None, names, limit)
        return self._walk(request, checks, keyfn, domain, names, limit)

    def _sample(self, request: PlacementRequest, checks: list[tuple[str, FilterCheck]], names: Any,
                limit: int) -> list[Node]:
        """No ranking: nodes drawn at random until ``limit`` pass (uniform among those that
        pass); [] after a few dozen misses, when the caller scans them all instead."""
        pool = names if isinstance(names, list) else list(names)
        found: list[Node] = []
        tried: set[str] = set()
        for _ in range(4 * limit + 32):
            name = self._rng.choice(pool)
            if name in tried:
                continue
            tried.add(name)
            node = self.nodes[name]
            if self._passes(node, request, checks):
                found.append(node)
                if len(found) == limit:
                    return found
        return []

    def _domain(self, checks: list[tuple[str, FilterCheck]]) -> tuple[Domain, Any]:
        """The smallest domain the filters' hints allow (every node when no hint)."""
        best: Domain = None
        names: Any = self._order
        for _name, fc in checks:
            for hint in fc.index:
                hit = self._domain_names(hint)
                if len(hit) < len(names):
                    best, names = hint, hit
        return best, names

    def _passes(self, node: Node, request: PlacementRequest, checks: list[tuple[str, FilterCheck]]) -> bool:
        if self.fits(node, request) is not None:
            return False
        for _name, fc in checks:
            if fc.check(node) is not None:
                return False
        return True

    def _scan(self, request: PlacementRequest, checks: list[tuple[str, FilterCheck]], keyfn: Any,
              names: Iterable[str], limit: int | None) -> list[Node]:
        ok = [n for n in map(self.nodes.__getitem__, names) if self._passes(n, request, checks)]
        if keyfn is None:
            if limit is None or limit >= len(ok):
                self._rng.shuffle(ok)
                return ok
            return self._rng.sample(ok, limit)
        if limit is not None and limit < len(ok):
            return heapq.nsmallest(limit, ok, key=lambda n: (keyfn(n), n.name))
        return sorted(ok, key=lambda n: (keyfn(n), n.name))

    def _ordered(self, domain: Domain, names: Any, keyfn: Any, shape: tuple) -> _Ordered:
        """The kept order of ``domain`` for requests of ``shape`` (made on first use)."""
        shapes = self._heaps.pop(domain, None)  # re-inserted last: the least recently used goes first
        if shapes is None:
            shapes = {}
            while len(self._heaps) >= MAX_DOMAINS:
                del self._heaps[next(iter(self._heaps))]
        self._heaps[domain] = shapes
        ordered = shapes.pop(shape, None)
        if ordered is None:
            while len(shapes) >= MAX_SIZES:
                del shapes[next(iter(shapes))]
            self._evict(len(names), keep=domain)
            ordered = _Ordered(keyfn, [self.nodes[n] for n in names], self._version)
        shapes[shape] = ordered
        return ordered

    def _evict(self, room: int, keep: Domain) -> None:
        """Drop the least recently used orders until ``room`` more entries fit in
        :data:`MAX_ENTRIES` (memory: an entry is ~150 bytes, an order up to twice its nodes)."""
        total = sum(len(o.heap) for shapes in self._heaps.values() for o in shapes.values())
        for domain in list(self._heaps):
            shapes = self._heaps[domain]
            while shapes and total + room > MAX_ENTRIES:
                total -= len(shapes.pop(next(iter(shapes))).heap)
            if not shapes and domain != keep:
                del self._heaps[domain]
            if total + room <= MAX_ENTRIES:
                return

    def _walk(self, request: PlacementRequest, checks: list[tuple[str, FilterCheck]], keyfn: Any,
              domain: Domain, names: Any, limit: int) -> list[Node]:
        """Nodes of ``domain`` in the strategy's order (kept between placements) until
        ``limit`` pass every check."""
        ordered = self._ordered(domain, names, keyfn, (request.cpus, request.memory, request.platform))
        heap, versions, nodes = ordered.heap, self._version, self.nodes
        popped: list[tuple] = []
        found: list[Node] = []
        pop = heapq.heappop
        while heap and len(found) < limit:
            entry = pop(heap)
            if versions.get(entry[-2]) != entry[-1]:
                continue  # stale: the node changed since (its fresh entry is in the heap) or left
            popped.append(entry)
            node = nodes[entry[-2]]
            if self._passes(node, request, checks):
                found.append(node)
        for entry in popped:
            heapq.heappush(heap, entry)
        return found

    def _refusal(self, request: PlacementRequest, checks: list[tuple[str, FilterCheck]]) -> NoNodeAvailable:
        """Why each node was removed: every filter (and the reservations) refusing it; for the
        nodes outside the domain a filter's hint names, that filter alone (the others' checks
        would cost 10,000 nodes x filters for a summarised message), and beyond
        :data:`REFUSAL_CHECKS` of them the hint itself (``"constraint: node is not n1"``)."""
        domain, names = self._domain(checks)
        reasons: dict[str, str] = {}
        if domain is not None:
            flt, fc = next((name, fc) for name, fc in checks if domain in fc.index)
            outside = self.nodes.keys() - set(names)
            if len(outside) > REFUSAL_CHECKS:  # one line for them all: the message groups them anyway
                why = (f"{flt}: {domain[0]} is not {domain[1]}" if len(domain) == 2
                       else f"{flt}: {domain[0]} does not match {domain[1]}")
                reasons = dict.fromkeys(sorted(outside), why)
            else:
                for node in map(self.nodes.__getitem__, sorted(outside)):
                    reasons[node.name] = f"{flt}: {fc.check(node) or 'outside its hint (a filter bug)'}"
        for node in map(self.nodes.__getitem__, names):
            whys = [f"{name}: {why}" for name, fc in checks if (why := fc.check(node)) is not None]
            if (why := self.fits(node, request)) is not None:
                whys.append(f"resources: {why}")
            reasons[node.name] = ", ".join(whys) or "no reason given"
        what = f"container {request.name!r}" if request.name else f"a container of {request.image!r}"
        if not self.nodes:
            return NoNodeAvailable(f"no node can take {what}: the pool has no nodes", reasons)
        return NoNodeAvailable(f"no node can take {what}: {summarize(reasons)}", reasons)


def summarize(reasons: dict[str, str], groups: int = 6) -> str:
    """Nodes grouped by why they were refused, the rarest reasons first (the node a request
    pinned, rather than the 9,999 others): ``"n3: health: node is unhealthy; 2 nodes (n1,
    n2): constraint: storage==ssd not met"``."""
    by_why: dict[str, list[str]] = {}
    for node, why in reasons.items():
        by_why.setdefault(why, []).append(node)
    ordered = sorted(by_why.items(), key=lambda item: (len(item[1]), item[1][0]))
    parts = []
    for why, nodes in ordered[:groups]:
        nodes.sort()
        if len(nodes) <= 3:
            parts.append(f"{', '.join(nodes)}: {why}")
        else:
            parts.append(f"{len(nodes)} nodes ({', '.join(nodes[:2])}, ...): {why}")
    rest = sum(len(nodes) for _why, nodes in ordered[groups:])
    if rest:
        parts.append(f"and {rest} more node(s) for {len(ordered) - groups} other reason(s)")
    return "; ".join(parts)


def place(kernel: Kernel, request: PlacementRequest, nodes: Iterable[Node], strategy: str = DEFAULT_STRATEGY,
          enabled: Sequence[str] | None = None, overcommit: float = DEFAULT_OVERCOMMIT,
          limit: int | None = None) -> list[Node]:
    """Candidate nodes for ``request``, best first (at most ``limit``; None: all of them).

    The one-call form over a list of nodes (a :class:`Scheduler` built per call). ``enabled``
    names the filters to apply (every installed one when None). Raises InvalidArgument for an
    unknown filter or strategy or a malformed request, :class:`NoNodeAvailable` (a Conflict)
    when no node can take it.
    """
    return Scheduler.from_kernel(kernel, strategy, enabled, nodes, overcommit).place(request, limit)


# ---------------------------------------------------------------------------- requests
def _mib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


def _json_list(labels: dict[str, str], key: str) -> list[str]:
    raw = labels.get(key)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"label {key}: expected a JSON list of strings, got {raw!r}") from e
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"label {key}: expected a JSON list of strings, got {raw!r}")
    return value


def _ports(host_config: dict[str, Any], config: dict[str, Any]) -> list[PortBinding]:
    out: list[PortBinding] = []
    for spec, bindings in (host_config.get("PortBindings") or {}).items():
        port, _, proto = str(spec).partition("/")
        for b in bindings or ():
            host_port = str((b or {}).get("HostPort") or "")
            if not host_port:
                continue  # an ephemeral port: the engine picks a free one
            first, _, last = host_port.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                raise InvalidArgument(f"invalid host port {host_port!r} for {spec}")
            for p in range(int(first), int(last or first) + 1):
                out.append((str(b.get("HostIp") or ""), p, proto or "tcp"))
    if host_config.get("NetworkMode") == "host":  # the exposed ports are bound on the host
        for spec in config.get("ExposedPorts") or {}:
            port, _, proto = str(spec).partition("/")
            if port.isdigit():
                out.append(("", int(port), proto or "tcp"))
    return list(dict.fromkeys(out))


def request_from_create(body: dict[str, Any], name: str = "",
                        platform: str = "") -> tuple[PlacementRequest, dict[str, Any]]:
    """The placement a Docker ``POST /containers/create`` body asks for, and the body to send
    to the chosen engine.

    As Swarm classic: ``constraint:``, ``affinity:`` and ``reschedule:`` entries leave ``Env``
    and are kept as the labels ``com.docker.swarm.constraints`` / ``.affinities`` /
    ``.reschedule-policies`` (JSON lists, merged with those the body already had, as compose
    files give them). CPUs: ``HostConfig.NanoCpus``, else ``CpuShares`` read as a CPU count
    (Swarm classic's reading of ``-c``); memory: ``HostConfig.Memory``. Host ports from
    ``PortBindings`` (and ``ExposedPorts`` under host networking); dependencies from
    ``VolumesFrom``, ``Links`` and ``NetworkMode container:``. ``platform``: the create's
    ``platform`` query parameter (``linux/arm64``), normalized (InvalidArgument when it does not
    parse). The body is not modified.
    """
    body = dict(body)
    host = dict(body.get("HostConfig") or {})
    labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    constraints = _json_list(labels, CONSTRAINTS_LABEL)
    affinities = _json_list(labels, AFFINITIES_LABEL)
    reschedule = _json_list(labels, RESCHEDULE_LABEL)
    env: list[str] = []
    for entry in body.get("Env") or ():
        prefix, sep, expr = str(entry).partition(":")
        if sep and prefix == "constraint":
            constraints.append(expr)
        elif sep and prefix == "affinity":
            affinities.append(expr)
        elif sep and prefix == "reschedule":
            reschedule.append(expr)
        else:
            env.append(entry)
    bad = [p for p in reschedule if p not in RESCHEDULE_POLICIES]
    if bad:
        raise InvalidArgument(f"invalid reschedule policy {bad[0]!r}: expected one of {', '.join(RESCHEDULE_POLICIES)}")
    for key, values in ((CONSTRAINTS_LABEL, constraints), (AFFINITIES_LABEL, affinities),
                        (RESCHEDULE_LABEL, reschedule)):
        values[:] = list(dict.fromkeys(values))
        if values:
            labels[key] = json.dumps(values)
        else:
            labels.pop(key, None)
    if "Env" in body:
        body["Env"] = env
    if labels or "Labels" in body:
        body["Labels"] = labels

    nano = int(host.get("NanoCpus") or 0)
    cpus = nano / 1e9 if nano else float(host.get("CpuShares") or 0)
    deps = [str(v).split(":", 1)[0] for v in host.get("VolumesFrom") or ()]
    deps += [str(v).split(":", 1)[0].lstrip("/") for v in host.get("Links") or ()]
    net = str(host.get("NetworkMode") or "")
    if net.startswith("container:"):
        deps.append(net.removeprefix("container:"))
    request = PlacementRequest(
        name=name, image=str(body.get("Image") or ""), cpus=cpus, memory=int(host.get("Memory") or 0),
        constraints=constraints, affinities=affinities, ports=_ports(host, body),
        dependencies=list(dict.fromkeys(d for d in deps if d)), labels=labels, reschedule=reschedule,
        platform=_platform(platform))
    return request, body


def _platform(text: str) -> str:
    if not text:
        return ""
    from dockyard.platforms import parse

    return str(parse(text).normalized())
