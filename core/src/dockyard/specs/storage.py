"""Area ``storage``: layer drivers (image layers and container root filesystems) and volumes.

Capabilities the storage kit knows: ``xattrs`` (extended attributes survive apply/diff),
``opaque-dirs`` (opaque directory whiteouts kept through a stack), ``volatile`` (a layer driver's
:meth:`LayerDriver.mount` takes ``volatile=True``), and for volume drivers ``tmpfs`` and ``bind``
(the local driver's ``type=tmpfs`` and ``o=bind`` options).

Layer drivers register under ``dockyard.drivers.storage``; exactly one is active, chosen by the
``storage-driver`` setting (default ``overlay``). Volume drivers register under
``dockyard.drivers.volume`` and are chosen per volume (default ``local``).

Layer keys are opaque strings chosen by the image/container services: chain IDs for image
layers, container IDs for read-write layers. Layer tars use Docker's whiteout convention
(``.wh.<name>`` deletes ``<name>``, ``.wh..wh..opq`` makes a directory opaque) in both
directions, whatever the driver stores internally.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Image, Volume


@dataclass(frozen=True)
class LayerInfo:
    key: str
    parent: str | None
    size: int  # bytes this layer adds
    diff_id: str = ""  # "sha256:..." of the uncompressed layer tar, when known


class LayerDriver(Driver):
    """The ABC of a layer (graph) driver."""

    @abc.abstractmethod
    async def apply(self, key: str, parent: str | None, tar_path: str) -> LayerInfo:
        """Create immutable layer ``key`` on ``parent`` from an uncompressed layer tar.

        Extraction must be safe (no path escapes the layer, see ``dockyard.tarsafe``) and
        atomic: on any error nothing named ``key`` exists afterwards.
        """

    @abc.abstractmethod
    async def prepare(self, key: str, parent: str | None) -> None:
        """Create a writable layer ``key`` on top of ``parent`` (a container's rootfs)."""

    @abc.abstractmethod
    async def mount(self, key: str, volatile: bool = False) -> str:
        """Mount layer ``key`` with its parents and return the root path. Reference counted.

        ``volatile`` (only passed to drivers with the ``volatile`` capability; the first
        reference decides): nothing written through this mount needs to survive a crash of the
        host, because the layer is removed once it is unmounted (a ``docker run --rm``
        container's). The driver may then skip syncing it: overlayfs's ``volatile`` option
        drops the sync of the whole upper filesystem at unmount (2.7-14 ms of every such
        container's exit on a busy disk, measured) and fsync passthrough, as podman mounts its
        ``--rm`` containers.

        .. versionchanged:: 0.3 ``volatile``
        """

    @abc.abstractmethod
    async def unmount(self, key: str) -> None:
        """Drop one mount reference; unmount when it reaches zero. Releasing a mount that is
        not held is a no-op."""

    @abc.abstractmethod
    async def diff(self, key: str, out_path: str) -> int:
        """Write the changes of ``key`` against its parent as a layer tar; returns its size."""

    @abc.abstractmethod
    async def remove(self, key: str) -> None:
        """Remove layer ``key``. Removing a layer that other layers build on, or one that is
        mounted, is a Conflict."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether layer ``key`` exists."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Every layer key the driver holds."""

    async def usage(self, key: str) -> int:
        """Bytes used by layer ``key`` alone."""
        return 0

    async def layer_info(self, key: str) -> LayerInfo:
        """Parent, size and diff ID of layer ``key`` (NotFound when absent).

        Optional: drivers that keep this metadata implement it; callers fall back to their
        own records when it raises NotImplementedError.
        """
        raise NotImplementedError(f"{self.info.name} keeps no layer metadata")


@dataclass
class VolumeMount:
    path: str  # host path to bind into the container


class VolumeDriver(Driver):
    """The ABC of a volume driver (mirrors Docker's VolumeDriver plugin protocol)."""

    @abc.abstractmethod
    async def create(self, name: str, options: dict[str, str]) -> str:
        """Create volume ``name``; returns its mountpoint. Unknown options are InvalidArgument."""

    @abc.abstractmethod
    async def remove(self, name: str) -> None:
        """Remove the volume's data."""

    @abc.abstractmethod
    async def mount(self, name: str, container_id: str) -> VolumeMount:
        """Make the volume available to ``container_id``; reference counted per container."""

    @abc.abstractmethod
    async def unmount(self, name: str, container_id: str) -> None:
        """Release ``container_id``'s use of the volume."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Names of the volumes this driver holds."""

    async def usage(self, name: str) -> int:
        """Bytes used by the volume (``-1`` when unknown)."""
        return -1

    async def options(self, name: str) -> dict[str, str]:
        """The options volume ``name`` was created with, such that ``create(name, options)``
        returns the existing volume's mountpoint.

        The volume service adopts with it a volume the driver holds but the store does not (a
        daemon killed between the driver's ``create`` and the record): it records these
        options and the mountpoint. A driver whose volumes take options overrides it (NotFound
        for a volume it does not hold); the default, ``{}``, suits one whose volumes take none.
        """
        return {}


@dataclass(frozen=True)
class ImagePuller:
    """Who fetches images from registries (the distribution plugin provides one).

    ``pull(kernel, reference, platform="", auth=None, progress=None) -> Image`` is the service
    entry (the builder's ``FROM``, ``docker run``'s auto-pull); ``auth`` is Docker's AuthConfig
    as a dict (``username``, ``password``, ``serveraddress``, ``identitytoken``) or None;
    ``progress`` is called with Docker JSON-message dicts. ``handler`` answers ``POST /images/create?fromImage=`` for the Docker
    dialect (a missing manifest is a 404 *before* the progress stream starts, as dockerd does).
    """

    name: str
    pull: Callable[..., Awaitable[Image]]
    handler: Callable[[Any], Awaitable[Any]] | None = None


# -- registries and image policy: what provenance needs (versionadded 0.3) ---------------


@dataclass(frozen=True)
class RegistryManifest:
    """A manifest as a registry served it: the exact bytes, their media type and digest
    (verified by the session against the bytes)."""

    body: bytes
    media_type: str
    digest: str


class RegistrySession(abc.ABC):
    """Requests to one registry host (its credentials and TLS settings already chosen): the
    narrow part of the distribution spec that signatures and attestations need. Obtained from
    :class:`RegistrySessions`; close it with ``await session.close()``. ``repository`` is the
    path inside the registry (``library/busybox``). A missing manifest, blob or repository is
    :class:`~dockyard.errors.NotFound`; content whose digest differs from the one asked for is
    refused by the session.

    .. versionadded:: 0.3
    """

    host: str

    @abc.abstractmethod
    async def get_manifest(self, repository: str, reference: str) -> RegistryManifest:
        """The manifest or index ``reference`` (a tag or ``sha256:...``) names."""

    @abc.abstractmethod
    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Store ``body`` under ``reference`` (a tag or its digest); returns the digest."""

    @abc.abstractmethod
    async def get_blob(self, repository: str, digest: str, max_size: int = 4 << 20) -> bytes:
        """A small blob in memory (a signature payload, a config), verified."""

    @abc.abstractmethod
    async def put_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` unless the registry has it; returns its ``sha256:`` digest."""

    @abc.abstractmethod
    async def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connections."""


class RegistrySessions(abc.ABC):
    """Opens :class:`RegistrySession` objects (the distribution plugin offers one through
    ``dockyard_provides``; a plugin that needs registries asks ``kernel.provided()``).

    .. versionadded:: 0.3
    """

    @abc.abstractmethod
    def open(self, host: str, auth: dict[str, Any] | None = None) -> RegistrySession:
        """A session with registry ``host`` (``docker.io`` means Docker Hub); ``auth`` is
        Docker's AuthConfig dict or None (the daemon's settings say which hosts are insecure)."""


class ImageAttachments(abc.ABC):
    """What travels beside an image to a registry (provenance: the image's build attestations,
    pushed as cosign's ``.att``). The pusher (dockyard-distribution) calls :meth:`pushed` once
    the image's manifest is stored and before the push is answered; a plugin offers one through
    ``dockyard_provides``.

    .. versionadded:: 0.3
    """

    @abc.abstractmethod
    async def pushed(self, session: RegistrySession, repository: str, image: Image, digest: str) -> list[str]:
        """``image`` was pushed to ``repository`` as manifest ``digest``: store what belongs
        beside it through ``session`` (left open: the pusher closes it). Returns lines for the
        push's progress (``Pushed attestation sha256:...``); raise to fail the push."""


#: where an image policy is consulted
POLICY_ACTIONS = ("pull", "load", "create")


@dataclass(frozen=True)
class ImageCheck:
    """What an :class:`ImagePolicy` judges. ``reference`` is the normalized name the image was
    asked by (``registry/repository[:tag]``, no digest); ``digest`` the top-level manifest digest
    in that repository (an index's for a multi-platform image; "" when none is known, e.g. a
    loaded archive); ``action`` one of :data:`POLICY_ACTIONS`; ``image`` the local image when
    it is already present (create), else None.

    .. versionadded:: 0.3
    """

    reference: str
    digest: str
    action: str
    image: Image | None = None


class ImagePolicy(abc.ABC):
    """Admission of images by their provenance (a trust policy). Offered through
    ``dockyard_provides``; the image puller asks it after resolving the manifest and before
    downloading a layer, the engine before loading an archive's images and before creating a
    container from a present image. ``check`` raises :class:`~dockyard.errors.Forbidden` naming
    the image, the digest and the policy entry to refuse; nothing is stored or run then.

    .. versionadded:: 0.3
    """

    @abc.abstractmethod
    async def check(self, kernel: Kernel, check: ImageCheck) -> None:
        """Return to admit; raise ``Forbidden`` to refuse."""


# -- migration: moving a running container to another engine (versionadded 0.3) ------------

#: how memory travels: ``stop-copy`` (every page in the dump), ``lazy`` (post-copy: pages
#: served on demand from a page server on the source), ``auto`` (lazy above a memory size)
MIGRATION_MODES = ("auto", "stop-copy", "lazy")
#: the phases a migration reports and a failure is judged by
MIGRATION_PHASES = ("prepare", "image", "dump", "transfer", "restore", "cleanup", "done")


@dataclass(frozen=True)
class MigrationTicket:
    """What a target engine hands out for one incoming migration (``offer``): the address a
    source reaches it at (``HOST:PORT``; an empty host means "the address the client reached
    the target by"), a one-time ``token`` the source presents, the ``migrator`` that will
    receive, whether the connection is TLS (the target's own server certificate), and when the
    offer lapses (epoch seconds). It travels from target to source only through the client,
    over the engines' own mutual-TLS APIs.

    .. versionadded:: 0.3
    """

    address: str
    token: str
    migrator: str
    tls: bool = False
    expires: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"Address": self.address, "Token": self.token, "Migrator": self.migrator, "Tls": self.tls,
                "Expires": self.expires}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MigrationTicket:
        return cls(address=str(doc.get("Address") or ""), token=str(doc.get("Token") or ""),
                   migrator=str(doc.get("Migrator") or ""), tls=bool(doc.get("Tls")),
                   expires=float(doc.get("Expires") or 0))


