"""The checkpoint API is dockerd's experimental one: without the ``experimental`` setting its
routes answer 404 saying how to turn it on, ``/_ping`` says ``Docker-Experimental: false`` (the
docker CLI then hides ``docker checkpoint``) and ``/version`` reports it off; with it, on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dockyard.config import Config
from dockyard.errors import NotFound
from dockyard.kernel import Kernel
from dockyard.server import KERNEL_KEY
from dockyard_api_docker import checkpoints, system


def request_for(kernel: Kernel, method: str, path: str, match: dict[str, str] | None = None) -> web.Request:
    app = web.Application()
    app[KERNEL_KEY] = kernel
    req = make_mocked_request(method, path, app=app, match_info=match or {})
    return req


@pytest.mark.parametrize("experimental", [False, True])
async def test_experimental_gates_the_checkpoint_api(tmp_path: Any, experimental: bool) -> None:
    kernel = Kernel.build(Config(values={"data-root": str(tmp_path), "experimental": experimental}),
                          autoload=False, environ={})
    try:
        ping = await system.ping(request_for(kernel, "GET", "/_ping"))
        assert ping.headers["Docker-Experimental"] == ("true" if experimental else "false")
        version = json.loads((await system.version(request_for(kernel, "GET", "/version"))).body)
        assert version["Experimental"] is experimental
        if not experimental:
            with pytest.raises(NotFound, match="--experimental"):
                await checkpoints.list_checkpoints(request_for(kernel, "GET", "/containers/c/checkpoints",
                                                               {"id": "c"}))
    finally:
        await kernel.stop()
