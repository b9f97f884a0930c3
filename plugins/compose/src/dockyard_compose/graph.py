"""Concurrent walks over the service dependency graph (what docker compose v2's graph traversal does).

``up`` walks forward: a service is converged as soon as every service it depends on is done.
``down`` and ``stop`` walk in reverse: a service is stopped as soon as every service that
depends on it is stopped. At most ``limit`` calls run at once (``COMPOSE_PARALLEL_LIMIT``, as
in docker compose, default 64). When a call fails no new call starts; the calls already running
finish, so nothing is left half-made by the walk itself; the services that never ran are
reported as ``skipped``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

DEFAULT_LIMIT = 64


def parallel_limit(environ: Mapping[str, str] | None = None) -> int:
    """``COMPOSE_PARALLEL_LIMIT`` when it is a positive integer, else :data:`DEFAULT_LIMIT`."""
    raw = (os.environ if environ is None else environ).get("COMPOSE_PARALLEL_LIMIT", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_LIMIT
    return value if value > 0 else DEFAULT_LIMIT


@dataclass
class Walk:
    """What a walk did: nodes in completion order, failures by node, nodes never run."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def reverse(deps: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """``{node: what it depends on}`` -> ``{node: what depends on it}`` (same nodes)."""
    out: dict[str, set[str]] = {n: set() for n in deps}
    for n, ds in deps.items():
        for d in ds:
            if d in out:
                out[d].add(n)
    return out


def walk(nodes: Iterable[str], prerequisites: Mapping[str, Iterable[str]], fn: Callable[[str], object],
         limit: int | None = None) -> Walk:
    """Call ``fn(node)`` for every node once all its ``prerequisites`` (among ``nodes``) are done.

    Independent nodes run concurrently in threads, at most ``limit`` at a time; ready nodes start
    in the order of ``nodes``. A node whose call raised is in ``failed``; once anything failed no
    further call starts and the remaining nodes (its dependents included) are ``skipped``. A
    dependency cycle among the nodes raises ``ValueError`` before anything runs.
    """
    order = list(dict.fromkeys(nodes))
    members = set(order)
    waiting = {n: {p for p in prerequisites.get(n, ()) if p in members and p != n} for n in order}
    _check_acyclic(order, waiting)
    dependents: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for p in waiting[n]:
            dependents[p].append(n)
    ready = [n for n in order if not waiting[n]]
    result = Walk()
    if not order:
        return result
    limit = max(1, limit or parallel_limit())
    running: dict[Future[object], str] = {}
    pool = ThreadPoolExecutor(max_workers=min(limit, len(order)), thread_name_prefix="compose")
    interrupted = True
    try:
        while ready or running:
            while ready and not result.failed and len(running) < limit:
                node = ready.pop(0)
                running[pool.submit(fn, node)] = node
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: order.index(running[f])):
                node = running.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    result.failed[node] = exc
                    continue
                result.done.append(node)
                for d in dependents[node]:
                    waiting[d].discard(node)
                    if not waiting[d]:
                        ready.append(d)
        interrupted = False
    finally:
        # an interrupt (Ctrl-C) reaches this thread only: start nothing more and return at once
        # (the caller may want to kill what the running calls are waiting for)
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    seen = set(result.done) | set(result.failed)
    result.skipped = [n for n in order if n not in seen]
    return result


def _check_acyclic(order: list[str], waiting: Mapping[str, set[str]]) -> None:
    left = {n: set(ps) for n, ps in waiting.items()}
    free = [n for n in order if not left[n]]
    users: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for p in left[n]:
            users[p].append(n)
    seen = 0
    while free:
        n = free.pop()
        seen += 1
        for u in users[n]:
            left[u].discard(n)
            if not left[u]:
                free.append(u)
    if seen != len(order):
        stuck = sorted(n for n in order if left[n])
        raise ValueError(f"dependency cycle among {', '.join(stuck)}")
