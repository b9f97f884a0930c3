"""What ``dockyard machine create`` asks for: the name, the provision driver and its options,
and the engine's options (Docker Machine's ``--engine-*`` flags), checked and turned into the
``dockyardd`` flags and environment the provision driver starts the engine with.

Docker Machine wrote its engine options into the remote dockerd's configuration; here they
become ``dockyardd`` flags (``HostRequest.engine_options``) and environment
(``HostRequest.engine_env``):

========================================  ===================================================
``--engine-label k=v``                    ``--label k=v`` (and the machine's labels: ``ls --filter label=k=v``)
``--engine-storage-driver NAME``          ``--storage-driver NAME``
``--engine-insecure-registry HOST``       ``--insecure-registry HOST`` (dockyard-distribution)
``--engine-opt flag=value``, ``flag``     ``--flag=value``, ``--flag``: any other dockyardd flag
``--engine-env K=V``                      ``K=V`` in the engine's environment
``--engine-registry-mirror URL``          ``--registry-mirror URL`` (dockyard-distribution: docker.io pulls)
========================================  ===================================================

Flags the provision driver sets itself (where the engine listens, its roots, its TLS files)
are refused in ``--engine-opt``: a host built with them would not be reachable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.reference import validate_mirror

#: Docker Machine's rule for machine names (``host.ValidateHostName``).
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]*$")
NAME_ERROR = "Invalid hostname specified. Allowed hostname chars are: 0-9a-zA-Z . -"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: dockyardd flags a provision driver sets for every host (``--engine-opt`` may not).
DRIVER_FLAGS = frozenset({"host", "H", "data-root", "exec-root", "pidfile", "p", "config-file", "tls",
                          "tlsverify", "tlscacert", "tlscert", "tlskey", "version", "v", "help", "h"})


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(NAME_ERROR)
    return name


def _pairs(values: list[str], what: str, key: re.Pattern[str] | None = None) -> list[tuple[str, str]]:
    out = []
    for raw in values:
        k, sep, v = str(raw).partition("=")
        if not sep or not k or (key is not None and not key.match(k)):
            raise InvalidArgument(f"{what} {raw!r}: expected KEY=VALUE")
        out.append((k, v))
    return out


def _known_flags() -> dict[str, Any]:
    """dockyardd's flags by name (without dashes) -> argparse action, from its own parser."""
    from dockyard.daemon import parser

    out: dict[str, Any] = {}
    for action in parser()._actions:  # noqa: SLF001 - argparse has no public listing of its actions
        for opt in action.option_strings:
            out[opt.lstrip("-")] = action
    return out


def _check_mirror(url: str) -> None:
    """dockerd's rule for a mirror (:func:`dockyard.reference.validate_mirror`; dockyardd checks
    it again at start), refused here so no host is made for nothing."""
    try:
        validate_mirror(url)
    except InvalidArgument as exc:
        raise InvalidArgument(f"--engine-registry-mirror {url}: {exc}") from None


@dataclass
class EngineOptions:
    """Docker Machine's ``EngineOptions``, as far as dockyardd has them."""

    labels: list[str] = field(default_factory=list)
    storage_driver: str = ""
    insecure_registry: list[str] = field(default_factory=list)
    registry_mirror: list[str] = field(default_factory=list)
    opts: list[str] = field(default_factory=list)  # Docker Machine's ArbitraryFlags
    env: list[str] = field(default_factory=list)

    def check(self) -> EngineOptions:
        """Raise :class:`InvalidArgument` naming the first option dockyardd cannot honour."""
        _pairs(self.labels, "--engine-label")
        _pairs(self.env, "--engine-env", _ENV_NAME)
        for mirror in self.registry_mirror:
            _check_mirror(mirror)
        if self.storage_driver and not re.match(r"^[a-z0-9][a-z0-9._-]*$", self.storage_driver):
            raise InvalidArgument(f"--engine-storage-driver {self.storage_driver!r} is not a driver name")
        known = _known_flags()
        for opt in self.opts:
            name = str(opt).partition("=")[0].lstrip("-")
            if name in DRIVER_FLAGS:
                raise InvalidArgument(f"--engine-opt {opt}: the provision driver sets --{name} itself")
            if name not in known:
                raise InvalidArgument(f"--engine-opt {opt}: dockyardd has no flag --{name} "
                                      "(see: python -m dockyard.daemon --help)")
            if "=" not in str(opt) and known[name].nargs not in (0, "?"):
                raise InvalidArgument(f"--engine-opt {opt}: --{name} takes a value (--engine-opt {name}=VALUE)")
        return self

    def flags(self) -> list[str]:
        """The ``dockyardd`` flags, in Docker Machine's order: labels, storage driver, insecure
        registries, registry mirrors, then the arbitrary flags."""
        out: list[str] = []
        for label in self.labels:
            out += ["--label", label]
        if self.storage_driver:
            out += ["--storage-driver", self.storage_driver]
        for registry in self.insecure_registry:
            out += ["--insecure-registry", registry]
        for mirror in self.registry_mirror:
            out += ["--registry-mirror", mirror]
        out += [f"--{str(opt).lstrip('-')}" for opt in self.opts]
        return out

    def environment(self) -> dict[str, str]:
        return dict(_pairs(self.env, "--engine-env", _ENV_NAME))

    def label_map(self) -> dict[str, str]:
        return dict(_pairs(self.labels, "--engine-label"))

    def to_json(self) -> dict[str, Any]:
        """Docker Machine's ``HostOptions.EngineOptions`` shape (what ``inspect`` shows)."""
        return {"ArbitraryFlags": list(self.opts), "Env": list(self.env), "InsecureRegistry": list(self.insecure_registry),
                "Labels": list(self.labels), "RegistryMirror": list(self.registry_mirror),
                "StorageDriver": self.storage_driver, "TlsVerify": True, "InstallURL": ""}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> EngineOptions:
        """From the API's (and ``to_json``'s) shape; a missing key is empty. Raises
        :class:`InvalidArgument` for values of the wrong type."""
        doc = doc or {}
        if not isinstance(doc, dict):
            raise InvalidArgument("EngineOptions must be a JSON object")

        def strings(key: str) -> list[str]:
            value = doc.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"EngineOptions.{key} must be a list of strings")
            return list(value)

        storage = doc.get("StorageDriver") or ""
        if not isinstance(storage, str):
            raise InvalidArgument("EngineOptions.StorageDriver must be a string")
        return cls(labels=strings("Labels"), storage_driver=storage, insecure_registry=strings("InsecureRegistry"),
                   registry_mirror=strings("RegistryMirror"), opts=strings("ArbitraryFlags"), env=strings("Env"))


