"""The lifecycle log: this host's events, hash-chained, Ed25519-signed, numbered, on disk.

Files under ``<data-root>/provenance/``:

- ``lifecycle.log``: one JSON document per line, per event::

      {"seq": 7, "time": 1765100000000000000, "prev": "<sha256 hex of entry 6>",
       "event": {"type": "container", "action": "start", "actor": "<id>",
                 "attributes": {...}, "scope": "local"},
       "hash": "<sha256 hex of the canonical JSON of seq, time, prev, event>",
       "sig": "<base64 Ed25519 signature of the hash's 32 bytes>"}

  The first entry's ``prev`` is 64 zeros.
- ``lifecycle.head``: the last entry written, ``{"seq", "hash", "sig"}`` (the signature over
  ``head:<seq>:<hash>``), rewritten after each batch: removing entries from the log's end
  leaves a chain that is whole, and only the head shows they existed.
- ``lifecycle.key`` / ``lifecycle.pub``: the host's Ed25519 key pair (PKCS#8 / SPKI PEM), made
  at the first start.

Writing: :meth:`LifecycleJournal.append` (the kernel's ``EventJournal``) runs in the event loop
and only queues a snapshot of the event. One writer thread takes everything queued, chains and
signs it, writes it in one ``write`` and rewrites the head: a group commit, so the number of
writes follows the disk, not the event rate, and nothing queued is ever dropped. A line the
process was killed while writing (no final newline) was never reported durable, and is cut at
the next start.

When is a batch durable (``lifecycle-log-sync``)? ``write`` (the default): once the ``write``
returned: the kernel's page cache outlives the process, so a ``kill -9`` of the daemon loses
nothing it acknowledged (the state store's ``synchronous=NORMAL`` gives the same); the writer
``fdatasync``s the log and the head at most 50 ms behind it, for power loss: at once after a
quiet spell, else once at the end of the 50 ms since the last sync for all the batches written
meanwhile (a ``docker run`` writes ~5 batches in ~30 ms: one or two syncs, not five; each sync
also held up the next batch's write), and before the writer stops.
``fsync``: once the log and the head are ``fdatasync``ed (two syncs per batch: ~6 ms on the CI
disk, measured; a power cut loses nothing acknowledged).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.model import Event
from dockyard.specs.events import EventJournal
from dockyard_provenance.ed25519 import SigningKey, private_key, public_bytes_raw
from dockyard_provenance.keyfiles import (
    ed25519_private_pem,
    ed25519_private_raw,
    ed25519_public_pem,
    write_private,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

GENESIS = "0" * 64
LOG_NAME = "lifecycle.log"
HEAD_NAME = "lifecycle.head"
KEY_NAME = "lifecycle.key"
PUB_NAME = "lifecycle.pub"
HEAD_SIZE = 512  # the head is rewritten in place, padded to this size


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, time_ns: int, prev: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"seq": seq, "time": time_ns, "prev": prev, "event": event})).hexdigest()


def head_message(seq: int, digest: str) -> bytes:
    return f"head:{seq}:{digest}".encode()


def load_or_make_key(directory: Path) -> SigningKey:
    """The host's Ed25519 key (made, 0600, with its public half beside it, when absent). The
    daemon reads and writes the PEM through :mod:`dockyard_provenance.keyfiles` (RFC 8410's
    fixed encoding) and signs through :mod:`dockyard_provenance.ed25519` (the libcrypto already
    mapped; no ``cryptography`` in the daemon); a key file in another form goes through
    ``cryptography``'s parser."""
    path = directory / KEY_NAME
    if path.exists():
        data = path.read_bytes()
        raw = ed25519_private_raw(data)
        if raw is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            parsed = serialization.load_pem_private_key(data, password=None)
            if not isinstance(parsed, Ed25519PrivateKey):
                raise ValueError(f"{path}: not an Ed25519 private key")
            raw = parsed.private_bytes_raw()
        return private_key(raw)
    key = private_key(os.urandom(32))  # an Ed25519 private key is 32 random bytes (RFC 8032, 5.1.5)
    write_private(path, ed25519_private_pem(key.private_bytes_raw()))
    (directory / PUB_NAME).write_bytes(ed25519_public_pem(public_bytes_raw(key)))
    return key


def public_pem(pub: Ed25519PublicKey) -> bytes:
    return ed25519_public_pem(pub.public_bytes_raw())


