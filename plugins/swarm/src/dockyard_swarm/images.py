"""The manager's ``images`` service: the images of every node, as Swarm classic showed them.

Reads answer from a per-node view (:class:`~dockyard_swarm.events.NodeView`) refreshed by the
nodes' image events: ``list`` groups an image held by several nodes into one entry (Swarm
classic grouped by ID and merged the names), ``resolve`` finds an ID, a prefix or a name on any
node, ``history`` and ``config_doc`` come from the node that holds it (fetched once per image
ID: an image never changes). Writes go to the nodes: ``tag`` and ``remove`` to every node
holding the image, ``load`` and ``bootstrap`` to every node, ``save`` from one node holding
every name asked for. Pulls fan out through the puller in :mod:`dockyard_swarm.images_pull`.

What only a local engine can do (install staged layers, commit, mount a rootfs, the content
store) raises :class:`~dockyard.errors.InvalidArgument` naming the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.model import Healthcheck, HistoryEntry, Image, ImageConfig
from dockyard.services import Service
from dockyard_swarm.events import NodeView, engine, nodes_service
from dockyard_swarm.tasks import json_lines

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.engines import EngineClient

Progress = Callable[[dict[str, Any]], None]


def not_on_manager(what: str) -> InvalidArgument:
    return InvalidArgument(f"{what} is not available on a swarm manager: it is done on a node's engine")


@dataclass
class NodeImage:
    """One image on one node: its list entry, inspect document and history (by the engine)."""

    summary: dict[str, Any]
    inspect: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.summary.get("Id") or self.inspect.get("Id") or "")

    @property
    def tags(self) -> list[str]:
        return [t for t in self.summary.get("RepoTags") or [] if t != "<none>:<none>"]

    @property
    def digests(self) -> list[str]:
        return [d for d in self.summary.get("RepoDigests") or [] if d != "<none>@<none>"]


async def fetch_images(client: EngineClient, previous: dict[str, NodeImage] | None) -> dict[str, NodeImage]:
    """A node's images by ID; inspect and history are fetched only for IDs not seen before."""
    listed = await client.get("/images/json") or []
    out: dict[str, NodeImage] = {}
    for summary in listed:
        iid = str(summary.get("Id") or "")
        known = (previous or {}).get(iid)
        if known is not None:
            out[iid] = NodeImage(summary, known.inspect, known.history)
            continue
        try:
            inspect, history = await asyncio.gather(client.get(f"/images/{iid}/json"),
                                                    client.get(f"/images/{iid}/history"))
        except NotFound:
            continue  # removed between the list and the inspect
        out[iid] = NodeImage(summary, inspect or {}, list(history or []))
    return out


def _keys(doc: Any) -> list[str]:
    return sorted(doc) if isinstance(doc, dict) else []


def image_model(img: NodeImage, tags: list[str] | None = None, digests: list[str] | None = None) -> Image:
    """A node's image as core's :class:`~dockyard.model.Image` (what the API front renders)."""
    doc = img.inspect
    cfg = doc.get("Config") or {}
    hc = cfg.get("Healthcheck")
    return Image(
        id=img.id,
        repo_tags=list(img.tags if tags is None else tags),
        repo_digests=list(img.digests if digests is None else digests),
        parent=str(doc.get("Parent") or img.summary.get("ParentId") or ""),
        created=str(doc.get("Created") or ""),
        author=str(doc.get("Author") or ""),
        comment=str(doc.get("Comment") or ""),
        architecture=str(doc.get("Architecture") or "amd64"),
        os=str(doc.get("Os") or "linux"),
        variant=str(doc.get("Variant") or ""),
        config=ImageConfig(cmd=list(cfg.get("Cmd") or []), entrypoint=list(cfg.get("Entrypoint") or []),
                           env=list(cfg.get("Env") or []), working_dir=str(cfg.get("WorkingDir") or ""),
                           user=str(cfg.get("User") or ""), labels=dict(cfg.get("Labels") or {}),
                           exposed_ports=_keys(cfg.get("ExposedPorts")), volumes=_keys(cfg.get("Volumes")),
                           stop_signal=str(cfg.get("StopSignal") or ""),
                           healthcheck=Healthcheck(test=list(hc.get("Test") or []),
                                                   interval=int(hc.get("Interval") or 0),
                                                   timeout=int(hc.get("Timeout") or 0),
                                                   start_period=int(hc.get("StartPeriod") or 0),
                                                   retries=int(hc.get("Retries") or 0)) if isinstance(hc, dict) else None,
                           on_build=list(cfg.get("OnBuild") or []), shell=list(cfg.get("Shell") or [])),
        layers=list((doc.get("RootFS") or {}).get("Layers") or []),
        size=int(doc.get("Size") or img.summary.get("Size") or 0),
        history=[HistoryEntry(created=str(h.get("Created") or ""), created_by=str(h.get("CreatedBy") or ""),
                              comment=str(h.get("Comment") or "")) for h in img.history],
        last_tag_time=str((doc.get("Metadata") or {}).get("LastTagTime") or ""),
    )


