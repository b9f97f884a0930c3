"""The source's half of the ``stream`` migrator.

Order: pre-flight with the target (nothing frozen yet; the container's image goes first when
the target lacks it) → the journal says ``dump`` → the
engine's ``checkpoint_export`` dumps the container (frozen from here; the dump is kept as the
container's checkpoint so the source can resume it) and writes the portable archive into a
FIFO whose bytes go straight onto the wire → each named volume streams from its carrier →
``commit`` → the target restores and answers ``restored`` → the journal says ``cleanup``
(durably: the target's copy is the container now) → the source's copy is removed.

Any failure before ``restored`` resumes the container here from the kept checkpoint (same
network sandbox: same addresses, TCP connections resume); after ``commit`` only once the
target confirmed its copy is gone (``abort``, then its answer), since that copy may hold the
addresses to take back; :func:`recover` does the same at the next start of a daemon killed
mid-way, and finishes a ``cleanup`` it had begun.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

from dockyard import checkpoints as layout
from dockyard.errors import Conflict, DockyardError, Forbidden, InvalidArgument, NotFound
from dockyard.model import Container, ContainerStatus
from dockyard.services.containers import CheckpointCreate
from dockyard.specs.storage import (
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    MigrationTicket,
    VolumeCarrier,
)
from dockyard_migrate.common import (
    Journal,
    Record,
    data_dir,
    lazy_pipe_size,
    phase_reached,
    pump_thread_writer,
)
from dockyard_migrate.wire import CHUNK, Wire, WireError

log = logging.getLogger(__name__)
RESTORE_TIMEOUT = 300.0
ABORT_TIMEOUT = 60.0  # a target told to give the move up: until its copy is removed
TAKE_BACK_TIMEOUT = 60.0  # an address a vanished target holds: until it settles or its lease lapses


def client_ssl(kernel: Any) -> ssl.SSLContext:
    """Verify the target's server certificate against this engine's CA (a machine-made
    cluster shares one); without one, against the system's roots."""
    ctx = ssl.create_default_context(cafile=kernel.config.get("tlscacert") or None)
    ctx.check_hostname = False  # the ticket names an address; the CA is what we trust
    return ctx


