"""The ``provenance-log`` plugin: the host's signed lifecycle log (core's ``EventJournal``), the
middleware that acknowledges no request before its events are written, attested builds
(``dockyard_build_record``), and ``/dockyard/v1/provenance/{log,verify,attestations}``.

Where the append happens in a request's path: the service emits the event after its
transaction committed; the kernel's event bus numbers it and hands it to the journal (a queue,
in the event loop) before any hook or ``/events`` subscriber sees it; the
``provenance-durable`` middleware (outermost but for a swarm replica's proxy) waits, after the
handler, until the journal has written everything emitted so far, then lets the answer go.
Streamed answers (pull, push, build, attach) have sent their body by then: their last entries
are written within one batch of their end.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard.errors import NotFound
from dockyard.specs import ApiMiddleware, ApiRoute, ConfigOption, Provided, hookimpl
from dockyard.specs.events import EventJournal
from dockyard.specs.storage import ImageAttachments

PREFIX = "/dockyard/v1/provenance"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def log_dir(kernel: Any) -> Path:
    return Path(kernel.config.data_root) / "provenance"


class LazyJournal(EventJournal):
    """Opens the files (and starts the writer) only when the kernel starts using it, so a CLI
    process that merely lists what plugins provide touches nothing."""

    def __init__(self, directory: Path, sync: str) -> None:
        self.directory, self.sync = directory, sync
        self._journal: Any = None

    @property
    def journal(self) -> Any:
        if self._journal is None:
            from dockyard_provenance.journal import LifecycleJournal

            self._journal = LifecycleJournal(self.directory, self.sync)
        return self._journal

    def last_seq(self) -> int:
        return int(self.journal.last_seq())

    def append(self, event: Any) -> None:
        self.journal.append(event)

    async def durable(self, seq: int = 0) -> None:
        if self._journal is not None:
            await self._journal.durable(seq)

    async def close(self) -> None:
        if self._journal is not None:
            await self._journal.close()


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [ConfigOption("lifecycle-log-sync", str, "write",
                         "when the lifecycle log acknowledges an entry: write (in the page cache: "
                         "survives kill -9 of the daemon) or fsync (on disk: survives power loss)"),
            ConfigOption("attestation-key", str, "",
                         "PEM private key (ECDSA P-256 or Ed25519) signing build attestations; "
                         "empty: the host's own <data-root>/provenance/attest.key")]


class PushAttestations(ImageAttachments):
    """Core's ``ImageAttachments``: on push, each kept attestation of the image goes up as a
    layer of cosign's ``.att`` manifest, about the manifest digest the push made."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    async def pushed(self, session: Any, repository: str, image: Any, digest: str) -> list[str]:
        from dockyard_provenance import attest

        kept = attest.local_attestations(Path(self.kernel.config.data_root), image.id)
        if not kept:
            return []
        key = _attestation_key(self.kernel)
        name = f"{session.host}/{repository}"
        lines = []
        for env in kept:
            attest.verify_envelope(env, key.public_key(), image.id)  # ours, about this image
            pushed = attest.for_manifest(key, env, name, digest, image.id)
            await attest.attach(session, repository, digest, pushed)
            lines.append(f"Pushed attestation {attest.att_tag(digest)}")
        return lines


@hookimpl
def dockyard_provides(kernel: Any) -> list[Provided]:
    sync = str(kernel.config.get("lifecycle-log-sync") or "write")
    return [Provided(EventJournal, LazyJournal(log_dir(kernel), sync), "provenance-log"),
            Provided(ImageAttachments, PushAttestations(kernel), "provenance-log")]


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    @web.middleware
    async def durable(request: web.Request, handler: Any) -> Any:
        if request.method in SAFE:
            return await handler(request)
        try:
            return await handler(request)
        finally:
            await kernel.events.durable()

    return [ApiMiddleware("provenance-durable", durable, order=5)]


@hookimpl
def dockyard_build_record(kernel: Any, image: Any, record: dict[str, Any]) -> None:
    from dockyard_provenance import attest

    key = _attestation_key(kernel)
    tags = (record.get("buildDefinition") or {}).get("externalParameters", {}).get("tags") or []
    attest.attest_build(Path(kernel.config.data_root), key, image.id, tags[0] if tags else image.id, record)


