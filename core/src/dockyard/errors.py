"""Typed errors. Only the API front maps them to HTTP status codes."""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""


class NotFound(DockyardError):
    """An object (container, image, network, volume, plugin...) does not exist."""


class Conflict(DockyardError):
    """The request conflicts with current state (name in use, object in use, wrong state)."""


class InvalidArgument(DockyardError):
    """The request is malformed or names something impossible."""


class NotModified(DockyardError):
    """The request asks for the state the object is already in (start a running container)."""


class Forbidden(DockyardError):
    """The operation is refused by policy (remove a network with active endpoints)."""


class Unavailable(DockyardError):
    """A needed driver or facility is not available on this host."""


# The cluster store's errors (``dockyard.specs.cluster.ClusterStore``).
class StoreUnavailable(Unavailable):
    """No endpoint of the cluster store answered (down, unreachable, no quorum)."""


class TxnFailed(Conflict):
    """A cluster-store transaction's compare failed: another writer changed a key first."""


class LeaseNotFound(NotFound):
    """A cluster-store lease expired or was revoked (its keys are gone)."""


class StoreCompacted(DockyardError):
    """A watch asked for revisions the store has compacted away: list again, then watch."""

    def __init__(self, message: str, compact_revision: int = 0):
        super().__init__(message)
        self.compact_revision = compact_revision


class PluginError(DockyardError):
    """Base of plugin loading and selection errors."""


class PluginLoadError(PluginError):
    """A plugin or driver failed to load; carries where it came from and why."""

    def __init__(self, entry_point: str, distribution: str | None, version: str | None, cause: str):
        self.entry_point = entry_point
        self.distribution = distribution
        self.version = version
        self.cause = cause
        origin = f"{distribution} {version}" if distribution else "unknown distribution"
        super().__init__(f"plugin {entry_point} ({origin}) failed to load: {cause}")


class PluginConflictError(PluginError):
    """Two distributions claim the same plugin or driver name."""

    def __init__(self, kind: str, name: str, claimants: list[str]):
        self.kind = kind
        self.name = name
        self.claimants = sorted(claimants)
        super().__init__(
            f"{kind} name {name!r} is claimed by more than one distribution: "
            + ", ".join(self.claimants)
        )


class DriverNotInstalled(PluginError, Unavailable):
    """The driver asked for is not installed; says which distribution provides it."""

    def __init__(self, kind: str, name: str, installed: list[str], distribution: str, hint: str = ""):
        self.kind = kind
        self.name = name
        self.installed = sorted(installed)
        self.distribution = distribution
        have = ", ".join(self.installed) or "none"
        super().__init__(
            f"{kind} driver {name!r} is not installed (installed: {have}); "
            f"install it with: pip install {distribution}" + (f"; {hint}" if hint else "")
        )


class ServiceNotInstalled(PluginError, Unavailable):
    """No installed provider offers the service asked for (for this daemon's role)."""

    def __init__(self, name: str, role: str, distribution: str):
        self.name = name
        self.role = role
        self.distribution = distribution
        super().__init__(f"the {name} service is not installed for the {role!r} role; "
                         f"install it with: pip install {distribution}")


class PluginBlocked(PluginError):
    """A plugin was asked for but is denied by configuration."""
