"""``docker exec``: sessions kept in memory (as dockerd keeps them), run by the runtime driver.

A session is created against a running container, started once (``exec_start``), and its
exit is recorded by a task that waits on the runtime (``exec_die`` is emitted). Internal
sessions (healthcheck probes) emit nothing and are forgotten once they end.
"""

from __future__ import annotations

import asyncio
import contextlib

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import Container, ContainerStatus, new_id
from dockyard.services.containers import ExecSession
from dockyard.specs.arch import AttachStream, ExecRequest
from dockyard_engine.container_context import ContainerContext
from dockyard_engine.start_errors import exec_error, exec_failure, lookup_reason

#: dockerd's exit code for an exec that could not start (127 when its command is not found), and
#: for one killed with its container
CANNOT_START = 126
KILLED = 137


class Execs:
    """The exec sessions of every container."""

    def __init__(self, ctx: ContainerContext) -> None:
        self.ctx = ctx
        self.sessions: dict[str, ExecSession] = {}

    def create(self, ref: str, cmd: list[str], *, tty: bool = False, attach_stdin: bool = False,
               attach_stdout: bool = True, attach_stderr: bool = True, env: list[str] | None = None,
               user: str = "", working_dir: str = "", privileged: bool = False, detach_keys: str = "",
               internal: bool = False) -> ExecSession:
        c = self.ctx.get(ref)
        if c.state.status is ContainerStatus.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        sess = ExecSession(id=new_id(), container_id=c.id, cmd=list(cmd), tty=tty, attach_stdin=attach_stdin,
                           attach_stdout=attach_stdout, attach_stderr=attach_stderr, env=list(env or []),
                           user=user, working_dir=working_dir, privileged=privileged, detach_keys=detach_keys,
                           internal=internal)
        self.sessions[sess.id] = sess
        if not internal:
            c.exec_ids.append(sess.id)
            self.ctx.put(c)
            self.ctx.emit(c, "exec_create: " + " ".join(cmd), execID=sess.id)
        return sess

    def get(self, exec_id: str) -> ExecSession:
        """By ID or a unique prefix of at least 4 characters."""
        sess = self.sessions.get(exec_id)
        if sess is None:
            for s in self.sessions.values():
                if s.id.startswith(exec_id) and len(exec_id) >= 4:
                    return s
            raise NotFound(f"No such exec instance: {exec_id}")
        return sess

    def forget(self, c: Container) -> None:
        """Drop the sessions of a removed container."""
        for eid in c.exec_ids:
            self.sessions.pop(eid, None)

    async def start(self, exec_id: str, attach: bool = True) -> tuple[ExecSession, AttachStream | None]:
        """Start the exec'd process; returns the attach stream when ``attach``. The exit is
        recorded by a task that waits on the runtime."""
        sess = self.get(exec_id)
        if sess.started:
            raise Conflict(f"Exec {exec_id} has already been started" if sess.running
                           else f"cannot start exec {exec_id}: it has already run")
        c = self.ctx.load(sess.container_id)
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        sess.started = True
        rt = await self.ctx.runtime(c)
        st = await rt.exec(ExecRequest(container_id=c.id, exec_id=sess.id, cmd=sess.cmd, env=list(sess.env),
                                       user=sess.user, working_dir=sess.working_dir, tty=sess.tty,
                                       privileged=sess.privileged, stdin=sess.attach_stdin))
        sess.running = st.status == "running"
        sess.pid = st.pid
        if not sess.internal:
            self.ctx.emit(c, "exec_start: " + " ".join(sess.cmd), execID=sess.id)
        if st.status == "stopped":
            if st.error:  # dockerd's ExitCode (127 not found, else 126) and text (start_errors)
                text = st.error
                if exec_error(sess.cmd[0], text) is None:  # no reason given (conmon with a terminal)
                    text = await self._lookup_reason(c, sess) or text
                code, sess.error = exec_failure(sess.cmd, text)
            else:
                code = st.exit_code if st.exit_code is not None else CANNOT_START
            await self._done(sess, code)
            return sess, None
        stream = await rt.attach(c.id, exec_id=sess.id) if attach else None
        self.ctx.spawn(self._wait(sess), f"exec-{sess.id[:12]}")
        return sess, stream

    async def _lookup_reason(self, c: Container, sess: ExecSession) -> str | None:
        """Why the exec's command could not start, looked up in the container's rootfs
        (:func:`~dockyard_engine.start_errors.lookup_reason`); None when that finds nothing."""
        env = dict(e.partition("=")[::2] for e in [*c.config.env, *sess.env])
        try:
            drv = await self.ctx.storage()
            rootfs = await drv.mount(c.id)
        except Exception:  # noqa: BLE001 - only an explanation is lost
            return None
        try:
            return await asyncio.to_thread(lookup_reason, rootfs, sess.cmd[0], env.get("PATH", ""),
                                           sess.working_dir or c.config.working_dir or "/")
        finally:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)

    async def _wait(self, sess: ExecSession) -> None:
        try:
            c = self.ctx.load(sess.container_id)
            rt = await self.ctx.runtime(c)
            st = await rt.exec_wait(sess.id)
            code = st.exit_code if st.exit_code is not None else CANNOT_START
        except NotFound:
            code = KILLED
        await self._done(sess, code)

    async def _done(self, sess: ExecSession, code: int) -> None:
        if sess.done.is_set():
            return
        sess.exit_code = code
        sess.running = False
        sess.done.set()
        try:
            c = self.ctx.load(sess.container_id)
        except NotFound:
            return
        if not sess.internal:
            self.ctx.emit(c, "exec_die", execID=sess.id, exitCode=code)
            return
        with contextlib.suppress(Exception):
            await (await self.ctx.runtime(c)).exec_delete(sess.id)
        self.sessions.pop(sess.id, None)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        sess = self.get(exec_id)
        if not sess.running:
            raise Conflict(f"Exec {exec_id} is not running")
        c = self.ctx.load(sess.container_id)
        await (await self.ctx.runtime(c)).resize(c.id, height, width, exec_id=sess.id)

    async def run(self, ref: str, cmd: list[str], timeout: float | None = None,
                  internal: bool = False) -> tuple[int, str]:
        """Run a command to completion; (exit code, combined output). TimeoutError kills it."""
        sess = self.create(ref, cmd, internal=internal)
        _sess, stream = await self.start(sess.id, attach=True)
        out: list[bytes] = []
        if sess.error:
            return sess.exit_code or CANNOT_START, sess.error

        async def drain() -> None:
            assert stream is not None
            while (item := await stream.read()) is not None:
                out.append(item[1])
            await sess.done.wait()

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            c = self.ctx.load(sess.container_id)
            with contextlib.suppress(Exception):
                await (await self.ctx.runtime(c)).exec_delete(sess.id)
            await self._done(sess, KILLED)
            raise
        finally:
            if stream is not None:
                stream.close()
        code = sess.exit_code if sess.exit_code is not None else CANNOT_START
        return code, b"".join(out).decode(errors="replace")
