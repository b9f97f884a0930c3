"""Area ``storage``: layer drivers (image layers and container root filesystems) and volumes.

Capabilities the storage kit knows: ``xattrs`` (extended attributes survive apply/diff),
``opaque-dirs`` (opaque directory whiteouts kept through a stack), and for volume drivers
``tmpfs`` and ``bind`` (the local driver's ``type=tmpfs`` and ``o=bind`` options).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Image


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
    async def mount(self, key: str) -> str:
        """Mount layer ``key`` with its parents and return the root path. Reference counted."""

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