def memory_of(c: Container) -> int:
    """The container's resident memory (its cgroup's), 0 when unknown."""
    pid = c.state.pid
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        for base in (f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes", f"/sys/fs/cgroup{path}/memory.current"):
            if ("memory" in ctrl.split(",") or ctrl == "") and os.path.exists(base):
                with contextlib.suppress(OSError, ValueError):
                    return int(open(base).read())
    return 0


def choose_mode(options: MigrationOptions, memory: int) -> str:
    if options.mode not in ("auto", "stop-copy", "lazy"):
        raise InvalidArgument(f"unknown migration mode {options.mode!r} (auto, stop-copy or lazy)")
    if options.mode != "auto":
        return options.mode
    return "lazy" if memory >= options.lazy_threshold else "stop-copy"


#: fcntl's F_SETPIPE_SZ (Linux)
F_SETPIPE_SZ = 1031
#: at most one progress report per this many seconds while bytes flow
REPORT_EVERY = 0.1


def read_full(src: Any, size: int) -> bytearray:
    """Up to ``size`` bytes from the pipe ``src``, fewer only at its end (a FIFO read returns
    what the writer has put in so far)."""
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    view.release()
    if got < size:
        del buf[got:]
    return buf


def free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: the frozen window's steps, in order: (name, mark that ends it, on which side); a step's time
#: runs from the previous mark present to its own
WINDOW = (("dump", "dump", "source"), ("archive", "archive", "source"), ("volumes", "volumes", "source"),
          ("release", "released", "source"), ("to target", "commit", "target"), ("restore", "restored", "target"),
          ("to source", "restored", "source"), ("commit", "committed", "source"), ("done", "done", "source"))


def window(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    """The frozen window step by step, in ms: from the freeze (the checkpoint's start) to the
    ``done`` the target releases its copy on, from both sides' wall-clock marks (one clock on
    one machine; NTP's error between two). The source's ``dump`` ends when the export starts
    writing the archive (CRIU done, the layer's diff taken); the target's ``restore`` runs from
    the commit it received to its copy running (the layer's changes, the lazy-pages daemon,
    conmon, runc and CRIU)."""
    out: dict[str, float] = {}
    last = ours.get("freeze", 0.0)
    for step, mark, side in WINDOW:
        t = (theirs if side == "target" else ours).get(mark)
        if not isinstance(t, (int, float)) or not last:
            continue
        out[step] = (float(t) - last) * 1000
        last = float(t)
    return out


class Sender:
    def __init__(self, kernel: Any, carriers: dict[str, VolumeCarrier]) -> None:
        self.kernel = kernel
        self.carriers = carriers
        self.journal = Journal(data_dir(kernel) / "journal")

    def carrier(self, driver: str) -> VolumeCarrier:
        for c in self.carriers.values():
            if driver in c.drivers:
                return c
        raise InvalidArgument(f"no migration carrier for volume driver {driver!r}: install a plugin that carries "
                              "its volumes (dockyard_volume_carriers), or move the container without them")

    async def send(self, ref: str, ticket: MigrationTicket, options: MigrationOptions,
                   report: Callable[[MigrationProgress], None]) -> MigrationResult:
        k = self.kernel
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        marks: dict[str, float] = {}  # wall clock (the target's marks are its wall clock too)
        c = k.containers.get(ref)
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"container {c.name} is not running: only a running container migrates")
        mode = choose_mode(options, memory_of(c))
        volumes = [k.volumes.get(m.name) for m in c.mounts if m.type == "volume" and m.name]
        carriers = {v.name: self.carrier(v.driver) for v in volumes}
        host, _, port = ticket.address.rpartition(":")
        report(MigrationProgress("prepare", message=f"connecting to {ticket.address} ({mode})"))
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host.strip("[]") or "127.0.0.1", int(port), ssl=client_ssl(k) if ticket.tls else None), 15)
        wire = Wire(reader, writer)
        mig_id = secrets.token_hex(8)
        name = c.name.lstrip("/")
        # the archive's documents go first: the target makes the container, its rootfs and its
        # network sandbox from them while this one still runs (they do not change with the dump)
        documents = layout.container_documents(c, {})
        await wire.send_json({"type": "hello", "token": ticket.token, "id": mig_id, "name": name,
                              "image": c.config.image, "image_id": c.image_id, "image_transfer": True, "mode": mode,
                              "source": str(k.config.get("name") or os.uname().nodename),
                              "volumes": [{"name": v.name, "driver": v.driver, "options": dict(v.options),
                                           "labels": dict(v.labels)} for v in volumes],
                              "addresses": [ep.ipv4_address for ep in c.networks.values() if ep.ipv4_address],
                              "documents": {m: documents[m] for m in (layout.CONFIG_DUMP, layout.NETWORK_STATUS)}})
        try:
            # "ready" once the target prepared, "image" first when it lacks the container's
            # image; an "error" raises (nothing is frozen yet: the container runs on here)
            answer = await asyncio.wait_for(wire.recv_json(), 30)
            if answer.get("type") == "image":
                t = time.monotonic()
                ref = await self._send_image(c, wire, report, mig_id, bool(answer.get("tag")))
                try:  # the target loads it ("loaded"), then prepares
                    answer = await asyncio.wait_for(wire.recv_json(), RESTORE_TIMEOUT)
                except WireError as exc:
                    raise WireError(f"image {ref} sent, then the target went away: {exc}") from exc
                if answer.get("type") != "loaded":
                    raise WireError(f"expected loaded, got {answer.get('type')!r}")
                phases["image"] = (time.monotonic() - t) * 1000
                report(MigrationProgress("image", wire.sent, 0, f"image {ref} loaded on the target"))
                answer = await asyncio.wait_for(wire.recv_json(), 30)
            if answer.get("type") != "ready":
                raise WireError(f"expected ready, got {answer.get('type')!r}")
        except BaseException:
            await wire.close()
            raise
        phases["prepare"] = (time.monotonic() - t0) * 1000 - phases.get("image", 0.0)
        checkpoint = f"migrate-{mig_id}"
        record = Record(id=mig_id, side="source", phase="dump", container=c.id, checkpoint=checkpoint,
                        extra={"target": ticket.address, "mode": mode})
        self.journal.save(record)
        frozen_at = 0.0
        try:
            page_server = ""
            if mode == "lazy":
                local = writer.get_extra_info("sockname")[0]
                page_server = f"{local}:{free_port(local)}"
            report(MigrationProgress("dump", message=f"checkpointing {name}"))
            frozen_at = time.monotonic()
            marks["freeze"] = time.time()
            await self._archive(c, wire, checkpoint, page_server, report, frozen_at, mig_id, marks)
            marks["archive"] = time.time()
            # the phases below are not written durably (a restart resumes the container from any
            # phase before "cleanup" alike): no fsync while it is frozen
            record.phase = "transfer"
            phase_reached(k, "source", "transfer", name, mig_id)
            for v in volumes:
                send = carriers[v.name].send
                await wire.send_json({"type": "volume", "name": v.name, "driver": v.driver,
                                      "options": dict(v.options), "labels": dict(v.labels)})
                if send is not None:
                    async def put(chunk: bytes, vname: str = v.name) -> None:
                        await wire.send_data(chunk)
                        report(MigrationProgress("transfer", wire.sent, (time.monotonic() - frozen_at) * 1000,
                                                 f"volume {vname}"))
                    await pump_thread_writer(lambda out, vol=v, fn=send: fn(vol, out), put)
                await wire.send_end()
            marks["volumes"] = time.time()
            # a cluster-wide (overlay) address moves: the source gives its endpoint up so the
            # target can take the same address; a resume here takes it back first
            await self._release_global(c, record)
            marks["released"] = time.time()
            record.phase = "commit"
            report(MigrationProgress("restore", wire.sent, (time.monotonic() - frozen_at) * 1000,
                                     "restoring on the target"))
            await wire.send_json({"type": "commit", "page_server": page_server})
            marks["commit"] = time.time()
            phase_reached(k, "source", "restore", name, mig_id)
            answer = await asyncio.wait_for(wire.recv_json(), RESTORE_TIMEOUT)
            if answer.get("type") != "restored":
                raise WireError(f"expected restored, got {answer.get('type')!r}")
            marks["restored"] = time.time()
            theirs = answer.get("marks") or {}
            # the commit point: recorded before the target hears it, so a restart here finishes
            # the move instead of resuming a second copy
            record.phase, record.target_id = "cleanup", str(answer.get("id") or "")
            self.journal.save(record)
            marks["committed"] = time.time()
            await wire.send_json({"type": "done"})
            marks["done"] = time.time()
            frozen_ms = (time.monotonic() - frozen_at) * 1000
            phases.update(window(marks, theirs if isinstance(theirs, dict) else {}))
            log.info("migration %s of %s out (%s): frozen %s", mig_id, name, mode,
                     ", ".join(f"{p} {ms:.1f} ms" for p, ms in phases.items()))
        except BaseException as exc:
            if record.phase == "cleanup":  # committed: the target runs it (or will, once it reads "done")
                await wire.close()
                await self.cleanup(record)
                raise
            report(MigrationProgress("rollback", wire.sent, 0, f"resuming {name} here: {exc}"))
            if record.phase == "commit":  # the target may be restoring its copy, on our addresses
                await self._abort_target(wire, exc)
            await wire.close()
            await self.resume(record)
            raise
        report(MigrationProgress("cleanup", wire.sent, frozen_ms, f"removing {name} here"))
        t = time.monotonic()
        try:
            phase_reached(k, "source", "cleanup", name, mig_id)
        finally:  # committed: whatever a plugin raised there, the move stands and this copy goes
            await self.cleanup(record)
            await wire.close()
        phases["cleanup"] = (time.monotonic() - t) * 1000
        total = (time.monotonic() - t0) * 1000
        k.emit("container", "migrate", c.id, name=name, direction="out", target=ticket.address, mode=mode,
               frozenMs=f"{frozen_ms:.0f}", bytes=str(wire.sent))
        report(MigrationProgress("done", wire.sent, frozen_ms, f"{name} runs on {ticket.address}"))
        return MigrationResult(container_id=record.target_id, mode=mode, bytes=wire.sent, frozen_ms=round(frozen_ms, 1),
                               total_ms=round(total, 1), phases={p: round(ms, 1) for p, ms in phases.items()})

    async def _send_image(self, c: Container, wire: Wire, report: Callable[[MigrationProgress], None],
                          migration: str, tag: bool) -> str:
        """The target lacks the container's image: send it as the engine's ``image save``
        archive (the whole image: a docker-archive holds every layer), under the name the
        container was made from when the target asked for a ``tag`` and that name still means
        the image here (the target's load tags it so), else by ID. Returns the name it went
        by. Nothing is frozen yet."""
        k = self.kernel
        name = c.name.lstrip("/")
        ref = c.image_id
        with contextlib.suppress(NotFound, InvalidArgument):
            if tag and c.config.image and k.images.resolve(c.config.image).id == c.image_id:
                ref = c.config.image
        t = time.monotonic()
        start = wire.sent
        report(MigrationProgress("image", wire.sent, 0, f"sending image {ref}"))
        phase_reached(k, "source", "image", name, migration)
        told = 0.0
        try:
            async for chunk in k.images.save_stream([ref]):
                for i in range(0, len(chunk), CHUNK):
                    await wire.send_data(chunk[i:i + CHUNK])
                if time.monotonic() - told >= REPORT_EVERY:
                    told = time.monotonic()
                    report(MigrationProgress("image", wire.sent, 0, f"image {ref}"))
        except (WireError, OSError) as exc:  # OSError includes ConnectionError
            raise WireError(f"image {ref}: the connection to the target broke off: {exc}") from exc
        except DockyardError as exc:
            raise DockyardError(f"image {ref} could not be sent: {exc}") from exc
        await wire.send_end()
        report(MigrationProgress("image", wire.sent, 0, f"image {ref}: {wire.sent - start} bytes sent, "
                                                          "loading on the target"))
        log.info("migration %s of %s: image %s sent (%d bytes, %.0f ms)", migration, name, ref,
                 wire.sent - start, (time.monotonic() - t) * 1000)
        return ref

    async def _archive(self, c: Container, wire: Wire, checkpoint: str, page_server: str,
                       report: Callable[[MigrationProgress], None], frozen_at: float, migration: str,
                       marks: dict[str, float]) -> None:
        """Export the checkpoint archive into a FIFO and forward its bytes as they come."""
        k = self.kernel
        fifo = data_dir(k) / f"{checkpoint}.fifo"
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        req = CheckpointCreate(name=checkpoint, tcp_established=True, lazy_pages=bool(page_server),
                               page_server=page_server, ignore_volumes=True, compression="none", keep=True)
        loop = asyncio.get_running_loop()
        ctx = lazy_pipe_size() if page_server else contextlib.nullcontext()
        ctx.__enter__()
        export = loop.create_task(k.containers.checkpoint_export(c.id, str(fifo), req))
        opened = loop.run_in_executor(None, lambda: open(fifo, "rb", buffering=0))  # noqa: SIM115
        try:
            done, _ = await asyncio.wait({export, opened}, return_when=asyncio.FIRST_COMPLETED)
            if export in done and opened not in done:
                with open(fifo, "wb"):  # unblock the reader, then report the export's failure
                    pass
                (await opened).close()
                await export
                raise DockyardError("the checkpoint export ended without writing the archive")
            src = await opened
            marks["dump"] = time.time()  # the export opens the FIFO once CRIU is done
            with contextlib.suppress(OSError):  # fewer, fuller reads (a stop-and-copy's pages)
                fcntl.fcntl(src.fileno(), F_SETPIPE_SZ, CHUNK)
            told = 0.0
            try:
                while True:
                    chunk = await loop.run_in_executor(None, read_full, src, CHUNK)
                    if not chunk:
                        break
                    await wire.send_data(chunk)
                    if time.monotonic() - told >= REPORT_EVERY:  # a line per chunk cost more than the chunk
                        told = time.monotonic()
                        report(MigrationProgress("transfer", wire.sent, (told - frozen_at) * 1000, "checkpoint"))
            finally:
                src.close()
            await export
            phase_reached(k, "source", "dump", c.name.lstrip("/"), migration)  # frozen, dumped, archive sent
            await wire.send_end()
        finally:
            if not export.done():
                export.cancel()
            ctx.__exit__(None, None, None)
            fifo.unlink(missing_ok=True)

    async def _release_global(self, c: Container, record: Record) -> None:
        k = self.kernel
        released: list[dict[str, Any]] = record.extra.setdefault("released", [])
        for name, ep in list(c.networks.items()):
            try:
                net = k.networks.get(name)
            except NotFound:
                continue
            if net.scope != "global" or not ep.ipv4_address:
                continue
            released.append({"network": name, "ip": ep.ipv4_address, "aliases": list(ep.aliases)})
            self.journal.save(record)  # before: a crash in between still takes it back
            await k.networks.disconnect_container(c.id, name, force=True)

    async def _abort_target(self, wire: Wire, exc: BaseException) -> None:
        """The commit went out: the target may be restoring its copy, or running it (isolated
        until our ``done``), on the addresses this container gave up. Tell it to give the move
        up and wait until it has: it answers (``error``) only once its copy is removed and the
        addresses released, and a target that failed by itself undid before it closed. Only
        then can the resume take the addresses back; a target that is gone holds them until it
        restarts and settles, or its lease lapses (:meth:`_take_back` waits for that)."""
        with contextlib.suppress(Exception):
            await wire.send_json({"type": "abort", "message": str(exc) or type(exc).__name__})
        try:
            async with asyncio.timeout(ABORT_TIMEOUT):
                while True:
                    await wire.recv_json()  # "restored" (it reads our abort next); its "error" raises
        except TimeoutError:
            log.warning("migration target did not confirm the abort within %.0f s", ABORT_TIMEOUT)
        except Exception:  # noqa: BLE001 - its answer or the connection's end: it has settled
            pass

    async def _take_back(self, c: Container, released: list[dict[str, Any]]) -> None:
        """Join the global networks again with the addresses given up, before the restore:
        CRIU binds the established sockets to them. An address still held elsewhere (a target
        that went away before undoing its copy) is waited for, up to ``TAKE_BACK_TIMEOUT``."""
        from dockyard.model import EndpointSettings

        k = self.kernel
        deadline = time.monotonic() + TAKE_BACK_TIMEOUT
        for item in released:
            network, ip = str(item["network"]), str(item["ip"])
            settings = EndpointSettings(aliases=list(item.get("aliases") or []), ipv4_address=ip, ipam_ipv4=ip)
            delay = 0.05
            while True:
                try:
                    await k.networks.connect_container(c.id, network, settings)
                    break
                except Forbidden:  # joined already (a resume that an earlier start began)
                    break
                except NotFound as exc:  # the network went meanwhile: the restore decides
                    log.warning("migration: %s cannot take %s back on %s: %s", c.name, ip, network, exc)
                    break
                except Conflict as exc:  # still held in the cluster
                    if time.monotonic() > deadline:
                        raise Conflict(f"cannot resume {c.name}: its address {ip} on network {network} is still "
                                       f"held elsewhere after {TAKE_BACK_TIMEOUT:.0f} s ({exc}); it stays "
                                       "checkpointed here and the engine's next start tries again") from exc
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            got = k.containers.get(c.id).networks.get(network)
            if got is not None and got.ipv4_address and got.ipv4_address != ip:
                raise DockyardError(f"{c.name} took {got.ipv4_address} on {network}, not its address {ip}")

    async def resume(self, record: Record) -> None:
        """Put the container back to work here, from the checkpoint the migration kept."""
        k = self.kernel
        try:
            c = k.containers.get(record.container)
        except NotFound:
            self.journal.remove(record.id)
            return
        released = list(record.extra.get("released") or [])
        if released:
            await self._take_back(c, released)
        if c.state.status is not ContainerStatus.RUNNING and record.phase != "prepare":
            try:
                await k.containers.restore(c.id, record.checkpoint)
            except NotFound:
                log.warning("migration %s: no checkpoint %s to resume %s from", record.id, record.checkpoint, c.id)
        with contextlib.suppress(DockyardError):
            await k.containers.checkpoint_remove(c.id, record.checkpoint)
        self.journal.remove(record.id)

    async def cleanup(self, record: Record) -> None:
        k = self.kernel
        with contextlib.suppress(NotFound):
            await k.containers.remove(record.container, force=True, volumes=True)
        self.journal.remove(record.id)


async def recover(kernel: Any, sender: Sender, receiver: Any) -> None:
    """At daemon start: a source's migration that had not reached ``cleanup`` resumes its
    container here; one in ``cleanup`` removes it (the target runs it). A target's that had
    not reached ``restored`` is undone; a ``restored`` one is kept."""
    journal = sender.journal
    for record in journal.all():
        try:
            if record.side == "source":
                if record.phase == "cleanup":
                    await sender.cleanup(record)
                else:
                    await sender.resume(record)
            elif record.phase == "restored":
                await receiver.finish(record)
            else:
                await receiver.undo(record)
        except DockyardError as exc:
            log.warning("migration %s: could not settle (%s side, %s): %s", record.id, record.side, record.phase, exc)
