"""Feature hooks: configuration.

Plugins declare the daemon settings they read (so an unknown key in ``daemon.json`` is an
error, as with dockerd) and are told when the configuration is (re)loaded (start and SIGHUP).

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


@dataclass(frozen=True)
class ConfigOption:
    """One daemon setting, as it appears in ``daemon.json`` (kebab-case)."""

    name: str
    type: type
    default: Any = None
    help: str = ""
    reloadable: bool = False


class ConfigSpecs:
    @hookspec(historic=True)
    def dockyard_config_options(self) -> Iterable[ConfigOption]:
        """Settings this plugin reads. Historic: plugins registered late see it too.

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_configure(self, kernel: Kernel, config: Mapping[str, Any], reload: bool) -> None:
        """The daemon configuration was loaded (``reload`` is True after SIGHUP).

        Only options declared ``reloadable`` change on reload. Raise
        :class:`dockyard.errors.InvalidArgument` to reject a value.

        .. versionadded:: 0.1
        """
