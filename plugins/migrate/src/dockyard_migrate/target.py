"""The target's half of the ``stream`` migrator: a one-time receiver.

``offer`` listens on a fresh port (TLS with the engine's own server certificate when it has
one) and accepts one connection presenting the ticket's token before it lapses. The receiver
checks what it can before the source freezes anything (the image is here, the name is free,
this engine can restore checkpoints, every volume can be made), loads the container's image
from the source when it is not here (while the container still runs), then unpacks the archive
stream
into ``<data-root>/migrate/<id>/archive`` (the layout of a portable checkpoint archive, never
a second copy of it), fills each volume straight from its stream, and restores the container
with the engine's ``checkpoint_import``. Once it runs, the journal says ``restored`` (durably)
before the source is told: from then on the target's copy is the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

from dockyard import checkpoints as layout
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.services.containers import CheckpointImport
from dockyard.specs.storage import MigrationOptions, MigrationTicket, VolumeCarrier
from dockyard_migrate.common import (
    Journal,
    Record,
    ThreadReader,
    data_dir,
    hold_addresses,
    lazy_pipe_size,
    phase_reached,
)
from dockyard_migrate.wire import Wire, WireError

log = logging.getLogger(__name__)
OFFER_TTL = 60.0


class ImageRefused(DockyardError):
    """The container's image that the source sent could not be loaded here."""


def server_ssl(kernel: Any) -> ssl.SSLContext | None:
    cfg = kernel.config
    cert, key = cfg.get("tlscert"), cfg.get("tlskey")
    if not (cert and key) or not (cfg.get("tls") or cfg.get("tlsverify")):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def extract_archive_stream(root: Path, src: Any) -> None:
    """Unpack the archive's tar stream into ``root``: plain files and directories only, no
    name climbing out (the rules of :func:`dockyard.checkpoints.read_archive`)."""
    from dockyard.checkpoints import extract_stream

    extract_stream(src, root, "migration archive")


