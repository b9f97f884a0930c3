"""The manager's container calls that move bytes: logs, attach, exec, stats, top and the file
endpoints, each passed through to the node that holds the container.

Attach and exec start are hijacked on the node (:meth:`EngineClient.hijack`) and handed to
the API front as core's ``AttachStream`` (:class:`~dockyard_swarm.engines.DemuxedAttach`), so
the front's own pump serves the client: detach keys, half-close and framing stay the front's.

Exec sessions: the Protocol creates them synchronously, so the manager keeps the session
(:class:`~dockyard.services.containers.ExecSession`, its own ID) and creates the node's exec
when it starts; the session's exit code is the node's, read when the stream ends (before the
front closes the client's connection) or when ``GET /exec/{id}/json`` is asked
(:meth:`ContainerIO.refresh_exec`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard import errors as e
from dockyard.model import Container, new_id
from dockyard.services.containers import ExecSession, LogOptions, PathStat
from dockyard.specs.arch import AttachStream
from dockyard_swarm.engines import DemuxedAttach, EngineClient, RawStream, demux_body
from dockyard_swarm.tasks import cancel_all

if TYPE_CHECKING:
    from dockyard_swarm.containers_cache import Placed

#: ``update``'s resources, core's names -> the Docker body's.
UPDATE_KEYS = {"memory": "Memory", "memory_swap": "MemorySwap", "memory_reservation": "MemoryReservation",
               "nano_cpus": "NanoCpus", "cpu_shares": "CpuShares", "cpu_period": "CpuPeriod",
               "cpu_quota": "CpuQuota", "cpuset_cpus": "CpusetCpus", "cpuset_mems": "CpusetMems",
               "pids_limit": "PidsLimit", "blkio_weight": "BlkioWeight"}
STAT_HEADER = "X-Docker-Container-Path-Stat"


@dataclass
class RemoteExec:
    session: ExecSession
    placed: Placed
    remote_id: str = ""


class _ExecAttach(DemuxedAttach):
    """An exec's stream: at its end the node's exit code is read into the session, then the
    session is done (the front waits for that before it closes the client's connection)."""

    def __init__(self, raw: RawStream, tty: bool, owner: ContainerIO, rexec: RemoteExec) -> None:
        super().__init__(raw, tty)
        self.owner = owner
        self.rexec = rexec

    async def read(self) -> tuple[str, bytes] | None:
        item = await super().read()
        if item is None:
            await self.owner._finish_exec(self.rexec)
        return item

    def close(self) -> None:
        super().close()
        if not self.rexec.session.done.is_set():
            self.owner._spawn(self.owner._finish_exec(self.rexec))


class ContainerIO:
    """Mixed into :class:`~dockyard_swarm.containers.ClusterContainers` (which provides
    ``_locate``, ``_must``, ``_client`` and ``_execs``)."""

    _execs: dict[str, RemoteExec]

    if TYPE_CHECKING:
        async def _locate(self, ref: str) -> Placed: ...
        def _must(self, ref: str) -> Placed: ...
        def _client(self, p: Placed) -> EngineClient: ...

    def _spawn(self, coro: Any) -> None:
        tasks: set[asyncio.Task[Any]] = self.__dict__.setdefault("_io_tasks", set())
        t = asyncio.ensure_future(coro)
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    async def stop_io(self) -> None:
        await cancel_all(list(self.__dict__.get("_io_tasks", ())))

    # ------------------------------------------------------------------ logs
    def check_logs_readable(self, c: Container) -> None:
        """The node checks (its log driver's answer comes with the stream)."""

    def _log_params(self, opts: LogOptions) -> dict[str, Any]:
        return {"stdout": opts.stdout, "stderr": opts.stderr, "follow": opts.follow,
                "tail": "all" if opts.tail is None else opts.tail, "since": opts.since or None,
                "until": opts.until or None, "timestamps": opts.timestamps}

    async def open_logs(self, ref: str, opts: LogOptions) -> AsyncGenerator[tuple[str, bytes], None]:
        p = await self._locate(ref)
        cm = self._client(p).stream("GET", f"/containers/{p.id}/logs", self._log_params(opts))
        resp = await cm.__aenter__()  # the node's answer (and its errors) before the front's headers

        async def records() -> AsyncGenerator[tuple[str, bytes], None]:
            try:
                async for item in demux_body(resp, p.container.config.tty):
                    yield item
            finally:
                await cm.__aexit__(None, None, None)

        return records()

    async def logs(self, ref: str, opts: LogOptions) -> AsyncIterator[tuple[str, bytes]]:
        records = await self.open_logs(ref, opts)
        try:
            async for item in records:
                yield item
        finally:
            await records.aclose()

    # ------------------------------------------------------------------ attach
    async def attach(self, ref: str) -> tuple[Container, AttachStream | asyncio.Future[AttachStream]]:
        p = await self._locate(ref)
        c = p.container
        raw = await self._client(p).hijack(f"/containers/{p.id}/attach", {
            "stream": 1, "stdin": 1 if c.config.open_stdin else 0, "stdout": 1, "stderr": 1})
        p.stale = True
        return c, DemuxedAttach(raw, c.config.tty)

    def cancel_attach(self, cid: str, fut: asyncio.Future[AttachStream]) -> None:
        if not fut.done():
            fut.cancel()

    def detached(self, ref: str) -> None:
        """The node saw its attach connection closed; nothing else to do here."""

    async def resize(self, ref: str, height: int, width: int) -> None:
        p = await self._locate(ref)
        await self._client(p).request("POST", f"/containers/{p.id}/resize", {"h": height, "w": width})

    # ------------------------------------------------------------------ exec
    def exec_create(self, ref: str, cmd: list[str], *, tty: bool = False, attach_stdin: bool = False,
                    attach_stdout: bool = True, attach_stderr: bool = True, env: list[str] | None = None,
                    user: str = "", working_dir: str = "", privileged: bool = False, detach_keys: str = "",
                    internal: bool = False) -> ExecSession:
        p = self._must(ref)
        c = p.container
        if not c.state.running:
            raise e.Conflict(f"Container {c.id} is not running")
        if not cmd:
            raise e.InvalidArgument("No exec command specified")
        sess = ExecSession(id=new_id(), container_id=c.id, cmd=list(cmd), tty=tty, attach_stdin=attach_stdin,
                           attach_stdout=attach_stdout, attach_stderr=attach_stderr, env=list(env or []),
                           user=user, working_dir=working_dir, privileged=privileged, detach_keys=detach_keys,
                           internal=internal)
        self._execs[sess.id] = RemoteExec(sess, p)
        return sess

    def _rexec(self, exec_id: str) -> RemoteExec:
        found = self._execs.get(exec_id)
        if found is None:
            raise e.NotFound(f"No such exec instance: {exec_id}")
        return found

    def exec_get(self, exec_id: str) -> ExecSession:
        return self._rexec(exec_id).session

    async def exec_start(self, exec_id: str, attach: bool = True) -> tuple[ExecSession, AttachStream | None]:
        rexec = self._rexec(exec_id)
        sess, p = rexec.session, rexec.placed
        if sess.started:
            raise e.Conflict(f"Exec {sess.id} has already been started")
        client = self._client(p)
        answer = await client.post(f"/containers/{p.id}/exec", None, {
            "Cmd": sess.cmd, "Tty": sess.tty, "AttachStdin": sess.attach_stdin, "AttachStdout": sess.attach_stdout,
            "AttachStderr": sess.attach_stderr, "Env": sess.env, "User": sess.user,
            "WorkingDir": sess.working_dir, "Privileged": sess.privileged})
        rexec.remote_id = answer["Id"]
        sess.started = sess.running = True
        if not attach:
            await client.post(f"/exec/{rexec.remote_id}/start", None, {"Detach": True, "Tty": sess.tty})
            return sess, None
        raw = await client.hijack(f"/exec/{rexec.remote_id}/start", None, {"Detach": False, "Tty": sess.tty})
        return sess, _ExecAttach(raw, sess.tty, self, rexec)

    async def refresh_exec(self, exec_id: str) -> ExecSession:
        """The node's state of the session (``GET /exec/{id}/json``)."""
        rexec = self._rexec(exec_id)
        if rexec.remote_id and not rexec.session.done.is_set():
            await self._read_exec(rexec)
        return rexec.session

    async def _read_exec(self, rexec: RemoteExec) -> None:
        doc = await self._client(rexec.placed).get(f"/exec/{rexec.remote_id}/json")
        sess = rexec.session
        sess.running = bool(doc.get("Running"))
        sess.pid = int(doc.get("Pid") or 0)
        if not sess.running:
            code = doc.get("ExitCode")
            sess.exit_code = int(code) if code is not None else None
            sess.done.set()

    async def _finish_exec(self, rexec: RemoteExec) -> None:
        """The stream ended: the exit code is the node's (it may lag the stream by a moment)."""
        for _ in range(50):
            try:
                await self._read_exec(rexec)
            except e.DockyardError:
                break
            if rexec.session.done.is_set():
                return
            await asyncio.sleep(0.02)
        rexec.session.running = False
        rexec.session.done.set()

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        rexec = self._rexec(exec_id)
        if rexec.remote_id:
            await self._client(rexec.placed).request("POST", f"/exec/{rexec.remote_id}/resize",
                                                     {"h": height, "w": width})

    # ------------------------------------------------------------------ processes
    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        p = await self._locate(ref)
        return await self._client(p).get(f"/containers/{p.id}/top", {"ps_args": ps_args or None})

    async def stats(self, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        p = await self._locate(ref)
        return await self._client(p).get(f"/containers/{p.id}/stats", {"stream": 0, "one-shot": 1})

    async def stats_stream(self, ref: str, stream: bool = True, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        p = await self._locate(ref)
        async for doc in self._client(p).stream_json("GET", f"/containers/{p.id}/stats", {"stream": stream}):
            yield doc

    # ------------------------------------------------------------------ files
    async def archive_stat(self, ref: str, path: str) -> PathStat:
        p = await self._locate(ref)
        _status, headers, _ = await self._client(p).request("HEAD", f"/containers/{p.id}/archive", {"path": path})
        return _path_stat(headers)

    async def archive_get(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        p = await self._locate(ref)
        async with self._client(p).stream("GET", f"/containers/{p.id}/archive", {"path": path}) as resp:
            st = _path_stat(dict(resp.headers))
            async for chunk in resp.content.iter_chunked(1 << 16):
                await asyncio.to_thread(out.write, chunk)
        return st

    async def archive_put(self, ref: str, path: str, tar_path: str) -> None:
        p = await self._locate(ref)
        with open(tar_path, "rb") as fh:
            await self._client(p).request("PUT", f"/containers/{p.id}/archive", {"path": path}, data=fh,
                                          headers={"Content-Type": "application/x-tar"}, timeout=None)

    async def changes(self, ref: str) -> list[dict[str, Any]]:
        p = await self._locate(ref)
        return list(await self._client(p).get(f"/containers/{p.id}/changes") or [])

    async def export(self, ref: str, out_path: str) -> None:
        p = await self._locate(ref)
        async with self._client(p).stream("GET", f"/containers/{p.id}/export") as resp:
            with open(out_path, "wb") as fh:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    await asyncio.to_thread(fh.write, chunk)

    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: list[str] | None = None, pause: bool = True,
                     config: dict[str, Any] | None = None) -> str:
        p = await self._locate(ref)
        params: dict[str, Any] = {"container": p.id, "repo": repo or None, "tag": tag or None,
                                  "comment": comment or None, "author": author or None, "pause": pause}
        if changes:
            params["changes"] = "\n".join(changes)  # the front splits lines, as dockerd
        out = await self._client(p).post("/commit", params, config or {})
        return str((out or {}).get("Id") or "")


def _path_stat(headers: dict[str, str]) -> PathStat:
    raw = next((v for k, v in headers.items() if k.lower() == STAT_HEADER.lower()), "")
    if not raw:
        raise e.Unavailable("the node answered without a path stat")
    with contextlib.suppress(ValueError):
        doc = json.loads(base64.b64decode(raw))
        return PathStat(name=doc.get("name", ""), size=int(doc.get("size") or 0), mode=int(doc.get("mode") or 0),
                        mtime=doc.get("mtime", ""), link_target=doc.get("linkTarget", ""))
    raise e.Unavailable(f"the node answered a malformed path stat {raw!r}")


__all__ = ["STAT_HEADER", "UPDATE_KEYS", "ContainerIO", "RemoteExec"]