async def _chunks(path: str, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """A file's bytes, read in a worker thread a MiB at a time (a body sent to a node)."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk
    finally:
        f.close()


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def _familiar(name: str) -> str:
    from dockyard.reference import parse_normalized

    try:
        return parse_normalized(name).familiar()
    except DockyardError:
        return name


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class ClusterImages(Service):
    """The manager's ``images`` service over every node's engine."""

    name = "images"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self.view: NodeView[dict[str, NodeImage]] = NodeView(kernel, "images", {"image"}, fetch_images)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    # ------------------------------------------------------------------ the view
    def holders(self, image_id: str) -> list[str]:
        """Nodes holding image ``image_id``, by name."""
        return [n for n, imgs in self.view.items() if image_id in imgs]

    def _matches(self, ref: str) -> list[tuple[str, NodeImage]]:
        """``(node, image)`` for ``ref``, in dockerd's order: a full ID (or ``sha256:`` and
        hex digits), else a name (``:latest`` implied) or a digest reference, else an ID prefix
        of 4 hex digits or more. A name made of hex digits (``cafe``, ``1234``) is a name first:
        an image whose ID starts with those digits is another image."""
        digits = ref.removeprefix("sha256:")
        hexed = _is_hex(digits)
        if hexed and (len(digits) == 64 or ref.startswith("sha256:")):
            return self._by_id(digits)
        last = ref.rsplit("/", 1)[-1]
        wanted = _familiar(ref if ":" in last or "@" in ref else f"{ref}:latest")
        named = [(n, img) for n, imgs in self.view.items() for img in imgs.values()
                 if wanted in {_familiar(t) for t in img.tags} | {_familiar(d) for d in img.digests}]
        return named if named or not hexed else self._by_id(digits)

    def _by_id(self, digits: str) -> list[tuple[str, NodeImage]]:
        prefix = f"sha256:{digits}"
        return [(n, img) for n, imgs in self.view.items() for iid, img in imgs.items()
                if iid == prefix or (len(digits) >= 4 and iid.startswith(prefix))]

    def _grouped(self, found: list[tuple[str, NodeImage]]) -> Image:
        first = found[0][1]
        same = [img for _n, img in found if img.id == first.id]
        return image_model(first, _dedupe(t for img in same for t in img.tags),
                           _dedupe(d for img in same for d in img.digests))

    def list(self) -> list[Image]:
        """Every image of every node once (grouped by ID, names merged), as Swarm classic."""
        groups: dict[str, list[tuple[str, NodeImage]]] = {}
        for node, imgs in self.view.items():
            for iid, img in imgs.items():
                groups.setdefault(iid, []).append((node, img))
        return [self._grouped(found) for found in groups.values()]

    def get(self, image_id: str) -> Image:
        return self.resolve(image_id)

    def resolve(self, ref: str) -> Image:
        """The image ``ref`` names; a name several nodes hold with different IDs is the first
        node's (each node resolves its own when asked by name); an ambiguous ID prefix is a
        :class:`~dockyard.errors.Conflict`."""
        found = self._matches(ref)
        if not found:
            raise NotFound(f"No such image: {ref}")
        ids = {img.id for _n, img in found}
        digits = ref.removeprefix("sha256:")
        if len(ids) > 1 and _is_hex(digits) and f"sha256:{digits}" not in ids:
            raise Conflict(f"conflict: unable to resolve image {ref!r}: the prefix matches several images")
        return self._grouped(found)

    # multi-platform images (core's Images, versionadded 0.3): each node keeps its own indexes;
    # the manager resolves a platform against the image the nodes hold by that name
    def indexes(self) -> list[Any]:
        return []

    def index_of(self, ref: str) -> Any:
        return None

    def resolve_platform(self, ref: str, platform: str) -> Image:
        from dockyard import platforms

        image = self.resolve(ref)
        want = platforms.parse(platform)
        actual = platforms.Platform(image.os or "linux", image.architecture, image.variant)
        if not platforms.only(want).match(actual):
            raise NotFound(platforms.mismatch_message(ref, want, platforms.normalize(actual)))
        return image

    async def record_index(self, raw: bytes, media_type: str, tags: list[str], members: dict[str, str],
                           source: str = "pull") -> Any:
        raise Unavailable("image indexes are kept by each node's engine, not by the swarm manager")

    async def add_to_tag(self, tag: str, image: Image, source: str = "local") -> Any:
        raise Unavailable("image indexes are kept by each node's engine, not by the swarm manager")

    def config_doc(self, image: Image) -> dict[str, Any]:
        for _n, imgs in self.view.items():
            found = imgs.get(image.id)
            if found is not None:
                doc = found.inspect
                return {"config": doc.get("Config"), "container_config": doc.get("ContainerConfig"),
                        "container": doc.get("Container") or "", "docker_version": doc.get("DockerVersion") or "",
                        "architecture": doc.get("Architecture"), "os": doc.get("Os")}
        raise NotFound(f"No such image: {image.id}")

    def history(self, ref: str) -> list[dict[str, Any]]:
        found = self._matches(ref)
        if not found:
            raise NotFound(f"No such image: {ref}")
        return list(found[0][1].history)

    def df(self) -> dict[str, Any]:
        return {"LayersSize": sum(int(img.summary.get("Size") or 0) for _n, imgs in self.view.items()
                                  for img in imgs.values())}

    async def has_layer(self, chain_id: str) -> bool:
        return False

    @property
    def content(self) -> Any:
        raise not_on_manager("the content store")

    async def driver(self) -> Any:
        raise not_on_manager("the layer driver")

    # ------------------------------------------------------------------ changes
    async def _nodes_holding(self, ref: str) -> list[Any]:
        found = self._matches(ref)
        if not found:
            raise NotFound(f"No such image: {ref}")
        names = _dedupe(n for n, _img in found)
        directory = nodes_service(self.kernel)
        return [await directory.node(n) for n in names]

    async def _healthy_nodes(self) -> list[Any]:
        nodes = [n for n in await nodes_service(self.kernel).nodes() if n.healthy]
        if not nodes:
            raise NotFound("no healthy node in the cluster")
        return nodes

    async def tag(self, source: str, repo: str, tag: str = "") -> Image:
        """Tag the image on every node holding it (Swarm classic's TagImage), by its ID there:
        a node holding the same image under other names gets the tag too."""
        found = self._matches(source)
        if not found:
            raise NotFound(f"No such image: {source}")
        ids = {img.id for _n, img in found}
        targets = [(n, iid) for n, imgs in self.view.items() for iid in imgs if iid in ids]
        directory = nodes_service(self.kernel)
        nodes = {n: await directory.node(n) for n in {n for n, _i in targets}}
        await asyncio.gather(*(engine(self.kernel, nodes[n]).post(f"/images/{iid}/tag", {"repo": repo, "tag": tag or None})
                               for n, iid in targets))
        await asyncio.gather(*(self.view.refresh(n) for n in nodes))
        return self.resolve(f"{repo}:{tag or 'latest'}")

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """Remove the image from every node holding it; the engines' records, merged."""
        nodes = await self._nodes_holding(ref)
        results = await asyncio.gather(*(engine(self.kernel, n).json("DELETE", f"/images/{ref}",
                                                                      {"force": force, "noprune": not prune})
                                         for n in nodes), return_exceptions=True)
        await asyncio.gather(*(self.view.refresh(n.name) for n in nodes))
        records: list[dict[str, str]] = []
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if isinstance(r, list):
                records.extend(x for x in r if x not in records)
        if errors and not records:
            raise errors[0]
        return records

    async def prune(self, dangling_only: bool = True, match: Callable[[Image], bool] | None = None
                    ) -> tuple[list[dict[str, str]], int]:
        """Remove, on each node, the images it holds that are dangling (or unused, with
        ``dangling_only`` False) and ``match``; an image a container uses is kept (409)."""
        records: list[dict[str, str]] = []
        reclaimed = 0
        for name, imgs in self.view.items():
            node = await nodes_service(self.kernel).node(name)
            client = engine(self.kernel, node)
            for img in list(imgs.values()):
                if dangling_only and (img.tags or img.digests):
                    continue
                if match is not None and not match(image_model(img)):
                    continue
                try:
                    done = await client.json("DELETE", f"/images/{img.id}")
                except (Conflict, NotFound):
                    continue
                records.extend(done or [])
                reclaimed += int(img.summary.get("Size") or 0)
            await self.view.refresh(name)
        return records, reclaimed

    def save_stream(self, names: list[str]) -> AsyncIterator[bytes]:
        """``docker save`` from one node holding every image named."""
        return self._save(names)

    async def _save(self, names: list[str]) -> AsyncIterator[bytes]:
        holders: set[str] | None = None
        for ref in names:
            found = {n for n, _img in self._matches(ref)}
            if not found:
                raise NotFound(f"No such image: {ref}")
            holders = found if holders is None else holders & found
        if not holders:
            raise NotFound(f"no node holds every image of {', '.join(names)}")
        node = await nodes_service(self.kernel).node(sorted(holders)[0])
        query = urlencode([("names", n) for n in names])
        async with engine(self.kernel, node).stream("GET", f"/images/get?{query}") as resp:
            async for chunk in resp.content.iter_any():
                yield chunk

    async def _spool(self, source: Any) -> str:
        """The request body (a blocking reader) in a temporary file, to send to every node."""
        fd, path = tempfile.mkstemp(prefix="dockyard-swarm-", suffix=".tar")

        def copy() -> None:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(1 << 20)
                    if not chunk:
                        return
                    out.write(chunk)

        await asyncio.to_thread(copy)
        return path

    async def _each_node_upload(self, path: str, target: str, params: dict[str, Any],
                                progress: Progress | None) -> list[str]:
        nodes = await self._healthy_nodes()
        lines: list[str] = []

        async def one(node: Any) -> None:
            if progress is not None:
                progress({"status": f"Loading on {node.name}...", "id": node.name})
            # an async body (a file object as aiohttp's payload stalled against a node's engine)
            async with engine(self.kernel, node).stream("POST", target, params, data=_chunks(path),
                                                        headers={"Content-Type": "application/x-tar"}) as resp:
                async for msg in json_lines(resp.content):
                    if msg.get("error"):
                        raise DockyardError(f"node {node.name}: {msg['error']}")
                    text = str(msg.get("stream") or msg.get("status") or "").strip()
                    if text and not msg.get("progressDetail"):
                        lines.append(f"{node.name}: {text}")
            if progress is not None:
                progress({"status": f"Loaded on {node.name}", "id": node.name, "done": True})
            await self.view.refresh(node.name)

        results = await asyncio.gather(*(one(n) for n in nodes), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and len(errors) == len(nodes):
            raise errors[0]
        lines.extend(f"{e}" for e in errors)
        return lines

    async def load(self, source: Any, progress: Progress | None = None) -> list[str]:
        """``docker load`` on every healthy node (the archive is read once)."""
        path = await self._spool(source)
        try:
            return await self._each_node_upload(path, "/images/load", {"quiet": True}, progress)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def import_image(self, source: Any, *, repo: str = "", tag: str = "", changes: Iterable[str] = (),
                           message: str = "", src: str = "-", progress: Progress | None = None) -> Image:
        """``docker import`` on every healthy node."""
        path = await self._spool(source)
        try:
            await self._each_node_upload(path, "/images/create", {"fromSrc": "-", "repo": repo or None,
                                                                  "tag": tag or None, "message": message or None},
                                         progress)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if repo:
            return self.resolve(f"{repo}:{tag or 'latest'}")
        imgs = self.list()
        if not imgs:
            raise NotFound("the imported image is not found on any node")
        return max(imgs, key=lambda i: i.created)

    async def bootstrap(self, name: str = "busybox", busybox: str = "/bin/busybox", platform: str = "") -> Image:
        """dockyard's offline busybox image, made on every healthy node."""
        nodes = await self._healthy_nodes()
        params = {"name": name, **({"platform": platform} if platform else {})}
        await asyncio.gather(*(engine(self.kernel, n).post("/dockyard/images/bootstrap", params)
                               for n in nodes))
        await asyncio.gather(*(self.view.refresh(n.name) for n in nodes))
        return self.resolve(name)

    async def pulled(self, node: str) -> None:
        """A pull through the manager finished on ``node``: see its images now."""
        await self.view.refresh(node)

    # ------------------------------------------------------------------ a local engine's only
    async def install(self, plans: list[Any], source: str, progress: Progress | None = None) -> list[Any]:
        raise not_on_manager("installing image layers")

    async def commit(self, layer_key: str = "", **kwargs: Any) -> Image:
        raise not_on_manager("commit")

    async def prepare_rootfs(self, key: str, image_ref: str) -> str:
        raise not_on_manager("a container root filesystem")

    async def remove_rootfs(self, key: str) -> None:
        raise not_on_manager("a container root filesystem")

    def store_put(self, image: Image) -> None:
        raise not_on_manager("recording image metadata")


__all__ = ["ClusterImages", "NodeImage", "fetch_images", "image_model"]
