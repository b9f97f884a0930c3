"""The attach pump's side of stdin, on a real hijacked connection with a recording stream: a
detach ends the session without signalling end of input; the client's end of input is passed on
(``close_stdin``), and whether the process's stdin closes is the runtime's StdinOnce/TTY rule
(the Linux driver's tests check that part with conmon)."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from dockyard.specs.arch import AttachStream
from dockyard_api_docker.attach import pump
from dockyard_api_docker.streams import hijack


class Recording(AttachStream):
    """A process that echoes what it reads and ends at the end of its input."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.output: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def read(self) -> tuple[str, bytes] | None:
        return await self.output.get()

    async def write(self, data: bytes) -> None:
        self.calls.append(f"write {data.decode()}")
        await self.output.put(("stdout", data))

    async def close_stdin(self) -> None:
        self.calls.append("close_stdin")
        await self.output.put(None)

    def close(self) -> None:
        self.calls.append("close")


async def _session(tmp_path, send: bytes, half_close: bool) -> tuple[str, list[str], bytes]:  # noqa: ANN001
    stream = Recording()
    outcome: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp, conn = await hijack(request)
        outcome.append(await pump(conn, stream, tty=True, stdin=True, detach_keys=b"\x10\x11"))
        return resp

    app = web.Application()
    app.router.add_post("/attach", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "s.sock")
    await web.UnixSite(runner, path).start()
    try:
        def client() -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(path)
                s.sendall(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                          b"Content-Length: 0\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(1)
                s.sendall(send)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(4096):  # until the server closes
                    out += chunk
                return out

        out = await asyncio.to_thread(client)
    finally:
        await runner.cleanup()
    return outcome[0], stream.calls, out


async def test_a_detach_does_not_end_the_input(tmp_path) -> None:  # noqa: ANN001
    outcome, calls, _out = await _session(tmp_path, b"x\x10\x11", half_close=False)
    assert outcome == "detached"
    assert calls == ["write x", "close"]  # no close_stdin: the container's stdin is left to the runtime


async def test_the_clients_end_of_input_is_passed_on(tmp_path) -> None:  # noqa: ANN001
    outcome, calls, out = await _session(tmp_path, b"x", half_close=True)
    assert outcome == "exited" and out == b"x"  # the output kept flowing until the process ended
    assert calls == ["write x", "close_stdin", "close"]