class Receiver:
    def __init__(self, kernel: Any, migrator: str, carriers: dict[str, VolumeCarrier]) -> None:
        self.kernel = kernel
        self.migrator = migrator
        self.carriers = carriers
        self.journal = Journal(data_dir(kernel) / "journal")

    async def offer(self, options: MigrationOptions, listen: str) -> MigrationTicket:
        containers = self.kernel.containers  # ServiceNotInstalled when this is no engine
        del containers
        token = secrets.token_hex(32)
        served = asyncio.Event()
        sslctx = server_ssl(self.kernel)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            wire = Wire(reader, writer)
            try:
                hello = await asyncio.wait_for(wire.recv_json(), 10)
                if served.is_set() or not hmac.compare_digest(str(hello.get("token") or ""), token):
                    await wire.send_json({"type": "error", "message": "migration ticket refused"})
                    return
                served.set()
                server.close()
                await self.receive(wire, hello)
            except Exception as exc:  # noqa: BLE001 - reported to the source, logged here
                log.warning("incoming migration failed: %s", exc)
            finally:
                await wire.close()

        server = await asyncio.start_server(handle, listen or "127.0.0.1", 0, ssl=sslctx)
        port = server.sockets[0].getsockname()[1]

        async def lapse() -> None:
            await asyncio.sleep(OFFER_TTL)
            if not served.is_set():
                server.close()

        task = asyncio.get_running_loop().create_task(lapse())
        self._tasks = getattr(self, "_tasks", set())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        host = "" if not listen or listen in ("0.0.0.0", "::") else listen
        return MigrationTicket(address=f"{host}:{port}", token=token, migrator=self.migrator, tls=sslctx is not None,
                               expires=time.time() + OFFER_TTL)

    # ------------------------------------------------------------------ one migration
    def preflight(self, hello: dict[str, Any]) -> bool:
        """What can be checked before anything moves: the name is free, every volume has a
        carrier, the image is here (by ID). Returns True when it is not and the source offered
        to send it (``image_transfer`` in its hello): :meth:`receive_image` comes next. The
        image is checked last, so a move refused for another reason sends no image."""
        k = self.kernel
        name = str(hello.get("name") or "")
        with contextlib.suppress(NotFound):
            k.containers.get(name)
            raise Conflict(f"a container named {name} already exists on the target")
        for vol in hello.get("volumes") or []:
            if vol.get("driver") not in {d for c in self.carriers.values() for d in c.drivers}:
                raise InvalidArgument(f"no migration carrier for volume driver {vol.get('driver')!r} on the target")
            with contextlib.suppress(NotFound):
                existing = k.volumes.get(vol["name"])
                if existing.mountpoint and os.path.isdir(existing.mountpoint) and os.listdir(existing.mountpoint):
                    carrier = next(c for c in self.carriers.values() if existing.driver in c.drivers)
                    if carrier.receive is not None:
                        raise Conflict(f"volume {vol['name']} already exists on the target and is not empty")
        image = str(hello.get("image") or "")
        want = str(hello.get("image_id") or "")
        if want:
            with contextlib.suppress(NotFound):
                k.images.get(want)
                return False  # the same image (by ID): the import finds it by name or by ID
        else:  # a source that did not say which image: by name, as it is
            k.images.resolve(image)
            return False
        if hello.get("image_transfer"):
            return True
        with contextlib.suppress(NotFound):
            img = k.images.resolve(image)
            raise Conflict(f"image {image} is {img.id[:19]} on the target, {want[:19]} on the source")
        raise NotFound(f"image {image} ({want[:19]}) is not on the target: pull or load it there first (this "
                       "source does not send images)")

    async def receive_image(self, wire: Wire, hello: dict[str, Any], migration: str) -> None:
        """Ask the source for the container's image and load it as it comes, through the
        engine's image load (a docker-archive: digests checked, hostile members refused, all of
        it installed or none), before anything else is made here. Whatever fails, nothing of it
        stays but a fully loaded image."""
        k = self.kernel
        image, want = str(hello.get("image") or ""), str(hello.get("image_id") or "")
        # tagged as on the source unless the name means another image here: that tag is not
        # moved (the import finds the image by ID then)
        try:
            k.images.resolve(image)
            tag = False
        except DockyardError:  # not here (NotFound), or a name that is no reference
            tag = True
        await wire.send_json({"type": "image", "name": image, "id": want, "tag": tag})
        phase_reached(k, "target", "image", str(hello.get("name") or ""), migration)
        loop = asyncio.get_running_loop()

        def load(src: Any) -> None:
            asyncio.run_coroutine_threadsafe(k.images.load(src), loop).result()

        try:
            await self._pump(wire, ThreadReader(load))
        except WireError as exc:
            raise WireError(f"image {image} ({want[:19]}): the transfer broke off: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - the load's refusal (digest, tar, disk), named
            raise ImageRefused(f"image {image} ({want[:19]}) from the source was refused by the target: "
                               f"{exc}") from exc
        try:
            k.images.get(want)
        except NotFound:
            raise ImageRefused(f"image {image} ({want[:19]}): the source's image stream did not hold it") from None
        await wire.send_json({"type": "loaded", "id": want})

    async def receive(self, wire: Wire, hello: dict[str, Any]) -> None:
        k = self.kernel
        mig_id = str(hello.get("id") or secrets.token_hex(8))
        name = str(hello.get("name") or "")
        try:
            if self.preflight(hello):
                await self.receive_image(wire, hello, mig_id)
        except DockyardError as exc:
            # before anything was made here (the journal has no record yet): the source's
            # container runs on; a loaded image may stay, as a pull would
            with contextlib.suppress(Exception):
                await wire.send_json({"type": "error", "message": str(exc)})
            raise
        work = data_dir(k) / mig_id
        record = Record(id=mig_id, side="target", phase="receive", container=name, extra={"work": str(work)})
        self.journal.save(record)
        created_volumes: list[str] = []
        marks: dict[str, float] = {}
        # from the container's first endpoint here until the source's "done" the copy here must
        # not talk to a peer: the source may still give the move up and resume its own copy (its
        # addresses, its sockets), so this one stays isolated, and is removed while still isolated
        hold = contextlib.ExitStack()
        try:
            archive = work / "archive"
            archive.mkdir(parents=True)
            addresses = [str(a) for a in hello.get("addresses") or []]
            networks = list(k.ready_drivers("network").values())  # those in use
            hold.enter_context(hold_addresses(k.config.owner, mig_id, addresses, networks))
            # everything that does not need the dump, while the source still runs: the volumes,
            # the container, its rootfs and its network sandbox and endpoints
            prepared = await self._prepare(archive, name, hello, record, created_volumes)
            record.target_id = prepared.id
            self.journal.save(record)
            await wire.send_json({"type": "ready"})
            sink = ThreadReader(lambda src: extract_archive_stream(archive, src))
            await self._pump(wire, sink)
            marks["archive"] = time.time()
            phase_reached(k, "target", "transfer", name, mig_id)
            for _ in hello.get("volumes") or []:
                head = await wire.recv_json()
                vol = k.volumes.get(str(head["name"]))
                carrier = next(c for c in self.carriers.values() if vol.driver in c.drivers)
                recv = carrier.receive
                if recv is None:
                    await self._pump(wire, None)
                    continue
                sink = ThreadReader(lambda src, v=vol, r=recv: r(v, src))
                await self._pump(wire, sink)
            commit = await wire.recv_json()
            if commit.get("type") != "commit":
                raise WireError(f"expected commit, got {commit.get('type')!r}")
            marks["commit"] = time.time()
            record.phase = "restore"  # not saved: a restart undoes "receive" and "restore" alike
            phase_reached(k, "target", "restore", name, mig_id)
            page_server = str(commit.get("page_server") or "")
            req = CheckpointImport(archive_path=str(archive), name=name, ignore_volumes=True, page_server=page_server,
                                   container=prepared.id)
            with lazy_pipe_size() if page_server else contextlib.nullcontext():
                c = await k.containers.checkpoint_import(req)
            marks["restored"] = time.time()
            # the source decides: it records its commit, then says "done"; without it (the
            # source failed or lost us while we restored, or said "abort") this copy goes and
            # the source resumes
            await wire.send_json({"type": "restored", "id": c.id, "marks": marks})
            done = await asyncio.wait_for(wire.recv_json(), 30)
            marks["done"] = time.time()
            if done.get("type") == "abort":
                raise DockyardError(f"the source gave the move up: {done.get('message') or 'no reason given'}")
            if done.get("type") != "done":
                raise WireError(f"expected done, got {done.get('type')!r}")
            # the container is ours: the peers' retransmits come through now. Released before
            # the journal's durable write (first the client's answer, then the bookkeeping): a
            # death in between undoes the copy at the next start, as a death just before would
            hold.close()
            marks["released"] = time.time()
            record.phase = "restored"
            self.journal.save(record)
            log.info("migration %s of %s in: %s", mig_id, name,
                     ", ".join(f"{m} {(t - marks['commit']) * 1000:+.1f} ms" for m, t in marks.items()))
            try:
                phase_reached(k, "target", "cleanup", name, mig_id)
            finally:  # the source committed: whatever a plugin raised there, the container is ours
                k.emit("container", "migrate", c.id, name=c.name, direction="in",
                       source=str(hello.get("source") or ""), mode=str(hello.get("mode") or ""))
                await self.finish(record)
        except BaseException as exc:
            if record.phase != "restored":
                try:
                    await self.undo(record, created_volumes)  # still isolated while it goes
                finally:
                    hold.close()
                # sent once the copy and its addresses are gone: the source resumes on it
                with contextlib.suppress(Exception):
                    await wire.send_json({"type": "error", "message": f"target: {exc}"})
            raise
        finally:
            hold.close()

    async def _prepare(self, archive: Path, name: str, hello: dict[str, Any], record: Record,
                       created_volumes: list[str]) -> Any:
        """Before the source freezes anything: the volumes the container mounts (made here
        unless they exist, and noted for an undo), then the container itself from the archive's
        documents the source sent in its hello, with its network sandbox when its networks are
        local (:attr:`CheckpointImport.prepare`)."""
        k = self.kernel
        for vol in hello.get("volumes") or []:
            vname = str(vol["name"])
            try:
                k.volumes.get(vname)
            except NotFound:
                created_volumes.append(vname)
                record.extra["volumes"] = list(created_volumes)
                self.journal.save(record)
                await k.volumes.create(vname, str(vol.get("driver") or "local"), dict(vol.get("options") or {}),
                                       dict(vol.get("labels") or {}))
        documents = hello.get("documents") or {}
        if not isinstance(documents, dict) or not documents:
            raise InvalidArgument("the migration source sent no container documents (an older dockyard-migrate?)")
        for member, doc in documents.items():
            if member not in (layout.CONFIG_DUMP, layout.NETWORK_STATUS):
                raise InvalidArgument(f"unexpected migration document {member!r}")
            (archive / member).write_text(json.dumps(doc))
        return await k.containers.checkpoint_import(CheckpointImport(archive_path=str(archive), name=name,
                                                                     ignore_volumes=True, prepare=True))

    async def _pump(self, wire: Wire, sink: ThreadReader | None) -> None:
        try:
            while True:
                kind, body = await wire.frame()
                if kind == b"E":
                    break
                if kind != b"D":
                    raise WireError(f"migration peer sent {kind!r} inside a data stream")
                if sink is not None:
                    await sink.feed(body)
        finally:
            if sink is not None:
                await sink.finish()

    async def finish(self, record: Record) -> None:
        """A migration that reached ``restored``: the container is ours; drop its files."""
        work = record.extra.get("work")
        if work:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.journal.remove(record.id)

    async def undo(self, record: Record, created_volumes: list[str] | None = None) -> None:
        """Forget a migration that did not reach ``restored``: its half-made container (the
        name was free at preflight, so one by that name is ours), volumes it made, its files."""
        k = self.kernel
        with contextlib.suppress(NotFound, DockyardError):
            c = k.containers.get(record.container)
            await k.containers.remove(c.id, force=True, volumes=True)
        for vname in created_volumes or record.extra.get("volumes") or []:
            with contextlib.suppress(DockyardError):
                await k.volumes.remove(vname, force=True)
        work = record.extra.get("work")
        if work:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.journal.remove(record.id)
