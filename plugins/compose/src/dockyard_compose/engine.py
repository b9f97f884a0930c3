"""The engine, seen only through the Docker Engine API.

Everything on the wire is dockyard-core's client (:mod:`dockyard.client`): the address
(``-H``, ``DOCKYARD_HOST``, ``DOCKER_HOST`` with docker's TLS variables), plain calls, the
8-byte stream demultiplexer and the hijacked (``101 UPGRADED``) connections of attach and exec.
This module adds what only compose needs: its labels, label-checked container listings, and
logs as ``(stream, bytes)`` pairs for its log printer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from dockyard import errors as e
from dockyard.client import Client, Hijacked, demux, read_json, resolve_address

LABEL = "com.docker.compose"
L_PROJECT = f"{LABEL}.project"
L_SERVICE = f"{LABEL}.service"
L_NUMBER = f"{LABEL}.container-number"
L_ONEOFF = f"{LABEL}.oneoff"
L_HASH = f"{LABEL}.config-hash"
L_WORKDIR = f"{LABEL}.project.working_dir"
L_FILES = f"{LABEL}.project.config_files"
L_ENVFILE = f"{LABEL}.project.environment_file"
L_VERSION = f"{LABEL}.version"
L_NETWORK = f"{LABEL}.network"
L_VOLUME = f"{LABEL}.volume"
L_IMAGE = f"{LABEL}.image"
L_DEPENDS = f"{LABEL}.depends_on"


def resolve_host(explicit: str | None) -> str:
    """The engine's address as written: ``-H``, else ``DOCKYARD_HOST``, else ``DOCKER_HOST``, else
    dockyardd's default socket (``dockyard.client.resolve_address``, shared with every client)."""
    return str(resolve_address(explicit))


class Engine:
    def __init__(self, host: str | None = None) -> None:
        self.client = Client(resolve_address(host))
        self.host = self.client.host
        self._version: dict[str, Any] | None = None

    # -- plain calls --------------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, **params)

    def post(self, path: str, body: Any = None, timeout: float | None = -1.0, **params: Any) -> Any:
        return read_json(self.client.request("POST", path, params, body=body, timeout=timeout))

    def delete(self, path: str, **params: Any) -> Any:
        return self.client.delete(path, **params)

    def version(self) -> dict[str, Any]:
        if self._version is None:
            self._version = self.get("/version") or {}
        return self._version

    @property
    def engine_name(self) -> str:
        comps = self.version().get("Components") or []
        return comps[0].get("Name", "Engine") if comps else "Engine"

    # -- containers ---------------------------------------------------------------------------------------
    def containers(self, project: str | None = None, service: str | None = None, oneoff: bool | None = False,
                   all: bool = True, extra: list[str] | None = None) -> list[dict[str, Any]]:
        labels = [L_PROJECT if project is None else f"{L_PROJECT}={project}"]
        if service is not None:
            labels.append(f"{L_SERVICE}={service}")
        if oneoff is not None:
            labels.append(f"{L_ONEOFF}={'True' if oneoff else 'False'}")
        labels += extra or []
        found = self.get("/containers/json", all=1 if all else 0,
                         filters=json.dumps({"label": labels})) or []
        # Some engines treat label filters as OR or ignore unknown ones: check on our side too.
        want = dict(x.split("=", 1) if "=" in x else (x, None) for x in labels)
        out = []
        for c in found:
            have = c.get("Labels") or {}
            if all_ok(have, want):
                out.append(c)
        return sorted(out, key=lambda c: (have_label(c, L_SERVICE), int(have_label(c, L_NUMBER) or 0)))

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.get(f"/containers/{cid}/json")

    def image(self, ref: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/images/{ref}/json")
        except e.NotFound:
            return None

    def network(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/networks/{name}")
        except e.NotFound:
            return None

    def volume(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/volumes/{name}")
        except e.NotFound:
            return None

    # -- streams ------------------------------------------------------------------------------------------
    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                    headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        return self.client.stream_json(method, path, params, body=body, headers=headers)

    def logs(self, cid: str, tty: bool, follow: bool = False, tail: str = "all", timestamps: bool = False,
             since: int | None = None) -> Iterator[tuple[int, bytes]]:
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1 if follow else 0, "tail": tail,
                                  "timestamps": 1 if timestamps else 0}
        if since is not None:
            params["since"] = since
        resp = self.client.request("GET", f"/containers/{cid}/logs", params, timeout=None)
        try:
            if tty:
                while chunk := resp.read1(65536):
                    yield 1, chunk
            else:
                yield from demux(resp.read)
        finally:
            resp.close()

    def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
        """POST with ``Connection: Upgrade``; the raw connection after the 101."""
        return self.client.hijack(path, params, body)


def all_ok(have: dict[str, str], want: dict[str, str | None]) -> bool:
    for k, v in want.items():
        if k not in have or (v is not None and have[k] != v):
            return False
    return True


def have_label(container: dict[str, Any], key: str) -> str:
    return (container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}).get(key, "")
