"""Feature hooks: lifecycle events and background services.

Every state change the services make is a :class:`dockyard.model.Event`, emitted after the
transaction that made it commits: ``/events`` streams them, restart policies and healthchecks
react to them, provenance signs them, a cluster manager watches them.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Event


@dataclass(frozen=True)
class BackgroundService:
    """A long-running task of a plugin (healthcheck monitor, DNS server, cluster agent).

    ``run(kernel)`` is awaited as an asyncio task after the kernel has started and is
    cancelled at shutdown; it must survive cancellation cleanly.
    """

    name: str
    run: Callable[[Kernel], Awaitable[None]]


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