def load_public(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pub = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return pub


def event_doc(event: Event) -> dict[str, Any]:
    return {"type": event.type, "action": event.action, "actor": event.actor_id,
            "attributes": dict(event.attributes), "scope": event.scope}


def _last_line(path: Path) -> tuple[bytes, int]:
    """The last complete line of ``path`` and the size up to its end (a torn tail excluded)."""
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        tail, end = b"", -1
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if end < 0:
                nl = tail.rfind(b"\n")
                if nl < 0:
                    continue
                end, tail = pos + nl + 1, tail[: nl + 1]
            start = tail.rfind(b"\n", 0, len(tail) - 1)
            if start >= 0:
                return tail[start + 1: -1], end
        if end < 0:
            return b"", 0
        return tail[:-1], end


class LifecycleJournal(EventJournal):
    """The kernel's :class:`~dockyard.specs.events.EventJournal`: see the module docstring."""

    SYNC_EVERY = 0.05  # seconds between background fdatasyncs in the "write" mode

    def __init__(self, directory: Path, sync: str = "write") -> None:
        if sync not in ("write", "fsync"):
            raise ValueError(f"lifecycle-log-sync {sync!r}: expected write or fsync")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = load_or_make_key(directory)
        self.sync = sync
        self._synced_at = float("-inf")  # the first batch is synced at once, whatever the uptime
        self._unsynced = False  # batches written since the last sync (the ``write`` mode)
        self.path = directory / LOG_NAME
        self._seq, self._hash = 0, GENESIS
        if self.path.exists():
            line, end = _last_line(self.path)
            if end != self.path.stat().st_size:
                log.warning("lifecycle log: cutting a torn last line (%d bytes)", self.path.stat().st_size - end)
                os.truncate(self.path, end)
            if line:
                doc = json.loads(line)
                self._seq, self._hash = int(doc["seq"]), str(doc["hash"])
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._head_fd = os.open(directory / HEAD_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        self._first_seq = self._seq
        self._queue: queue.SimpleQueue[tuple[int, int, dict[str, Any]] | None] = queue.SimpleQueue()
        self._durable = self._seq
        self._appended = self._seq
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lifecycle-log", daemon=True)
        self._thread.start()

    # -- EventJournal
    def last_seq(self) -> int:
        return self._first_seq

    def append(self, event: Event) -> None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._appended = max(self._appended, event.seq)
        self._queue.put((event.seq, event.time_nano, event_doc(event)))

    async def durable(self, seq: int = 0) -> None:
        seq = seq or self._appended
        if seq <= self._durable:
            return
        if self._error is not None:
            raise RuntimeError(f"the lifecycle log cannot be written: {self._error}")
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append((seq, fut))
        if seq <= self._durable:  # the writer finished meanwhile
            self._wake()
        await fut

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 10)
        for fd in (self._fd, self._head_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the writer thread
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._sync_due())
            except queue.Empty:  # the deferred sync of the batches written since the last one
                self._background_sync()
                continue
            batch: list[tuple[int, int, dict[str, Any]]] = []
            stop = item is None
            if item is not None:
                batch.append(item)
            while not stop:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                try:
                    self._write(batch)
                except BaseException as exc:  # noqa: BLE001 - reported to every waiter
                    log.exception("lifecycle log: write failed")
                    self._error = exc
                self._notify()
            if stop:
                if self._unsynced:
                    self._background_sync()
                return

    def _sync_due(self) -> float | None:
        """Seconds until the deferred sync is due, None when everything written is synced."""
        if not self._unsynced:
            return None
        return max(0.0, self._synced_at + self.SYNC_EVERY - time.monotonic())

    def _background_sync(self) -> None:
        """The ``write`` mode's sync for power loss. A failure fails every later request, as
        a failed write does (the batches it covers were acknowledged already)."""
        self._unsynced = False
        try:
            os.fdatasync(self._fd)
            os.fdatasync(self._head_fd)
        except OSError as exc:
            log.exception("lifecycle log: sync failed")
            self._error = exc
        self._synced_at = time.monotonic()

    def _write(self, batch: list[tuple[int, int, dict[str, Any]]]) -> None:
        lines = []
        seq, prev = self._seq, self._hash
        for s, t, ev in sorted(batch, key=lambda b: b[0]):
            seq = s if s > seq else seq + 1
            h = entry_hash(seq, t, prev, ev)
            sig = base64.b64encode(self.key.sign(bytes.fromhex(h))).decode()
            lines.append(canonical({"seq": seq, "time": t, "prev": prev, "event": ev, "hash": h, "sig": sig}))
            prev = h
        data = b"\n".join(lines) + b"\n"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        always = self.sync == "fsync"
        if always:
            os.fdatasync(self._fd)
        head = canonical({"seq": seq, "hash": prev,
                          "sig": base64.b64encode(self.key.sign(head_message(seq, prev))).decode()})
        os.pwrite(self._head_fd, head.ljust(HEAD_SIZE - 1) + b"\n", 0)
        if always:
            os.fdatasync(self._head_fd)
        self._seq, self._hash = seq, prev
        self._durable = seq
        if not always:
            self._notify()  # acknowledged now; the syncs are for power loss
            self._unsynced = True
            if time.monotonic() - self._synced_at >= self.SYNC_EVERY:
                self._background_sync()

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass

    def _wake(self) -> None:
        keep = []
        for seq, fut in self._waiters:
            if fut.done():
                continue
            if self._error is not None:
                fut.set_exception(RuntimeError(f"the lifecycle log cannot be written: {self._error}"))
            elif seq <= self._durable:
                fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep


# ---------------------------------------------------------------------------------------------
# reading and checking


@dataclass(frozen=True)
class Entry:
    seq: int
    time: int
    prev: str
    event: dict[str, Any]
    hash: str
    sig: str
    line: int


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    last_seq: int
    #: the first bad entry's sequence number (0: none, or the log's end for a truncation)
    bad_seq: int = 0
    bad_line: int = 0
    problem: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"OK": self.ok, "Entries": self.entries, "LastSeq": self.last_seq, "BadSeq": self.bad_seq,
                "BadLine": self.bad_line, "Problem": self.problem}


