"""``docker pull`` on a swarm manager: the image is pulled on every healthy node at once.

A ``dockyard.plugins`` hook module: :func:`dockyard_image_puller` answers first (``tryfirst``)
on a kernel whose role is ``manager``, and only there, so the front's ``POST /images/create``
and the builder's ``FROM`` reach the nodes instead of a registry client on the manager. The
answer is Swarm classic's merged progress: per node ``{"id": NODE, "status": "Pulling IMAGE..."}``,
the node's own progress lines with ``id`` ``NODE: LAYER``, and a last line per node,
``Pulling IMAGE... : downloaded`` or ``Pulling IMAGE... : <error>``. The stream ends with an
``error`` line only when no node could pull it (the CLI then exits non-zero), as an image
present on some nodes can still be run there.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dockyard.errors import DockyardError, NotFound
from dockyard.model import Image
from dockyard.specs import hookimpl
from dockyard.specs.storage import ImagePuller
from dockyard_swarm.tasks import json_lines

MANAGER = "manager"


@hookimpl(tryfirst=True)
def dockyard_image_puller(kernel: Any) -> ImagePuller | None:
    if kernel.role != MANAGER or not kernel.has_service("nodes"):
        return None
    return ImagePuller("swarm", pull=pull, handler=pull_handler)


def _auth_header(auth: dict[str, Any] | None) -> dict[str, str]:
    import base64

    if not auth:
        return {}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()}


async def pull_everywhere(kernel: Any, image: str, tag: str, platform: str, headers: dict[str, str],
                          send: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """Pull ``image:tag`` on every healthy node; ``send(msg)`` gets the merged progress.
    Returns (nodes that pulled it, (node, error) of those that failed)."""
    from dockyard_swarm.events import engine, nodes_service

    nodes = [n for n in await nodes_service(kernel).nodes() if n.healthy]
    if not nodes:
        raise NotFound("no healthy node in the cluster to pull on")
    name = f"{image}:{tag}" if tag and "@" not in image else image
    what = f"Pulling {name}..."
    done: list[str] = []
    failed: list[tuple[str, str]] = []

    async def one(node: Any) -> None:
        await send({"id": node.name, "status": what, "progressDetail": {}})
        params = {"fromImage": image, "tag": tag or None, "platform": platform or None}
        try:
            async with engine(kernel, node).stream("POST", "/images/create", params, headers=headers) as resp:
                async for msg in json_lines(resp.content):
                    if msg.get("error"):
                        raise DockyardError(str(msg["error"]))
                    if msg.get("id"):
                        msg["id"] = f"{node.name}: {msg['id']}"
                    else:
                        msg["id"] = node.name
                    await send(msg)
        except DockyardError as exc:
            failed.append((node.name, str(exc)))
            await send({"id": node.name, "status": f"{what} : {exc}", "progressDetail": {}})
            return
        done.append(node.name)
        await send({"id": node.name, "status": f"{what} : downloaded", "progressDetail": {}})
        if kernel.has_service("images"):
            pulled = getattr(kernel.service("images"), "pulled", None)
            if pulled is not None:
                await pulled(node.name)

    await asyncio.gather(*(one(n) for n in nodes))
    return done, failed


async def pull(kernel: Any, reference: str, platform: str = "", auth: dict[str, Any] | None = None,
               progress: Any = None) -> Image:
    """The service entry (the builder's ``FROM``): pull on every node, return the image."""
    from dockyard.reference import parse_normalized

    ref = parse_normalized(reference)
    image, tag = (ref.familiar_name, ref.tag) if not ref.digest else (ref.familiar(), "")

    async def send(msg: dict[str, Any]) -> None:
        if progress is not None:
            progress(msg)

    done, failed = await pull_everywhere(kernel, image, tag, platform, _auth_header(auth), send)
    if not done:
        raise DockyardError("; ".join(f"{n}: {err}" for n, err in failed))
    return kernel.images.resolve(reference)


async def pull_handler(request: Any) -> Any:
    """``POST /images/create?fromImage=`` on the manager: the merged JSON-message stream."""
    from aiohttp import web

    from dockyard.server import KERNEL_KEY

    kernel = request.app[KERNEL_KEY]
    q = request.query
    image, tag = q["fromImage"], q.get("tag", "")
    if not tag and "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        tag = "latest"
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        image, _, tag = image.rpartition(":")
    headers = {"X-Registry-Auth": request.headers["X-Registry-Auth"]} if "X-Registry-Auth" in request.headers else {}
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    lock = asyncio.Lock()

    async def send(msg: dict[str, Any]) -> None:
        async with lock:
            await resp.write((json.dumps(msg, separators=(",", ":")) + "\r\n").encode())

    try:
        done, failed = await pull_everywhere(kernel, image, tag, q.get("platform", ""), headers, send)
        if not done:
            text = "; ".join(f"{n}: {err}" for n, err in failed) or "no node pulled the image"
            await send({"errorDetail": {"message": text}, "error": text})
    except DockyardError as exc:
        await send({"errorDetail": {"message": str(exc)}, "error": str(exc)})
    await resp.write_eof()
    return resp


__all__ = ["dockyard_image_puller", "pull", "pull_everywhere", "pull_handler"]
