"""Windows named-pipe endpoints: parsed everywhere (daemon -H, client -H/DOCKYARD_HOST), used
only on Windows; elsewhere a clear error, before anything is bound."""

from __future__ import annotations

import sys

import pytest

from dockyard import npipe
from dockyard.client.address import DaemonAddress, resolve_address
from dockyard.client.errors import ConnectionFailed
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.server import parse_host, serve

PIPE = "\\\\.\\pipe\\docker_engine"


@pytest.mark.parametrize("text, pipe", [
    ("npipe:////./pipe/docker_engine", PIPE),
    ("npipe://./pipe/docker_engine", PIPE),
    ("npipe:\\\\.\\pipe\\docker_engine", PIPE),
    ("NPIPE:////./PIPE/dockyard-1", "\\\\.\\pipe\\dockyard-1"),
    ("npipe://", PIPE),
])
def test_parse(text, pipe):
    assert npipe.parse(text) == pipe
    assert npipe.parse(npipe.address(pipe)) == pipe


@pytest.mark.parametrize("text", ["npipe:////server/pipe/x", "npipe:////./notpipe/x", "npipe:////./pipe/",
                                  "npipe:////./pipe/a/b", "npipe:////./pipe/a:b", "unix:///x"])
def test_parse_refuses(text):
    with pytest.raises(InvalidArgument, match="named pipe"):
        npipe.parse(text)


def test_the_daemon_accepts_an_npipe_host():
    lst = parse_host("npipe:////./pipe/docker_engine")
    assert (lst.kind, lst.address) == ("npipe", PIPE)
    with pytest.raises(InvalidArgument, match="npipe"):
        parse_host("pipe://x")


@pytest.mark.skipif(sys.platform == "win32", reason="the error is for hosts without named pipes")
async def test_the_daemon_refuses_to_serve_a_pipe_off_windows():
    from aiohttp import web

    with pytest.raises(Unavailable, match="needs Windows"):
        await serve(web.Application(), [parse_host("npipe:////./pipe/docker_engine")])


def test_the_client_accepts_an_npipe_host():
    a = resolve_address(env={"DOCKYARD_HOST": "npipe:////./pipe/docker_engine"})
    assert (a.scheme, a.path, a.source, a.hostname, a.port) == ("npipe", PIPE, "DOCKYARD_HOST", "localhost", 0)
    assert str(a) == "npipe:////./pipe/docker_engine"
    assert DaemonAddress.parse("npipe:////./pipe/x").url == "npipe:////./pipe/x"


@pytest.mark.skipif(sys.platform == "win32", reason="the error is for hosts without named pipes")
def test_the_client_says_pipes_need_windows():
    with pytest.raises(ConnectionFailed, match="needs Windows"):
        DaemonAddress.parse("npipe:////./pipe/docker_engine").connect(1)