def read_entries(path: Path) -> Iterator[Entry | tuple[int, str]]:
    """Each line as an :class:`Entry`, or ``(line number, why)`` for one that does not parse."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                d = json.loads(raw)
                yield Entry(int(d["seq"]), int(d["time"]), str(d["prev"]), dict(d["event"]), str(d["hash"]),
                            str(d["sig"]), n)
            except (ValueError, KeyError, TypeError) as exc:
                yield (n, f"not a log entry ({exc.__class__.__name__}: {exc})")


def verify(directory: Path, pub: Ed25519PublicKey | None = None) -> Verdict:
    """Check the chain of ``directory``'s log: numbering, links, content hashes, signatures,
    then the head (entries cut from the end). Names the first bad entry."""
    from cryptography.exceptions import InvalidSignature

    pub = pub or load_public(directory / PUB_NAME)
    path = directory / LOG_NAME
    items = list(read_entries(path))
    seqs = {e.seq: e.line for e in items if isinstance(e, Entry)}
    expected, prev, count = 1, GENESIS, 0
    for e in items:
        if not isinstance(e, Entry):
            n, why = e
            return Verdict(False, count, expected - 1, expected, n, f"entry {expected} (line {n}): {why}")
        if e.seq != expected:
            if e.seq > expected and expected not in seqs:
                why = (f"entry {expected} is missing (removed): line {e.line} holds entry {e.seq} "
                       f"after entry {expected - 1}")
            else:
                where = seqs.get(expected)
                why = (f"entry {e.seq} (line {e.line}) is out of order: entry {expected} was expected here"
                       + (f" (it is at line {where})" if where else ""))
            return Verdict(False, count, expected - 1, min(e.seq, expected), e.line, why)
        if e.hash != entry_hash(e.seq, e.time, e.prev, e.event):
            return Verdict(False, count, expected - 1, e.seq, e.line,
                           f"entry {e.seq} (line {e.line}) was edited: its content does not match its hash")
        if e.prev != prev:
            return Verdict(False, count, expected - 1, e.seq, e.line,
                           f"entry {e.seq} (line {e.line}) does not follow entry {e.seq - 1}: the chain is broken")
        try:
            pub.verify(base64.b64decode(e.sig), bytes.fromhex(e.hash))
        except (InvalidSignature, ValueError):
            return Verdict(False, count, expected - 1, e.seq, e.line,
                           f"entry {e.seq} (line {e.line}): the signature does not verify with the host key")
        prev, expected, count = e.hash, expected + 1, count + 1
    last = expected - 1
    head_path = directory / HEAD_NAME
    if head_path.exists() and head_path.read_bytes().strip():
        try:
            head = json.loads(head_path.read_bytes())
            hseq, hhash = int(head["seq"]), str(head["hash"])
            pub.verify(base64.b64decode(head["sig"]), head_message(hseq, hhash))
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return Verdict(False, count, last, last + 1, 0, "the head (lifecycle.head) is damaged or not signed "
                           "by the host key")
        if hseq > last:
            return Verdict(False, count, last, last + 1, 0,
                           f"the log is truncated: entries {last + 1} to {hseq} are missing from its end "
                           f"(the head says {hseq} were written)")
        if hseq and hseq <= last:
            at = next(e for e in items if isinstance(e, Entry) and e.seq == hseq)
            if at.hash != hhash:
                return Verdict(False, count, last, hseq, at.line,
                               f"entry {hseq} (line {at.line}) is not the one the head names")
    return Verdict(True, count, last)


def story(directory: Path, ids: set[str], names: set[str] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """The entries about an object: its own (actor ID) and, for an image, the containers made of
    it (their ``image`` attribute names it)."""
    out = []
    for e in read_entries(directory / LOG_NAME):
        if not isinstance(e, Entry):
            continue
        ev = e.event
        attrs = ev.get("attributes") or {}
        if ev.get("actor") in ids or (names and (attrs.get("image") in names or attrs.get("image") in ids)):
            out.append({"Seq": e.seq, "Time": e.time, "Type": ev.get("type"), "Action": ev.get("action"),
                        "Actor": ev.get("actor"), "Attributes": attrs, "Hash": e.hash})
    return out