@dataclass(frozen=True)
class MigrationOptions:
    """How to migrate: ``mode`` (:data:`MIGRATION_MODES`) and the memory size from which
    ``auto`` picks ``lazy``; for :meth:`Migrator.offer`, the address the target's receiver
    listens on ("" = loopback; the API uses the address the client reached the target by).

    .. versionadded:: 0.3
    """

    mode: str = "auto"
    lazy_threshold: int = 128 << 20
    listen: str = ""


@dataclass(frozen=True)
class MigrationProgress:
    """One report of a running migration: its ``phase`` (:data:`MIGRATION_PHASES`, or
    ``rollback``), bytes sent so far, how long the container has been frozen (ms; final once
    the target runs) and a human line.

    .. versionadded:: 0.3
    """

    phase: str
    bytes: int = 0
    frozen_ms: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class MigrationResult:
    """A finished migration: the container's ID on the target, the memory ``mode`` used, bytes
    moved, frozen and total time (ms) and each phase's duration.

    .. versionadded:: 0.3
    """

    container_id: str
    mode: str
    bytes: int
    frozen_ms: float
    total_ms: float
    phases: dict[str, float]


class Migrator(abc.ABC):
    """A way to move a running container between engines (a transport and its strategy).

    Both ends run the same migrator: the target's :meth:`offer` opens a one-time receiver and
    returns its ticket; the source's :meth:`send` moves the container there and reports
    progress. The contract a migrator keeps: afterwards the container runs on exactly one of
    the two engines with its data intact; a failure while it is frozen resumes it on the
    source; the source's copy is removed only once the target's runs. :meth:`recover` runs at
    every daemon start and finishes or undoes what a killed daemon left half done.

    .. versionadded:: 0.3
    """

    name: str = ""

    @abc.abstractmethod
    async def offer(self, kernel: Kernel, options: MigrationOptions) -> MigrationTicket:
        """Target side: get ready to receive one container (any checks that need no container
        first, e.g. that this engine can restore checkpoints)."""

    @abc.abstractmethod
    async def send(self, kernel: Kernel, ref: str, ticket: MigrationTicket, options: MigrationOptions,
                   report: Callable[[MigrationProgress], None]) -> MigrationResult:
        """Source side: move container ``ref`` to the target that gave ``ticket``."""

    async def recover(self, kernel: Kernel) -> None:
        """At daemon start: settle migrations a killed daemon (either side) left behind."""
        return None


