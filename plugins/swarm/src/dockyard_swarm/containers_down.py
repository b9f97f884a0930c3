"""The containers of a node that is down (issue 15 item 6: "others are shown as on an unhealthy
node"), a part of the manager's ``containers`` service.

Swarm classic kept listing the containers of an engine it could not reach: ``docker ps`` showed
them with Status ``Host Down`` (State as last seen). So does the manager, for a node the
``nodes`` directory dropped (its lease expired) and for a node whose engine does not answer: the
cached entry stays, marked down (inspect answers from it, its ``Node`` gains
``"Status": "Unhealthy"``); a container the cache never saw (the manager started while the node
was down) is rebuilt from its ``containers/<id>`` record. When the node answers again, the next
listing or inspect replaces the entry with the engine's truth; the containers with a reschedule
policy are moved by the rescheduler instead (its ``recreate`` drops the old entry).

Any call that needs the node (start, logs, exec, ...) fails at once with 503 naming the node.
``docker rm`` without ``-f`` is refused the same way; ``docker rm -f`` removes the manager's
records (``containers/<id>``, ``names/<name>``, the reservation) and still answers 503, telling
the user the node is down: the container itself is removed from the node when it returns (a
``rescheduled/<id>`` marker with ``"new": "removed"``, which the rescheduler's sweep of a
returning node acts on, as for the stale copy of a rescheduled container).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from dockyard import errors as e

if TYPE_CHECKING:
    from dockyard_swarm.containers_cache import Placed

log = logging.getLogger(__name__)

#: ``Node.Status`` of a container whose node is down (the word of Swarm classic's ``/info``).
UNHEALTHY = "Unhealthy"


def mark_down(p: Placed) -> None:
    """Show ``p`` as on a node that is down."""
    if not p.down:
        p.down = True
        p.container.node = {**p.container.node, "Status": UNHEALTHY}


def doc_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """An inspect-like document from a ``containers/<id>`` record (its create body): what the
    manager knows of a container it never saw on its node. Its state is not known: "created"."""
    from datetime import UTC, datetime

    config = dict(record.get("config") or {})
    created = float(record.get("created") or 0)
    return {"Id": str(record["id"]), "Name": "/" + str(record.get("name") or "").lstrip("/"),
            "Config": {**config, "Image": config.get("Image", "")}, "HostConfig": config.get("HostConfig") or {},
            "State": {"Status": "created"},
            "Created": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z") if created else ""}


class DownNodes:
    """Mixin of :class:`~dockyard_swarm.containers.ClusterContainers` (uses its cache:
    ``_by_id``, ``_on_node``, ``_remember``, ``_forget``, ``_store_view``)."""

    if TYPE_CHECKING:
        _by_id: dict[str, Placed]
        _on_node: dict[str, dict[str, Placed]]

        def _remember(self, node: str, addr: str, doc: dict[str, Any], cpus: float = 0.0,
                      memory: int = 0) -> Placed: ...
        async def _forget(self, p: Placed) -> None: ...
        async def _store_view(self) -> Any: ...

    def _node_down(self, node: str) -> None:
        """Every cached container of ``node`` is shown on a node that is down."""
        for p in list(self._on_node.get(node, {}).values()):
            mark_down(p)

    def _nodes_dropped(self, known: set[str]) -> None:
        """The cached containers of nodes the directory no longer lists stay, marked down."""
        for node in [n for n, held in self._on_node.items() if held and n not in known]:
            self._node_down(node)

    def _from_record(self, record: dict[str, Any]) -> Placed:
        p = self._remember(str(record.get("node") or ""), "", doc_from_record(record),
                           float(record.get("cpus") or 0), int(record.get("memory") or 0))
        mark_down(p)
        return p

    async def _rebuild_dropped(self, known: set[str]) -> None:
        """The recorded containers of nodes the directory does not list and the cache does not
        hold (the manager started while their node was down)."""
        from dockyard_swarm.placement import CONTAINERS

        store = (await self._store_view()).store
        for kv in await store.list(CONTAINERS):
            try:
                record = kv.json()
            except ValueError:
                continue
            cid, node = str(record.get("id") or ""), str(record.get("node") or "")
            if cid and node and node not in known and not record.get("pending") and cid not in self._by_id:
                self._from_record(record)

    @staticmethod
    def _check_up(p: Placed) -> None:
        if p.down:
            raise e.Unavailable(f"container {p.bare_name} ({p.id[:12]}) is on node {p.node}, which is down")

    async def _remove_down(self, p: Placed, force: bool) -> None:
        """``docker rm`` of a container on a node that is down (see the module's docstring):
        always raises :class:`~dockyard.errors.Unavailable`."""
        if not force:
            raise e.Unavailable(f"container {p.bare_name} ({p.id[:12]}) is on node {p.node}, which is down: "
                                "it cannot be removed until the node returns (docker rm -f removes the "
                                "cluster's record of it now)")
        from dockyard_swarm.reschedule import RESCHEDULED

        store = (await self._store_view()).store
        marker = {"node": p.node, "id": p.id, "name": p.bare_name, "new": "removed", "to": "", "at": time.time()}
        await store.put(RESCHEDULED + p.id, json.dumps(marker).encode())
        await self._forget(p)
        log.info("container %s (%s) removed from the records while its node %s is down", p.bare_name, p.id[:12],
                 p.node)
        raise e.Unavailable(f"node {p.node} is down: container {p.bare_name} ({p.id[:12]}) is removed from the "
                            f"cluster's records; it is removed from {p.node} when the node returns")


__all__ = ["DownNodes", "UNHEALTHY", "doc_from_record", "mark_down"]
