"""Daemon configuration: dockerd-style flags over a ``daemon.json``-style file.

Keys are kebab-case, as in dockerd's ``daemon.json``. Core keys are declared here; plugins
declare theirs through the ``dockyard_config_options`` hook, and :meth:`Config.validate`
rejects keys nobody declared (dockerd does the same).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.specs.config import ConfigOption

DEFAULT_SOCKET = "unix:///run/dockyard/dockyard.sock"

CORE_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("hosts", list, [DEFAULT_SOCKET], "API sockets to listen on"),
    # None: "docker" when that group exists (dockerd's -G default), else the daemon's own group
    ConfigOption("group", str, None, "group of the unix sockets (default docker, when that group exists)"),
    # TLS of the tcp:// listeners, dockerd's keys (see dockyard.tlsconfig and docs/tls.md). No
    # defaults: whether tls/tlsverify were given at all is what decides.
    ConfigOption("tls", bool, None, "use TLS on tcp:// listeners; implied by tlsverify"),
    ConfigOption("tlsverify", bool, None, "use TLS and require client certificates signed by tlscacert"),
    ConfigOption("tlscacert", str, None, "trust client certificates signed only by this CA (~/.docker/ca.pem)"),
    ConfigOption("tlscert", str, None, "the server's TLS certificate (~/.docker/cert.pem)"),
    ConfigOption("tlskey", str, None, "the server's TLS key (~/.docker/key.pem)"),
    ConfigOption("data-root", str, "/var/lib/dockyard", "persistent state"),
    ConfigOption("exec-root", str, "/run/dockyard", "runtime state (sockets, pids)"),
    ConfigOption("pidfile", str, "", "daemon PID file (default <exec-root>/dockyardd.pid)"),
    ConfigOption("log-level", str, "info", "debug, info, warn, error", reloadable=True),
    ConfigOption("debug", bool, False, "same as log-level debug", reloadable=True),
    ConfigOption("storage-driver", str, "overlay", "layer driver"),
    ConfigOption("storage-opts", list, [], "layer driver options key=value"),
    *(ConfigOption(f"{kind}-opts", list, [], f"{kind} driver options key=value")
      for kind in ("arch", "volume", "network", "ipam", "cluster", "provision")),
    ConfigOption("default-runtime", str, "crun", "OCI runtime for new containers"),
    ConfigOption("runtimes", dict, {}, "extra OCI runtimes name -> {path}"),
    ConfigOption("cluster-store", str, "", "cluster store URL, etcd://HOST:PORT[,HOST:PORT...]/PREFIX (empty: single host)"),
    ConfigOption("cluster-advertise", str, "", "ADDR:PORT (or IFACE:PORT) a cluster reaches this daemon at"),
    ConfigOption("role", str, "engine", "which services back the API: engine (this host's) or a cluster role"),
    ConfigOption("labels", list, [], "engine labels key=value", reloadable=True),
    ConfigOption("live-restore", bool, True, "keep containers running while the daemon is down"),
    ConfigOption("experimental", bool, False, "dockerd's experimental features (the checkpoint API)"),
    ConfigOption("plugins", dict, {}, "{'allow': [...], 'deny': [...]}"),
)


def _coerce(opt: ConfigOption, value: Any) -> Any:
    if opt.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON's 30 for a number of seconds
    if opt.type is bool and isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    if opt.type is list and isinstance(value, str):
        return [value]
    if not isinstance(value, opt.type):
        raise InvalidArgument(f"configuration {opt.name!r}: expected {opt.type.__name__}, "
                              f"got {type(value).__name__} {value!r}")
    return value


@dataclass
class Config:
    """The effective configuration: defaults < config file < flags."""

    values: dict[str, Any] = field(default_factory=dict)
    config_file: str = ""

    @classmethod
    def load(cls, config_file: str = "", overrides: Mapping[str, Any] | None = None) -> Config:
        """Read ``config_file`` (JSON; a missing default file is fine) and apply ``overrides``."""
        values: dict[str, Any] = {}
        if config_file:
            path = Path(config_file)
            if path.exists():
                try:
                    loaded = json.loads(path.read_text() or "{}")
                except json.JSONDecodeError as exc:
                    raise InvalidArgument(f"configuration file {config_file}: invalid JSON at "
                                          f"line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
                if not isinstance(loaded, dict):
                    raise InvalidArgument(f"configuration file {config_file}: expected a JSON object")
                values.update(loaded)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        return cls(values=values, config_file=config_file)

    def validate(self, extra: Iterable[ConfigOption] = ()) -> None:
        """Type-check every key; unknown keys are an error naming them."""
        options = {o.name: o for o in (*CORE_OPTIONS, *extra)}
        unknown = sorted(set(self.values) - set(options))
        if unknown:
            raise InvalidArgument("unknown configuration option(s): " + ", ".join(unknown))
        for key, value in self.values.items():
            self.values[key] = _coerce(options[key], value)

    def effective(self, extra: Iterable[ConfigOption] = ()) -> dict[str, Any]:
        """Every declared setting with its default, overlaid with what was set explicitly."""
        values = {o.name: o.default for o in (*CORE_OPTIONS, *extra) if o.default is not None}
        values.update(self.values)
        return values

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.values:
            return self.values[key]
        for opt in CORE_OPTIONS:
            if opt.name == key:
                return opt.default if default is None else default
        return default

    # Convenience accessors for the core's own settings --------------------------------
    @property
    def data_root(self) -> Path:
        return Path(self.get("data-root"))

    @property
    def exec_root(self) -> Path:
        return Path(self.get("exec-root"))

    @property
    def pidfile(self) -> Path:
        return Path(self.get("pidfile") or self.exec_root / "dockyardd.pid")

    @property
    def hosts(self) -> list[str]:
        return list(self.get("hosts") or [DEFAULT_SOCKET])

    @property
    def owner(self) -> str:
        """A short token naming this daemon's kernel objects (``dy`` + 6 hex of data-root)."""
        digest = hashlib.sha256(str(self.data_root.resolve()).encode()).hexdigest()
        return "dy" + digest[:6]

    def options_for(self, key: str) -> dict[str, str]:
        """``key=value`` list settings (``storage-opts``) as a dict."""
        out = {}
        for item in self.get(key) or []:
            k, sep, v = str(item).partition("=")
            if not sep:
                raise InvalidArgument(f"{key}: {item!r} is not key=value")
            out[k.strip()] = v.strip()
        return out

    @property
    def plugin_allow(self) -> list[str] | None:
        allow = (self.get("plugins") or {}).get("allow")
        return list(allow) if allow is not None else None

    @property
    def plugin_deny(self) -> list[str]:
        return list((self.get("plugins") or {}).get("deny") or [])
