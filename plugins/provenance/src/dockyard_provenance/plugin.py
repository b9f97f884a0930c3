"""The ``provenance`` plugin: the ``trust-policy`` daemon setting and the image policy it
offers to core (``ImagePolicy`` through ``dockyard_provides``): the puller asks it before any
layer is fetched, the engine before a container is made of a present image."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockyard.specs import ConfigOption, Provided, hookimpl
from dockyard.specs.storage import ImagePolicy


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [ConfigOption("trust-policy", str, "",
                         "image policy file (containers-policy.json shape: sigstoreSigned keys, "
                         "insecureAcceptAnything, reject per registry/repository) consulted on pull "
                         "and on create of a present image; empty: no policy", reloadable=True)]


@hookimpl
def dockyard_configure(kernel: Any, config: Mapping[str, Any], reload: bool) -> None:
    """A policy file that does not parse stops the daemon at start (and a reload)."""
    from dockyard_provenance.policy import load

    path = str(config.get("trust-policy") or "")
    if path:
        load(Path(path))


@hookimpl
def dockyard_provides(kernel: Any) -> list[Provided]:
    from dockyard_provenance.policy import FilePolicy

    return [Provided(ImagePolicy, FilePolicy(), "provenance")]
