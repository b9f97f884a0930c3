"""``POST /containers/{id}/migrate?node=NAME`` on a swarm manager: the same move, driven by the
manager through the nodes' engines (its own mutual-TLS client material): a ticket from the
target node, the source node's ``/dockyard/v1/containers/{id}/migrate`` streamed back to the
client, then the cluster's records (``containers/<id>``, ``names/<name>``) moved to the new ID
and node in one transaction. Reached through core's service seam only (``nodes``, ``engines``
and ``containers`` by name), never by importing the swarm plugin.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument, NotFound
from dockyard.server import KERNEL_KEY
from dockyard.specs.cluster import Delete, Put


async def migrate(request: web.Request) -> web.StreamResponse:
    from dockyard_migrate.api import body_of, options_of

    kernel = request.app[KERNEL_KEY]
    node_name = str(request.query.get("node") or "")
    if not node_name:
        raise InvalidArgument("migrate on a manager needs ?node=NAME (the target node)")
    body = await body_of(request)
    opts = options_of(request, body)
    containers: Any = kernel.containers
    placed = await containers.refresh(request.match_info["id"])
    if placed.node == node_name:
        raise InvalidArgument(f"container {placed.bare_name} already runs on {node_name}")
    nodes: Any = kernel.service("nodes")
    engines: Any = kernel.service("engines")
    target = engines.for_node(await nodes.node(node_name))
    source = engines.for_node(await nodes.node(placed.node))
    params = {"mode": opts.mode, "lazy-threshold": opts.lazy_threshold}
    ticket = await target.post("/dockyard/v1/migrations", params)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    new_id = ""
    async for doc in source.stream_json("POST", f"/dockyard/v1/containers/{placed.id}/migrate", params,
                                        body={"Ticket": ticket, "Mode": opts.mode, "LazyThreshold": opts.lazy_threshold}):
        if "Result" in doc:
            new_id = str(doc["Result"].get("Id") or "")
        await resp.write(json.dumps(doc).encode() + b"\n")
    if new_id:
        await _move_records(kernel, placed.id, new_id, node_name, placed.bare_name)
        # the old ID's node no longer has it: the manager forgets it (and the source node's
        # reservation) as after an rm; the name already belongs to the new ID
        with contextlib.suppress(NotFound):
            await containers.refresh(placed.id)
        await containers.refresh(new_id)
    return resp


async def _move_records(kernel: Any, old_id: str, new_id: str, node: str, name: str) -> None:
    store = await kernel.cluster_store()
    kv = await store.get(f"containers/{old_id}")
    rec = json.loads(kv.value) if kv is not None else {"name": name}
    rec.update(id=new_id, node=node)
    await store.txn([], [Put(f"containers/{new_id}", json.dumps(rec).encode()), Put(f"names/{name}", new_id.encode()),
                         Delete(f"containers/{old_id}")])
