"""Malformed compose files: each gives one clear, located error from ``up`` and creates nothing.

``up -d`` runs against a stub engine that records every request and refuses every change;
each case checks the message names the file, the path inside it and what was expected, and
that no request other than reads reached the engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = [
    # id, file text, expected fragments of the message (file path is always checked too)
    ("unknown-top-level-key",
     "servces:\n  web:\n    image: busybox\n",
     ["unknown key 'servces'", "did you mean 'services'"]),
    ("unknown-service-key",
     "services:\n  web:\n    imagee: busybox\n",
     ["services.web:", "unknown key 'imagee'", "did you mean 'image'"]),
    ("bad-port",
     "services:\n  web:\n    image: busybox\n    ports: ['8080:80', 'eighty']\n",
     ["services.web.ports:", "invalid port 'eighty'", "[[HOST_IP:]PUBLISHED:]TARGET"]),
    ("port-out-of-range",
     "services:\n  web:\n    image: busybox\n    ports: ['99999:80']\n",
     ["services.web.ports", "invalid port range '99999'"]),
    ("environment-wrong-type",
     "services:\n  web:\n    image: busybox\n    environment: 5\n",
     ["services.web.environment:", "expected a mapping or a list of 'KEY=VALUE' strings, got int 5"]),
    ("image-wrong-type",
     "services:\n  web:\n    image: [busybox]\n",
     ["services.web.image:", "expected a string, got a list"]),
    ("bad-interpolation",
     "services:\n  web:\n    image: busybox:${TAG\n",
     ["services.web.image:", "invalid interpolation format", "missing '}'"]),
    ("required-variable",
     "services:\n  web:\n    image: busybox:${DYC_UNSET_TAG:?set DYC_UNSET_TAG to a tag}\n",
     ["services.web.image:", "required variable DYC_UNSET_TAG", "set DYC_UNSET_TAG to a tag"]),
    ("lone-dollar",
     "services:\n  web:\n    image: busybox\n    command: echo $1\n",
     ["services.web.command:", "invalid interpolation format", "'$$'"]),
    ("depends-on-cycle",
     "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [c]\n"
     "  c:\n    image: busybox\n    depends_on: [a]\n",
     ["services.a.depends_on:", "dependency cycle: a -> b -> c -> a"]),
    ("depends-on-undefined",
     "services:\n  web:\n    image: busybox\n    depends_on: [db]\n",
     ["services.web.depends_on.db:", "depends on undefined service 'db'"]),
    ("depends-on-bad-condition",
     "services:\n  db:\n    image: busybox\n  web:\n    image: busybox\n    depends_on:\n"
     "      db: {condition: service_ready}\n",
     ["services.web.depends_on.db.condition:", "'service_started', 'service_healthy'", "service_ready"]),
    ("duplicate-published-port",
     "services:\n  a:\n    image: busybox\n    ports: ['127.0.0.1:18080:80']\n"
     "  b:\n    image: busybox\n    ports: ['18080:8080']\n",
     ["services.b.ports[0]:", "host port 0.0.0.0:18080/tcp is already published by services.a.ports[0]"]),
    ("undeclared-network",
     "services:\n  web:\n    image: busybox\n    networks: [front]\n",
     ["services.web.networks.front:", "not declared in the top-level networks section"]),
    ("undeclared-volume",
     "services:\n  web:\n    image: busybox\n    volumes: ['data:/data']\n",
     ["services.web.volumes[0]:", "named volume 'data' is not declared"]),
    ("no-image-no-build",
     "services:\n  web:\n    command: echo hi\n",
     ["services.web:", "needs an image or a build section"]),
    ("invalid-yaml",
     "services:\n  web:\n    image: busybox\n   ports: []\n",
     ["line 4, column", "invalid YAML"]),
    ("duplicate-yaml-key",
     "services:\n  web:\n    image: busybox\n    image: alpine\n",
     ["invalid YAML", "duplicate key 'image' (line 4"]),
    ("top-level-list",
     "- services\n",
     ["the top level must be a mapping, got a list"]),
    ("bad-duration",
     "services:\n  web:\n    image: busybox\n    healthcheck:\n      test: 'true'\n      interval: 10 seconds\n",
     ["services.web.healthcheck.interval:", "expected a duration like '10s'"]),
    ("bad-restart",
     "services:\n  web:\n    image: busybox\n    restart: sometimes\n",
     ["services.web.restart:", "expected no, always, unless-stopped or on-failure[:N]"]),
    ("bad-project-name",
     "name: My Project\nservices:\n  web:\n    image: busybox\n",
     ["name:", "invalid project name 'My Project'"]),
    ("bad-volume-spec",
     "services:\n  web:\n    image: busybox\n    volumes: ['/a:/b:/c:/d']\n",
     ["services.web.volumes:", "invalid volume '/a:/b:/c:/d'"]),
    ("container-name-with-replicas",
     "services:\n  web:\n    image: busybox\n    container_name: one\n    deploy: {replicas: 2}\n",
     ["services.web.container_name:", "cannot be used with 2 replicas"]),
    ("extends-unknown-service",
     "services:\n  web:\n    extends: base\n",
     ["services.web.extends:", "service 'base' is not defined"]),
    ("extends-cycle",
     "services:\n  a:\n    extends: b\n    image: busybox\n  b:\n    extends: a\n",
     ["extends cycle"]),
    ("unknown-network-key",
     "services:\n  web:\n    image: busybox\nnetworks:\n  front:\n    drivr: bridge\n",
     ["networks.front:", "unknown key 'drivr'", "did you mean 'driver'"]),
    ("healthcheck-test-form",
     "services:\n  web:\n    image: busybox\n    healthcheck:\n      test: [RUN, 'true']\n",
     ["services.web.healthcheck:", "must start with CMD, CMD-SHELL or NONE"]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_file_is_rejected_with_a_located_error(tmp_path: Path, stub_engine, compose_cli,
                                                          text: str, expected: list[str]) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text(text)
    res = compose_cli("-f", str(f), "-p", "dycbad", "up", "-d", cwd=tmp_path)
    assert res.exit_code == 1, res.output
    msg = res.output
    assert str(f) in msg, msg
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"
    assert stub_engine.mutations() == [], stub_engine.requests


def test_missing_external_network_is_checked_against_the_engine(tmp_path: Path, stub_engine, compose_cli) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox\n    networks: [shared]\n"
                 "networks:\n  shared:\n    external: true\n    name: dyc-shared-net\n")
    res = compose_cli("-f", str(f), "-p", "dycbad", "up", "-d", cwd=tmp_path)
    assert res.exit_code == 1, res.output
    assert f"{f}: networks.shared: external network 'dyc-shared-net' not found" in res.output
    assert ("GET", "/networks/dyc-shared-net") in stub_engine.requests
    assert stub_engine.mutations() == []


def test_missing_external_volume_is_checked_against_the_engine(tmp_path: Path, stub_engine, compose_cli) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox\n    volumes: ['keep:/data']\n"
                 "volumes:\n  keep:\n    external: true\n")
    res = compose_cli("-f", str(f), "-p", "dycbad", "up", "-d", cwd=tmp_path)
    assert res.exit_code == 1, res.output
    assert "volumes.keep: external volume 'keep' not found" in res.output
    assert stub_engine.mutations() == []


def test_present_external_network_passes_the_check(tmp_path: Path, stub_engine, compose_cli) -> None:
    """The same file with the network present goes on to create things (refused by the stub)."""
    stub_engine.networks.add("dyc-shared-net")
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox\n    networks: [shared]\n"
                 "networks:\n  shared:\n    external: true\n    name: dyc-shared-net\n")
    res = compose_cli("-f", str(f), "-p", "dycbad", "up", "-d", cwd=tmp_path)
    assert res.exit_code == 1
    assert "refusing to change anything" in res.output
    assert stub_engine.mutations()[0] == ("POST", "/containers/create")


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path, stub_engine, compose_cli) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox\n    ports: [1, {target: x}]\n    tty: maybe\n")
    res = compose_cli("-f", str(f), "config", cwd=tmp_path)
    assert res.exit_code == 1
    assert "services.web.ports[1].target: expected an integer" in res.output
    assert "services.web.tty: expected a boolean" in res.output
    assert stub_engine.requests == []


def test_error_in_second_file_names_that_file(tmp_path: Path, stub_engine, compose_cli) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    over = tmp_path / "override.yaml"
    over.write_text("services:\n  web:\n    stdin_open: perhaps\n")
    res = compose_cli("-f", "compose.yaml", "-f", "override.yaml", "config", cwd=tmp_path)
    assert res.exit_code == 1
    assert f"{over}: services.web.stdin_open: expected a boolean" in res.output