@hookimpl
def dockyard_event(kernel: Any, event: Any) -> None:
    """An image's kept attestations go with it (image GC does not know them)."""
    if event.type == "image" and event.action == "delete" and event.actor_id.startswith("sha256:"):
        from dockyard_provenance import attest

        path = attest.store_dir(Path(kernel.config.data_root)) / (event.actor_id.partition(":")[2] + ".json")
        path.unlink(missing_ok=True)


_keys: dict[tuple[str, str], Any] = {}


def _attestation_key(kernel: Any) -> Any:
    from dockyard_provenance import attest

    configured = str(kernel.config.get("attestation-key") or "")
    cache_key = (str(kernel.config.data_root), configured)
    if cache_key not in _keys:
        _keys[cache_key] = attest.load_key(log_dir(kernel), configured)
    return _keys[cache_key]


# ---------------------------------------------------------------------------------------------
# the API


def _kernel(request: web.Request) -> Any:
    from dockyard.server import KERNEL_KEY

    return request.app[KERNEL_KEY]


def subject_of(kernel: Any, ref: str) -> tuple[str, set[str], set[str]]:
    """(kind, IDs, names) of the container or image ``ref`` names; for an object that is gone,
    entries whose actor ID starts with ``ref`` or whose ``name`` attribute is ``ref``."""
    from dockyard.reference import familiar

    try:
        c = kernel.containers.get(ref)
        return "container", {c.id}, {c.name.lstrip("/")}
    except (NotFound, Exception):  # noqa: BLE001 - no containers service: try images
        pass
    try:
        img = kernel.images.resolve(ref)
        names = {img.id, *img.repo_tags}
        names |= {familiar(t) for t in img.repo_tags}
        names |= {t.rsplit(":", 1)[0] for t in set(names) if ":" in t and not t.startswith("sha256:")}
        return "image", {img.id}, names
    except (NotFound, Exception):  # noqa: BLE001
        pass
    from dockyard_provenance.journal import LOG_NAME, Entry, read_entries

    ids: set[str] = set()
    bare = ref.removeprefix("sha256:")
    for e in read_entries(log_dir(kernel) / LOG_NAME):
        if isinstance(e, Entry):
            actor = str(e.event.get("actor") or "")
            if ((len(bare) >= 4 and actor.removeprefix("sha256:").startswith(bare))
                    or (e.event.get("attributes") or {}).get("name") == ref):
                ids.add(actor)
    if not ids:
        raise NotFound(f"no container, image or lifecycle log entry named {ref!r}")
    return "gone", ids, set()


async def show(request: web.Request) -> web.Response:
    from dockyard_provenance.journal import story

    kernel = _kernel(request)
    ref = request.query.get("object", "")
    await kernel.events.durable()
    kind, ids, names = subject_of(kernel, ref)
    entries = await asyncio.to_thread(story, log_dir(kernel), ids, names if kind == "image" else set())
    return web.json_response({"Object": ref, "Kind": kind, "IDs": sorted(ids), "Entries": entries})


async def verify(request: web.Request) -> web.Response:
    from dockyard_provenance.journal import verify as check

    kernel = _kernel(request)
    await kernel.events.durable()
    verdict = await asyncio.to_thread(check, log_dir(kernel))
    return web.json_response(verdict.as_json())


async def attestations(request: web.Request) -> web.Response:
    from dockyard_provenance import attest

    kernel = _kernel(request)
    img = kernel.images.resolve(request.query.get("image", ""))
    pub = _attestation_key(kernel).public_key()
    out = []
    for env in attest.local_attestations(Path(kernel.config.data_root), img.id):
        try:
            stmt = attest.verify_envelope(env, pub, img.id)
            out.append({"Verified": True, "Statement": stmt, "Envelope": env})
        except attest.AttestationError as exc:
            out.append({"Verified": False, "Error": str(exc), "Envelope": env})
    return web.json_response({"Image": img.id, "Attestations": out}, dumps=lambda d: json.dumps(d, indent=1))


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return [ApiRoute("GET", PREFIX + "/log", show, name="dockyard-provenance-log"),
            ApiRoute("GET", PREFIX + "/verify", verify, name="dockyard-provenance-verify"),
            ApiRoute("GET", PREFIX + "/attestations", attestations, name="dockyard-provenance-attestations")]