@dataclass(frozen=True)
class VolumeCarrier:
    """How the named volumes of some volume ``drivers`` travel in a migration. ``send(volume,
    out)`` writes the volume's content to the binary stream ``out``; ``receive(volume, src)``
    fills the target's volume of the same name from it. Both block (they run in a thread).
    ``send`` None means nothing moves: the storage is shared, and the target's driver finds the
    same data by name (a volume driver of networked storage plugs in here).

    .. versionadded:: 0.3
    """

    name: str
    drivers: tuple[str, ...]
    send: Callable[[Volume, BinaryIO], None] | None = None
    receive: Callable[[Volume, BinaryIO], None] | None = None


class StorageSpecs:
    """Hook specifications of the ``storage`` area."""

    @hookspec
    def dockyard_image_admit(self, kernel: Kernel, image: Image, source: str) -> None:
        """Veto an image before it becomes visible in the store.

        Called for every plugin when an image arrives (``source`` is ``load``, ``pull``,
        ``import``, ``build`` or ``commit``), after every blob was verified against its digest
        and before the reference is written. Raise :class:`dockyard.errors.DockyardError`
        (e.g. a failed signature check) to refuse it; the store is then left unchanged.

        .. versionadded:: 0.1
        """

    @hookspec(firstresult=True)
    def dockyard_image_puller(self, kernel: Kernel) -> ImagePuller | None:
        """Who pulls images from registries. First non-None result wins.

        Example::

            @hookimpl
            def dockyard_image_puller(kernel):
                return ImagePuller("distribution", pull=my_pull, handler=my_http_handler)

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_storage_options(self, kernel: Kernel, driver: str) -> dict[str, Any] | None:
        """Contribute default options for layer driver ``driver`` (``storage-opts``).

        Results are merged in call order, config wins. Return ``None`` for no opinion.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_migrators(self, kernel: Kernel) -> Iterable[Migrator] | None:
        """Offer ways to migrate containers between engines (:class:`Migrator`). Collected from
        every plugin; one is used per migration, by name (the request's ``migrator``, else the
        daemon setting ``migrator``); two with one name are a conflict.

        .. versionadded:: 0.3
        """

    @hookspec
    def dockyard_volume_carriers(self, kernel: Kernel) -> Iterable[VolumeCarrier] | None:
        """Say how the volumes of some volume drivers travel in a migration
        (:class:`VolumeCarrier`; ``send=None`` for shared storage that moves nothing). Collected
        from every plugin; a volume whose driver no carrier names stops the migration before
        the container is frozen.

        Example::

            @hookimpl
            def dockyard_volume_carriers(kernel):
                return [VolumeCarrier("nfs", drivers=("nfs",))]  # the target mounts the same export

        .. versionadded:: 0.3
        """

    @hookspec
    def dockyard_migration_phase(self, kernel: Kernel, side: str, phase: str, container: str,
                                 migration: str) -> None:
        """A live migration reached ``phase`` on this engine, which is its ``side`` (``source``
        or ``target``). ``container`` is the container's name (the same on both sides),
        ``migration`` the migration's ID (the same on both sides: join the two engines' records
        by it). A migrator calls it at each point below, in the migration's task on the
        daemon's event loop: keep it cheap (hand slow work to a thread or a queue).

        - source: ``image`` (only when the target lacks the container's image: before it is
          sent, nothing frozen yet), ``dump`` (frozen, dumped, the archive sent), ``transfer``
          (before the volumes), ``restore`` (the commit sent, before the target's answer),
          ``cleanup`` (committed: the target runs it; before the source's copy is removed);
        - target: ``image`` (it lacks the image and asked the source for it, before it
          arrives), ``transfer`` (the archive received, before the volumes), ``restore`` (the
          commit received, before restoring), ``cleanup`` (the source said done; before the
          target drops its files).

        Uses: progress reporting, auditing (who moved what, where, when), metrics per phase,
        and crash tests, which fail or kill the daemon at a phase to prove the rollback. Called
        for every plugin; returns nothing. Raising fails the migration at that point as any
        failure there would (before ``cleanup`` the container resumes on the source; at
        ``cleanup`` the move stands), so an observer must not raise.

        Example::

            @hookimpl
            def dockyard_migration_phase(kernel, side, phase, container, migration):
                audit.info("migration %s (%s): %s %s", migration, container, side, phase)

        .. versionadded:: 0.3
        """
