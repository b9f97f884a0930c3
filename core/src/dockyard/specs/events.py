"""Feature hooks: lifecycle events and background services.

Every state change the services make is a :class:`dockyard.model.Event`, emitted after the
transaction that made it commits: ``/events`` streams them, restart policies and healthchecks
react to them, provenance signs them, a cluster manager watches them.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Event, Image


@dataclass(frozen=True)
class BackgroundService:
    """A long-running task of a plugin (healthcheck monitor, DNS server, cluster agent).

    ``run(kernel)`` is awaited as an asyncio task after the kernel has started and is
    cancelled at shutdown; it must survive cancellation cleanly.
    """

    name: str
    run: Callable[[Kernel], Awaitable[None]]


class EventJournal(abc.ABC):
    """Where events are persisted before they are published (DESIGN: "Events are a journal").

    A plugin offers one through ``dockyard_provides`` (``Provided(EventJournal, ...)``); the
    kernel hands it to its :class:`~dockyard.events.EventBus` at start. The bus numbers every
    event (``Event.seq``, one more than the last, starting after :meth:`last_seq`) and calls
    :meth:`append` before the ``dockyard_event`` hook and ``/events`` subscribers see it.
    ``append`` runs in the event loop and must only queue (no I/O there); the journal writes
    off the loop and never drops an event. :meth:`durable` returns once every event appended so
    far (or up to ``seq``) is on disk: a front awaits it before acknowledging a request, so the
    entry of an acknowledged operation survives a ``kill -9``.

    .. versionadded:: 0.3
    """

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The sequence number of the last event persisted before this start (0 when none)."""

    @abc.abstractmethod
    def append(self, event: Event) -> None:
        """Queue ``event`` (its ``seq`` already set); never blocks, never drops."""

    @abc.abstractmethod
    async def durable(self, seq: int = 0) -> None:
        """Return once the events up to ``seq`` (0: every event appended so far) are on disk."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Write what is queued and stop (daemon shutdown)."""


class EventSpecs:
    @hookspec
    def dockyard_event(self, kernel: Kernel, event: Event) -> None:
        """Observe one event. Called for every plugin, after commit, in the event loop.

        Must be cheap and must not raise; long work goes to a task of the plugin's own.
        An exception is recorded against the plugin and the event is still delivered to
        the others.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_background_services(self, kernel: Kernel) -> Iterable[BackgroundService]:
        """Background services to run while the daemon runs.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_build_record(self, kernel: Kernel, image: Image, record: dict[str, Any]) -> None:
        """A build finished: ``image`` is its result, ``record`` the builder's record of it (a
        SLSA provenance v1 predicate: ``buildDefinition``, ``runDetails``; see
        ``dockyard_builder.record``). Called for every plugin by the builder, in the event loop,
        before the build's tags and record are written and before its ``build`` event, so a
        plugin can attest the image before anyone can use it by name. Raise
        :class:`dockyard.errors.DockyardError` to fail the build (the image stays untagged).
        Must be cheap (a signature, a small file).

        .. versionadded:: 0.3
        """

