"""The event bus: fan-out of committed state changes to plugins and API subscribers."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.model import Event

if TYPE_CHECKING:
    import pluggy

    from dockyard.specs.events import EventJournal

log = logging.getLogger(__name__)

#: How many past events ``/events?since=`` can replay (dockerd keeps 256).
HISTORY = 1024
#: ... and how many bytes of IDs, attribute keys and values they may hold together
HISTORY_BYTES = 4 << 20
#: An attribute value longer than this is kept shortened in the history (a label of megabytes
#: would otherwise stay in memory for good); subscribers get the event whole.
KEPT_VALUE = 4096


@dataclass
class HookFailure:
    plugin: str
    event: str
    error: str


@dataclass
class EventBus:
    """Keeps recent events, calls the ``dockyard_event`` hook, feeds subscribers.

    Subscriber queues are bounded; a subscriber too slow to keep up is dropped (its stream
    ends) rather than slowing the daemon.
    """

    history: collections.deque[Event] = field(default_factory=collections.deque)
    history_bytes: int = 0
    subscribers: set[asyncio.Queue[Event | None]] = field(default_factory=set)
    failures: list[HookFailure] = field(default_factory=list)
    hook_caller: Callable[[Event], None] | None = None
    #: where events are persisted before they are published (a plugin's, set at start)
    journal: EventJournal | None = None
    #: the last sequence number given (continues the journal's across restarts)
    seq: int = 0

    def attach(self, journal: EventJournal) -> None:
        """Persist every later event in ``journal`` first; numbering continues after its last."""
        self.journal = journal
        self.seq = max(self.seq, journal.last_seq())

    def emit(self, event: Event) -> Event:
        if not event.time_nano:
            event.time_nano = time.time_ns()
        self.seq += 1
        event.seq = self.seq
        if self.journal is not None:
            self.journal.append(event)
        self._remember(event)
        if self.hook_caller is not None:
            self.hook_caller(event)
        for q in list(self.subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                self.subscribers.discard(q)  # too slow: its stream ends after draining
        return event

    def _remember(self, event: Event) -> None:
        """Keep ``event`` for replays, its long attribute values shortened, within the
        history's count and bytes (the oldest go first)."""
        if any(len(v) > KEPT_VALUE for v in event.attributes.values()):
            event = dataclasses.replace(event, attributes={
                k: (v if len(v) <= KEPT_VALUE else v[:KEPT_VALUE] + "...") for k, v in event.attributes.items()})
        self.history.append(event)
        self.history_bytes += _size(event)
        while self.history and (len(self.history) > HISTORY or self.history_bytes > HISTORY_BYTES):
            self.history_bytes -= _size(self.history.popleft())

    def past(self, since_ns: int = 0, until_ns: int | None = None) -> list[Event]:
        return [e for e in self.history
                if e.time_nano >= since_ns and (until_ns is None or e.time_nano <= until_ns)]

    async def subscribe(self, maxsize: int = 4096) -> AsyncIterator[Event]:
        """New events as they are emitted, until the caller stops iterating."""
        q: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.subscribers.add(q)
        try:
            while q in self.subscribers or not q.empty():
                item = await q.get()
                if item is None:
                    return
                yield item
        finally:
            self.subscribers.discard(q)

    async def durable(self) -> None:
        """Return once every event emitted so far is persisted (at once without a journal)."""
        if self.journal is not None:
            await self.journal.durable(self.seq)

    def close(self) -> None:
        """End every subscriber stream (daemon shutdown)."""
        for q in list(self.subscribers):
            self.subscribers.discard(q)
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass


def _size(event: Event) -> int:
    return (64 + len(event.type) + len(event.action) + len(event.actor_id)
            + sum(len(k) + len(v) for k, v in event.attributes.items()))


def hook_caller(pm: pluggy.PluginManager, kernel: object, failures: list[HookFailure]) -> Callable[[Event], None]:
    """Call ``dockyard_event`` on each plugin separately, so one failing plugin is recorded
    against its name and the others still see the event."""

    def call(event: Event) -> None:
        for impl in pm.hook.dockyard_event.get_hookimpls():
            try:
                impl.function(kernel=kernel, event=event)
            except Exception as exc:  # noqa: BLE001 - recorded, shown in /info
                failures.append(HookFailure(impl.plugin_name, f"{event.type}.{event.action}", repr(exc)))
                del failures[:-100]
                log.warning("plugin %s failed on event %s: %r", impl.plugin_name, event.action, exc)

    return call
