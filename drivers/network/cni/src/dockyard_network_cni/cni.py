"""Running CNI plugins: one executable per plugin, JSON config on stdin, ``CNI_*`` in the
environment, the result (or an error object) on stdout. See ``shared/reference/plugin-protocols.md``
§2: ADD runs a conflist's plugins in order, each after the first getting ``prevResult``; DEL runs
them in reverse with the cached result of the last ADD; CHECK runs them in order with it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unavailable

#: How long one plugin invocation may take.
TIMEOUT = 30.0


class CniError(DockyardError):
    """A CNI plugin failed; carries the spec's error ``code`` and ``msg``."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin, self.command, self.code, self.msg, self.details = plugin, command, code, msg, details
        text = f"CNI plugin {plugin} {command} failed (code {code}): {msg}"
        super().__init__(text + (f": {details}" if details else ""))


@dataclass
class Invocation:
    """What identifies one attachment: (network, container, ifname) and its namespace."""

    container_id: str
    netns: str
    ifname: str
    args: str = ""  # CNI_ARGS, "K=V;K2=V2"
    runtime_config: dict[str, Any] = field(default_factory=dict)  # capability name -> value


def find_plugin(name: str, path: Sequence[str]) -> Path:
    for d in path:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable(f"CNI plugin {name!r} not found in {':'.join(path)} "
                      "(Debian: apt-get install containernetworking-plugins)")


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any], runtime: dict[str, Any],
                  prev: dict[str, Any] | None) -> dict[str, Any]:
    """The config one plugin of a conflist gets: list ``name``/``cniVersion`` copied in,
    ``runtimeConfig`` limited to the capabilities it declares, ``prevResult`` when given."""
    conf = dict(plugin)
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    caps = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
    rc = {k: v for k, v in runtime.items() if k in caps}
    if rc:
        conf["runtimeConfig"] = rc
    if prev is not None:
        conf["prevResult"] = prev
    return conf


async def invoke(command: str, conf: dict[str, Any], inv: Invocation, path: Sequence[str]) -> dict[str, Any]:
    """Run one plugin; its parsed stdout (``{}`` for an empty answer). Raises CniError."""
    exe = find_plugin(conf["type"], path)
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": inv.container_id, "CNI_NETNS": inv.netns,
           "CNI_IFNAME": inv.ifname, "CNI_ARGS": inv.args, "CNI_PATH": ":".join(path),
           "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    proc = await asyncio.create_subprocess_exec(str(exe), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(conf).encode()), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CniError(conf["type"], command, 11, f"timed out after {TIMEOUT:.0f}s") from None
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = {"code": 999, "msg": text or err.decode(errors="replace").strip() or f"exit {proc.returncode}"}
        raise CniError(conf["type"], command, int(doc.get("code") or 999), str(doc.get("msg", "")),
                       str(doc.get("details", "")))
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CniError(conf["type"], command, 6, f"unparsable result: {text[:200]!r}") from exc


async def add(conflist: dict[str, Any], inv: Invocation, path: Sequence[str]) -> dict[str, Any]:
    """ADD the whole chain; on a failure DEL what was added (reverse) and re-raise."""
    prev: dict[str, Any] | None = None
    done = 0
    try:
        for plugin in conflist["plugins"]:
            prev = await invoke("ADD", plugin_config(conflist, plugin, inv.runtime_config, prev), inv, path) or prev
            done += 1
    except BaseException:
        for plugin in reversed(conflist["plugins"][: done + 1]):
            try:
                await invoke("DEL", plugin_config(conflist, plugin, inv.runtime_config, prev), inv, path)
            except CniError:
                pass
        raise
    if prev is None:
        raise CniError(conflist["name"], "ADD", 999, "the chain returned no result")
    return prev


async def delete(conflist: dict[str, Any], inv: Invocation, path: Sequence[str],
                 cached: dict[str, Any] | None) -> None:
    """DEL the chain in reverse with the cached result (idempotent per the spec)."""
    for plugin in reversed(conflist["plugins"]):
        await invoke("DEL", plugin_config(conflist, plugin, inv.runtime_config, cached), inv, path)


async def check(conflist: dict[str, Any], inv: Invocation, path: Sequence[str], cached: dict[str, Any]) -> None:
    """CHECK the chain in order with the cached result. Raises CniError when it is broken."""
    if conflist.get("disableCheck"):
        return
    for plugin in conflist["plugins"]:
        await invoke("CHECK", plugin_config(conflist, plugin, inv.runtime_config, cached), inv, path)


def version(path: Sequence[str], plugin: str) -> list[str]:
    """Synchronous VERSION probe: the spec versions ``plugin`` supports."""
    import subprocess

    exe = find_plugin(plugin, path)
    res = subprocess.run([str(exe)], input=b"{}", capture_output=True, timeout=TIMEOUT,
                         env={"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if res.returncode != 0:
        raise Unavailable(f"CNI plugin {plugin} VERSION failed: {res.stdout.decode(errors='replace')}")
    return list(json.loads(res.stdout).get("supportedVersions") or [])


__all__ = ["CniError", "Invocation", "InvalidArgument", "NotFound", "add", "check", "delete", "find_plugin",
           "invoke", "plugin_config", "version"]
