"""``POST /build`` query parsing and credentials forwarding, without a daemon."""

from __future__ import annotations

import base64
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from dockyard.errors import InvalidArgument
from dockyard_builder.api import _auth_for, options_from


def req(query: str):  # noqa: ANN201
    return make_mocked_request("POST", "/build?" + query)


def test_docker_cli_and_docker_py_queries() -> None:
    o = options_from(req("dockerfile=Dockerfile&t=a%3A1&t=b&version=1&buildargs=%7B%22X%22%3A%221%22%2C%22N%22%3Anull%7D"
                         "&labels=%7B%22l%22%3A%22v%22%7D&target=build&networkmode=none"))
    assert o.tags == ["a:1", "b"] and o.build_args == {"X": "1", "N": None} and o.labels == {"l": "v"}
    assert o.target == "build" and o.network_mode == "none" and o.rm and not o.force_rm and not o.quiet
    py = options_from(req("t=t%3A1&q=False&nocache=False&rm=True&forcerm=False&pull=False"))
    assert (py.quiet, py.no_cache, py.rm, py.force_rm, py.pull) == (False, False, True, False, False)
    strict = options_from(req("q=1&nocache=1&rm=0&forcerm=1&pull=true"))
    assert (strict.quiet, strict.no_cache, strict.rm, strict.force_rm, strict.pull) == (True, True, False, True, True)


def test_bad_queries() -> None:
    with pytest.raises(InvalidArgument, match="invalid buildargs"):
        options_from(req("buildargs=notjson"))
    with pytest.raises(InvalidArgument, match="expected a JSON object"):
        options_from(req("labels=%5B1%5D"))
    with pytest.raises(InvalidArgument, match="remote build contexts"):
        options_from(req("remote=https%3A%2F%2Fgithub.com%2Fx%2Fy.git"))


def test_registry_config_gives_the_registrys_credentials() -> None:
    cfg = {"127.0.0.1:5000": {"username": "u", "password": "p"},
           "https://index.docker.io/v1/": {"username": "hub", "password": "h"}}
    header = base64.urlsafe_b64encode(json.dumps(cfg).encode()).decode().rstrip("=")
    assert _auth_for(header, "127.0.0.1:5000") == {"username": "u", "password": "p"}
    assert _auth_for(header, "docker.io")["username"] == "hub"
    assert _auth_for(header, "other.example:443") is None and _auth_for("e30=", "docker.io") is None
    assert _auth_for("%%%", "docker.io") is None
