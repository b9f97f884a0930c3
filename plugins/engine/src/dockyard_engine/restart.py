"""Restart policies: whether an exited container restarts, and docker's growing back-off.

Pure logic (no I/O) so that it is unit-tested on its own; the container service applies it.

dockerd's rules (``restartmanager``): ``no`` never restarts; ``always`` restarts after every
exit; ``unless-stopped`` too, except after a manual stop; ``on-failure[:N]`` restarts after a
non-zero exit, at most ``N`` times when ``N`` > 0. A manual ``stop`` (or ``kill`` through stop)
never leads to a restart. The delay starts at 100 ms and doubles after each restart; a
container that ran for at least 10 s resets it to 100 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import InvalidArgument
from dockyard.model import RestartPolicy

POLICIES = ("no", "always", "unless-stopped", "on-failure")
BACKOFF_START = 0.1  # seconds
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # seconds of uptime that reset the back-off


def validate(policy: RestartPolicy, auto_remove: bool = False) -> None:
    name = policy.name or "no"
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if policy.maximum_retry_count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if policy.maximum_retry_count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if auto_remove and name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


@dataclass
class Backoff:
    """The delay before the next restart of one container."""

    delay: float = 0.0

    def next(self, uptime: float) -> float:
        if uptime >= RESET_AFTER or self.delay == 0.0:
            self.delay = BACKOFF_START
        else:
            self.delay = min(self.delay * 2, BACKOFF_MAX)
        return self.delay


def should_restart(policy: RestartPolicy, exit_code: int, restart_count: int, manually_stopped: bool) -> bool:
    name = policy.name or "no"
    if manually_stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        if exit_code == 0:
            return False
        return policy.maximum_retry_count == 0 or restart_count < policy.maximum_retry_count
    return False


def restart_at_daemon_start(policy: RestartPolicy, manually_stopped: bool) -> bool:
    """Whether a container found exited at daemon start is restarted (dockerd: ``always``
    always, ``unless-stopped`` unless stopped by hand; ``on-failure`` is not)."""
    name = policy.name or "no"
    if name == "always":
        return True
    return name == "unless-stopped" and not manually_stopped
