"""Large JSON answers are encoded in a worker thread (issue 21 item 13): while one client gets a
list holding a label of tens of megabytes, the event loop keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

from aiohttp import web

from dockyard_api_docker.http import LARGE_JSON, JsonResponse, json_response


def test_small_answers_are_encoded_at_once_and_large_ones_later() -> None:
    small = json_response({"Id": "x"})
    assert isinstance(small, JsonResponse) and small.body == b'{"Id":"x"}\n'
    big = json_response([{"Labels": {"huge": "h" * (LARGE_JSON + 1)}}])
    assert big.data is not None  # encoded when sent, in a thread


async def _longest_stall(tmp_path, answer) -> float:  # noqa: ANN001
    """The longest the event loop went unserved while a client fetched ``answer()``."""
    async def handler(request: web.Request) -> web.Response:
        return answer()

    app = web.Application()
    app.router.add_get("/containers/json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / f"s{os.getpid()}-{time.monotonic_ns()}.sock")
    await web.UnixSite(runner, path).start()
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    def client() -> int:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"GET /containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = 0
        while chunk := s.recv(1 << 20):
            got += len(chunk)
        s.close()
        return got

    beat = asyncio.ensure_future(heartbeat())
    try:
        assert await asyncio.to_thread(client) > 64 << 20
    finally:
        done.set()
        await beat
        await runner.cleanup()
    return max(gaps)


async def test_the_loop_keeps_serving_while_a_large_answer_is_encoded(tmp_path) -> None:  # noqa: ANN001
    huge = [{"Id": str(i), "Labels": {"huge": "h" * (8 << 20)}} for i in range(8)]  # 64 MiB of JSON

    def in_the_loop() -> web.Response:  # what the front did before
        return web.Response(body=json.dumps(huge, separators=(",", ":")) + "\n", content_type="application/json")

    before = await _longest_stall(tmp_path, in_the_loop)
    now = await _longest_stall(tmp_path, lambda: json_response(huge))
    # what is left is the copy of the answer into the socket's buffer, not its encoding
    assert now < 0.6 * before, (now, before)


def test_large_encoding_is_the_same_json() -> None:
    from dockyard_api_docker.http import PIECE, _encode, _encode_large

    data = [{"a": "é\u2028\"\\" * PIECE, "b": [1, 2.5, None, True, {"c": []}], "d": {}, 3: "x"}, "tail", []]
    assert _encode_large(data) == _encode(data)
