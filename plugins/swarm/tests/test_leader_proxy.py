"""What a replicated manager that does not lead answers itself, and what it forwards."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from dockyard_swarm.leader_proxy import is_local


@pytest.mark.parametrize(("method", "path", "local"), [
    ("GET", "/v1.47/info", True), ("GET", "/info", True), ("POST", "/info", False),
    ("POST", "/v1.47/containers/ha1/exec", True), ("POST", "/exec/0123abcd/start", True),
    ("GET", "/v1.47/exec/0123abcd/json", True), ("POST", "/exec/0123abcd/resize", True),
    ("POST", "/v1.47/containers/ha1/start", False), ("GET", "/containers/json", False),
    ("POST", "/containers/create", False), ("DELETE", "/containers/exec", False),
])
def test_what_a_replica_answers_itself(method: str, path: str, local: bool) -> None:
    """/info, and the exec calls (a session stays on the manager the client talks to); the rest
    goes to the leader."""
    assert is_local(make_mocked_request(method, path)) is local