#: Where Docker Machine's swarm master listened (``env --swarm``).
SWARM_MASTER_PORT = 3376


@dataclass
class SwarmOptions:
    """Docker Machine's ``SwarmOptions``: ``--swarm`` makes the machine's engine a node of the
    cluster whose store is ``--swarm-discovery`` (``etcd://HOST:PORT/PREFIX``): it starts with
    ``--cluster-store URL --cluster-advertise ADDR:PORT`` (its own address, known once the driver
    prepared the host; dockyard-swarm's heartbeat does the rest). ``--swarm-master``: the engine
    also runs the swarm's manager on ``tcp://ADDR:3376`` (``--cluster-store-opt swarm.master=...``,
    dockyard-swarm's), which ``env --swarm`` points at; its certificate carries clientAuth too."""

    is_swarm: bool = False
    master: bool = False
    discovery: str = ""
    host: str = ""  # the manager's URL (masters)

    def check(self) -> SwarmOptions:
        if (self.master or self.discovery) and not self.is_swarm:
            raise InvalidArgument("--swarm-master and --swarm-discovery need --swarm")
        if self.is_swarm:
            if not self.discovery:
                raise InvalidArgument("--swarm needs --swarm-discovery etcd://HOST:PORT/PREFIX (the cluster store)")
            from dockyard.specs.cluster import StoreURL

            try:
                StoreURL.parse(self.discovery)
            except InvalidArgument as exc:
                raise InvalidArgument(f"--swarm-discovery: {exc}") from None
        return self

    def engine_flags(self, address: str, port: int) -> list[str]:
        """The engine's flags once its address is known (the ``dockyard_engine_flags`` hook). A
        master's engine also runs the manager (dockyard-swarm's ``swarm.master`` cluster option)."""
        if not self.is_swarm or not address:
            return []
        flags = ["--cluster-store", self.discovery, "--cluster-advertise", f"{address}:{port}"]
        if self.master:
            flags += ["--cluster-store-opt", f"swarm.master=tcp://{address}:{SWARM_MASTER_PORT}"]
        return flags

    def to_json(self) -> dict[str, Any]:
        return {"IsSwarm": self.is_swarm, "Master": self.master, "Discovery": self.discovery,
                "Host": self.host, "Address": ""}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> SwarmOptions:
        doc = doc or {}
        if not isinstance(doc, dict):
            raise InvalidArgument("SwarmOptions must be a JSON object")
        discovery = doc.get("Discovery") or ""
        if not isinstance(discovery, str):
            raise InvalidArgument("SwarmOptions.Discovery must be a string")
        return cls(is_swarm=bool(doc.get("IsSwarm")), master=bool(doc.get("Master")), discovery=discovery,
                   host=str(doc.get("Host") or ""))


@dataclass
class MachineCreate:
    """A ``create`` request (the API's body, see docs/api-extensions.md)."""

    name: str
    driver: str = "netns"
    driver_options: dict[str, str] = field(default_factory=dict)
    engine: EngineOptions = field(default_factory=EngineOptions)
    swarm: SwarmOptions = field(default_factory=SwarmOptions)

    @classmethod
    def from_json(cls, doc: Any) -> MachineCreate:
        if not isinstance(doc, dict):
            raise InvalidArgument("the request body must be a JSON object")
        name = doc.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Name is required")
        driver = doc.get("DriverName") or "netns"
        if not isinstance(driver, str):
            raise InvalidArgument("DriverName must be a string")
        opts = doc.get("DriverOptions") or {}
        if not isinstance(opts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in opts.items()):
            raise InvalidArgument("DriverOptions must be an object of strings")
        return cls(name=name, driver=driver, driver_options=dict(opts),
                   engine=EngineOptions.from_json(doc.get("EngineOptions")),
                   swarm=SwarmOptions.from_json(doc.get("SwarmOptions")))

    def check(self) -> MachineCreate:
        check_name(self.name)
        self.engine.check()
        self.swarm.check()
        return self


__all__ = ["DRIVER_FLAGS", "NAME", "NAME_ERROR", "EngineOptions", "MachineCreate", "SwarmOptions", "check_name"]
