"""Image config documents: Dockerfile-style ``changes`` (import/commit) and the model view.

An image config is kept exactly as its JSON blob (its digest is the image ID); this module reads
it into :class:`dockyard.model.ImageConfig` / :class:`HistoryEntry` and applies the ``changes``
that ``docker import -c`` and ``docker commit -c`` send (``CMD``, ``ENTRYPOINT``, ``ENV``,
``EXPOSE``, ``LABEL``, ``ONBUILD``, ``STOPSIGNAL``, ``USER``, ``VOLUME``, ``WORKDIR``; the set
dockerd accepts) to the config's ``config`` object, in Docker's PascalCase form.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.model import Healthcheck, HistoryEntry, ImageConfig

#: Instructions dockerd allows in ``changes`` (``dockerfile.ValidateChanges``).
ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL",
           "USER", "VOLUME", "WORKDIR")


class InvalidChange(InvalidArgument):
    """A ``changes`` line that is not an allowed, well-formed instruction."""


def _json_or_words(rest: str) -> list[str] | None:
    """The JSON array form, or ``None`` when ``rest`` is not one."""
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def _command(rest: str) -> list[str]:
    """Exec form ``["a","b"]`` as is; shell form becomes ``/bin/sh -c "<rest>"``."""
    value = _json_or_words(rest)
    if value is not None:
        return value
    return ["/bin/sh", "-c", rest.strip()]


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` pairs, or the legacy ``k v with spaces`` form."""
    rest = rest.strip()
    if not rest:
        raise InvalidChange(f"{what} requires at least one argument")
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidChange(f"{what} {rest}: {exc}") from exc
    if "=" not in words[0]:
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise InvalidChange(f"{what} {rest}: expected key=value, got {w!r}")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply ``changes`` to the ``config`` object of an image config (modified in place)."""
    for raw in changes:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instr = word.upper()
        if instr not in ALLOWED:
            raise InvalidChange(f"{word} is not a valid change command")
        if instr == "CMD":
            config["Cmd"] = _command(rest)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _command(rest)
        elif instr == "ENV":
            env = list(config.get("Env") or [])
            for key, value in _pairs(rest, "ENV"):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            config["Env"] = env
        elif instr == "LABEL":
            labels = dict(config.get("Labels") or {})
            for key, value in _pairs(rest, "LABEL"):
                labels[key] = value
            config["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in rest.split():
                port, _, proto = p.partition("/")
                if not port.replace("-", "").isdigit():
                    raise InvalidChange(f"EXPOSE {rest}: invalid port {p!r}")
                ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
            config["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            paths = _json_or_words(rest)
            for v in paths if paths is not None else rest.split():
                if not v:
                    raise InvalidChange("VOLUME specified can not be an empty string")
                vols[v] = {}
            config["Volumes"] = vols
        elif instr == "WORKDIR":
            if not rest.strip():
                raise InvalidChange("WORKDIR requires exactly one argument")
            config["WorkingDir"] = rest.strip()
        elif instr == "USER":
            if not rest.strip():
                raise InvalidChange("USER requires exactly one argument")
            config["User"] = rest.strip()
        elif instr == "STOPSIGNAL":
            config["StopSignal"] = rest.strip()
        elif instr == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [rest.strip()]
        elif instr == "HEALTHCHECK":
            args = _json_or_words(rest)
            if rest.strip().upper() == "NONE":
                config["Healthcheck"] = {"Test": ["NONE"]}
            elif rest.upper().startswith("CMD "):
                cmd = rest[4:]
                value = _json_or_words(cmd)
                config["Healthcheck"] = {"Test": ["CMD", *value] if value is not None else ["CMD-SHELL", cmd.strip()]}
            elif args is not None:
                config["Healthcheck"] = {"Test": args}
            else:
                raise InvalidChange(f"HEALTHCHECK {rest}: expected NONE or CMD ...")
    return config


# --------------------------------------------------------------------------- model views
def image_config(cfg: dict[str, Any] | None) -> ImageConfig:
    """The runnable part of a config's ``config`` object as the model's dataclass."""
    cfg = cfg or {}
    hc = cfg.get("Healthcheck")
    return ImageConfig(
        cmd=list(cfg.get("Cmd") or []),
        entrypoint=list(cfg.get("Entrypoint") or []),
        env=list(cfg.get("Env") or []),
        working_dir=cfg.get("WorkingDir") or "",
        user=cfg.get("User") or "",
        labels=dict(cfg.get("Labels") or {}),
        exposed_ports=sorted(cfg.get("ExposedPorts") or {}),
        volumes=sorted(cfg.get("Volumes") or {}),
        stop_signal=cfg.get("StopSignal") or "",
        healthcheck=Healthcheck(test=list(hc.get("Test") or []), interval=int(hc.get("Interval") or 0),
                                timeout=int(hc.get("Timeout") or 0),
                                start_period=int(hc.get("StartPeriod") or 0),
                                retries=int(hc.get("Retries") or 0)) if isinstance(hc, dict) else None,
        on_build=list(cfg.get("OnBuild") or []),
        shell=list(cfg.get("Shell") or []),
    )


def config_object(ic: ImageConfig) -> dict[str, Any]:
    """The inverse of :func:`image_config`: a Docker ``config`` object (only set fields)."""
    out: dict[str, Any] = {}
    if ic.cmd:
        out["Cmd"] = list(ic.cmd)
    if ic.entrypoint:
        out["Entrypoint"] = list(ic.entrypoint)
    if ic.env:
        out["Env"] = list(ic.env)
    if ic.working_dir:
        out["WorkingDir"] = ic.working_dir
    if ic.user:
        out["User"] = ic.user
    if ic.labels:
        out["Labels"] = dict(ic.labels)
    if ic.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in ic.exposed_ports}
    if ic.volumes:
        out["Volumes"] = {v: {} for v in ic.volumes}
    if ic.stop_signal:
        out["StopSignal"] = ic.stop_signal
    if ic.healthcheck is not None:
        hc = ic.healthcheck
        out["Healthcheck"] = {"Test": list(hc.test), "Interval": hc.interval, "Timeout": hc.timeout,
                              "StartPeriod": hc.start_period, "Retries": hc.retries}
    if ic.on_build:
        out["OnBuild"] = list(ic.on_build)
    if ic.shell:
        out["Shell"] = list(ic.shell)
    return out


def history_entries(doc: dict[str, Any]) -> list[HistoryEntry]:
    out = []
    for h in doc.get("history") or []:
        if not isinstance(h, dict):
            continue
        out.append(HistoryEntry(created=str(h.get("created") or ""), created_by=str(h.get("created_by") or ""),
                                comment=str(h.get("comment") or ""), author=str(h.get("author") or ""),
                                empty_layer=bool(h.get("empty_layer"))))
    return out
