"""End to end: ``dockyard compose`` against a real engine's Docker API (podman's service for now).

Every project is named ``dyce2e<random>``; the ``project`` fixture removes whatever carries that
project's label afterwards, and each test also checks ``down`` itself left nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import wait_for

pytestmark = pytest.mark.e2e

LOOP = "trap 'exit 0' TERM; {pre}while true; do sleep 0.2; done"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ids(engine, name: str) -> dict[str, str]:
    import json

    flt = json.dumps({"label": [f"com.docker.compose.project={name}"]})
    return {c["Names"][0].lstrip("/"): c["Id"] for c in engine.api("GET", "/containers/json", all=1, filters=flt)}


def basic(port: int, role: str = "web") -> str:
    return f"""
services:
  db:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='echo db-ready; ')}"]
    environment: {{ROLE: db}}
    volumes: ["data:/data"]
    stop_grace_period: 2s
  web:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; echo web-$$ROLE; httpd -f -p 8080 -h /tmp & wait"]
    environment: {{ROLE: {role}}}
    ports: ["127.0.0.1:{port}:8080"]
    depends_on: [db]
    stop_grace_period: 2s
volumes:
  data:
"""


def http_status(port: int) -> int:
    """The HTTP status on 127.0.0.1:``port`` once something answers (refused: not yet)."""
    def status() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    return wait_for(status, 10, f"an HTTP answer on 127.0.0.1:{port}", ignore=(OSError,))


def test_up_ps_logs_converge_recreate_down(engine, project, compose_cli) -> None:
    name, d = project
    port = free_port()
    (d / "compose.yaml").write_text(basic(port))
    run = lambda *a: compose_cli("-p", name, *a, cwd=d)  # noqa: E731

    res = run("up", "-d")
    assert res.exit_code == 0, res.output
    objs = engine.project_objects(name)
    assert objs == {"containers": [f"{name}-db-1", f"{name}-web-1"], "networks": [f"{name}_default"],
                    "volumes": [f"{name}_data"]}
    info = engine.api("GET", f"/containers/{name}-web-1/json")
    labels = info["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == name
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert labels["com.docker.compose.project.working_dir"] == str(d)
    assert labels["com.docker.compose.project.config_files"] == str(d / "compose.yaml")
    assert len(labels["com.docker.compose.config-hash"]) == 64

    res = run("ps")
    assert res.exit_code == 0
    assert f"{name}-db-1" in res.output and f"{name}-web-1" in res.output
    assert f"127.0.0.1:{port}->8080/tcp" in res.output

    assert http_status(port) == 404  # busybox httpd answered through the published port
    wait_for(lambda: "db-1   | db-ready" in (out := run("logs", "--no-color").output) and "web-1  | web-web" in out,
             10, "db-ready and web-web in the project's logs")
    assert "db-ready" not in run("logs", "web").output

    before = ids(engine, name)
    res = run("up", "-d")
    assert res.exit_code == 0, res.output
    assert ids(engine, name) == before, "a second up with nothing changed must not recreate"
    assert "Created" not in res.output and "Running" in res.output

    (d / "compose.yaml").write_text(basic(port, role="changed"))
    res = run("up", "-d")
    assert res.exit_code == 0, res.output
    after = ids(engine, name)
    assert after[f"{name}-db-1"] == before[f"{name}-db-1"]
    assert after[f"{name}-web-1"] != before[f"{name}-web-1"]
    assert "Recreated" in res.output

    res = run("up", "-d", "--force-recreate", "--no-deps", "web")
    assert res.exit_code == 0, res.output
    forced = ids(engine, name)
    assert forced[f"{name}-db-1"] == before[f"{name}-db-1"]
    assert forced[f"{name}-web-1"] != after[f"{name}-web-1"]

    res = run("exec", "-T", "web", "sh", "-c", "echo role=$ROLE; exit 3")
    assert res.exit_code == 3
    assert "role=changed" in res.output

    res = run("run", "--rm", "-T", "--no-deps", "db", "sh", "-c", "echo one-off-$ROLE")
    assert res.exit_code == 0, res.output
    assert "one-off-db" in res.output
    assert sorted(ids(engine, name)) == [f"{name}-db-1", f"{name}-web-1"], "run --rm left its container"

    res = run("down", "-v")
    assert res.exit_code == 0, res.output
    assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}


def test_depends_on_conditions_and_wait(engine, project, compose_cli) -> None:
    name, d = project
    (d / "compose.yaml").write_text(f"""
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo seeded > /data/seed"]
    volumes: ["data:/data"]
  db:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='sleep 1; touch /tmp/ready; ')}"]
    healthcheck: {{test: "test -f /tmp/ready", interval: 1s, retries: 30}}
    depends_on: {{init: {{condition: service_completed_successfully}}}}
    stop_grace_period: 1s
  web:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='cat /data/seed; ')}"]
    volumes: ["data:/data"]
    depends_on: {{db: {{condition: service_healthy}}}}
    stop_grace_period: 1s
volumes:
  data:
""")
    res = compose_cli("-p", name, "up", "-d", "--wait", cwd=d)
    assert res.exit_code == 0, res.output
    assert "Healthy" in res.output
    web = engine.api("GET", f"/containers/{name}-web-1/json")
    db = engine.api("GET", f"/containers/{name}-db-1/json")
    init = engine.api("GET", f"/containers/{name}-init-1/json")
    assert init["State"]["ExitCode"] == 0 and not init["State"]["Running"]
    assert web["State"]["Running"] and db["State"]["Running"]
    assert web["State"]["StartedAt"] > db["State"]["StartedAt"] > init["State"]["FinishedAt"][:19]
    assert "seeded" in compose_cli("-p", name, "logs", "web", cwd=d).output
    # Again: the completed init is not rerun, nothing is recreated.
    before = ids(engine, name)
    res = compose_cli("-p", name, "up", "-d", "--wait", cwd=d)
    assert res.exit_code == 0, res.output
    assert ids(engine, name) == before
    assert compose_cli("-p", name, "down", "-v", cwd=d).exit_code == 0
    assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}


def test_failing_dependency_stops_up(engine, project, compose_cli) -> None:
    name, d = project
    (d / "compose.yaml").write_text("""
services:
  migrate:
    image: busybox
    command: ["sh", "-c", "exit 4"]
  app:
    image: busybox
    command: ["true"]
    depends_on: {migrate: {condition: service_completed_successfully}}
""")
    res = compose_cli("-p", name, "up", "-d", cwd=d)
    assert res.exit_code == 1
    assert "service app cannot start" in res.output and "exited with code 4" in res.output
    assert f"{name}-app-1" not in ids(engine, name)


def test_build_and_rmi(engine, project, compose_cli) -> None:
    name, d = project
    (d / "app").mkdir()
    (d / "app" / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\nRUN test ! -e /ctx/ignored.txt && "
                                          "test -e /ctx/kept.txt && echo built-in-image > /built\n"
                                          "CMD [\"sh\", \"-c\", \"cat /built; trap 'exit 0' TERM; "
                                          "while true; do sleep 0.2; done\"]\n")
    (d / "app" / "ignored.txt").write_text("x")
    (d / "app" / "kept.txt").write_text("x")
    (d / "app" / ".dockerignore").write_text("ignored.txt\n")
    (d / "compose.yaml").write_text("services:\n  app:\n    build: ./app\n    stop_grace_period: 1s\n")
    run = lambda *a: compose_cli("-p", name, *a, cwd=d)  # noqa: E731
    res = run("up", "-d")
    if res.exit_code != 0 and "has no build endpoint" in res.output:
        assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}
        pytest.skip(f"{engine.kind} has no POST /build yet: {res.output.strip().splitlines()[-1]}")
    assert res.exit_code == 0, res.output
    assert "Built" in res.output
    img = engine.api("GET", f"/images/{name}-app/json")
    assert img["Config"]["Labels"]["com.docker.compose.project"] == name
    wait_for(lambda: "built-in-image" in run("logs", "app").output, 10, "built-in-image in app's logs")
    assert "app-1  | built-in-image" in run("logs", "--no-color", "app").output
    before = ids(engine, name)
    assert run("up", "-d").exit_code == 0 and ids(engine, name) == before  # image present: no rebuild
    res = run("up", "-d", "--build")
    assert res.exit_code == 0 and "Built" in res.output, res.output
    res = run("down", "--rmi", "local")
    assert res.exit_code == 0, res.output
    with pytest.raises(Exception, match="(?i)no such image|not found|image not known"):
        engine.api("GET", f"/images/{name}-app/json")
    assert engine.project_objects(name)["containers"] == []


def test_scale_and_orphans(engine, project, compose_cli) -> None:
    name, d = project
    (d / "compose.yaml").write_text(f"""
services:
  app:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='echo replica-up; ')}"]
    stop_grace_period: 1s
  extra:
    image: busybox
    command: ["sleep", "30"]
    stop_signal: SIGKILL
""")
    run = lambda *a: compose_cli("-p", name, *a, cwd=d)  # noqa: E731
    res = run("up", "-d", "--scale", "app=2")
    assert res.exit_code == 0, res.output
    assert sorted(ids(engine, name)) == [f"{name}-app-1", f"{name}-app-2", f"{name}-extra-1"]
    wait_for(lambda: "app-2  | replica-up" in run("logs", "--no-color", "app").output, 10,
             "replica-up in app-2's logs")
    assert "app-1  | replica-up" not in run("logs", "--no-color", "--index", "2", "app").output

    (d / "compose.yaml").write_text(f"""
services:
  app:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='echo replica-up; ')}"]
    stop_grace_period: 1s
""")
    res = run("up", "-d")
    assert res.exit_code == 0, res.output
    assert "orphan containers" in res.output
    assert sorted(ids(engine, name)) == [f"{name}-app-1", f"{name}-extra-1"]  # scaled back to 1
    res = run("up", "-d", "--remove-orphans")
    assert res.exit_code == 0, res.output
    assert sorted(ids(engine, name)) == [f"{name}-app-1"]
    empty = d.parent / "elsewhere"
    empty.mkdir()
    res = compose_cli("-p", name, "down", cwd=empty)  # no compose file: works from the labels
    assert res.exit_code == 0, res.output
    assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}


def test_missing_external_network_creates_nothing(engine, project, compose_cli) -> None:
    name, d = project
    (d / "compose.yaml").write_text(f"""
services:
  web:
    image: busybox
    networks: [front, shared]
networks:
  front: {{}}
  shared:
    external: true
    name: {name}-absent
volumes:
  data: {{}}
""")
    res = compose_cli("-p", name, "up", "-d", cwd=d)
    assert res.exit_code == 1
    assert f"networks.shared: external network '{name}-absent' not found" in res.output
    assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}


def test_attached_up_streams_prefixed_logs_and_ctrl_c_stops(engine, project) -> None:
    name, d = project
    (d / "compose.yaml").write_text("""
services:
  talker:
    image: busybox
    command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo hello-attached; while true; do sleep 0.2; done"]
""")
    exe = str(Path(sys.executable).parent / "dockyard")
    env = {**os.environ, "DOCKER_HOST": engine.host}
    env.pop("DOCKYARD_HOST", None)
    proc = subprocess.Popen([exe, "compose", "-p", name, "up"], cwd=d, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def reader() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "talker-1  | hello-attached" in line:
                seen.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        assert seen.wait(60), "".join(lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        t.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines)
    assert "Gracefully stopping" in text
    state = engine.api("GET", f"/containers/{name}-talker-1/json")["State"]
    assert not state["Running"]


def test_lifecycle_commands(engine, project, compose_cli) -> None:
    name, d = project
    port = free_port()
    (d / "compose.yaml").write_text(f"""
services:
  svc:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='echo started; ')}"]
    ports: ["127.0.0.1:{port}:7000"]
    stop_grace_period: 1s
""")
    run = lambda *a: compose_cli("-p", name, *a, cwd=d)  # noqa: E731
    cname = f"{name}-svc-1"
    state = lambda: engine.api("GET", f"/containers/{cname}/json")["State"]  # noqa: E731
    assert run("up", "-d").exit_code == 0
    res = run("port", "svc", "7000")
    assert res.exit_code == 0 and res.output.strip() == f"127.0.0.1:{port}"
    res = run("top", "svc")
    assert res.exit_code == 0 and cname in res.output and "PID" in res.output and "sleep" in res.output
    res = run("images")
    assert res.exit_code == 0 and cname in res.output and "busybox" in res.output
    res = run("ls")
    assert name in res.output and "running(1)" in res.output
    assert run("stop").exit_code == 0 and not state()["Running"]
    assert "Exited" in run("ps", "-a").output or "exited" in run("ps", "-a").output.lower()
    assert name not in run("ls").output and name in run("ls", "-a").output
    assert run("start").exit_code == 0 and state()["Running"]
    started = state()["StartedAt"]
    assert run("restart", "-t", "1").exit_code == 0 and state()["Running"] and state()["StartedAt"] != started
    assert run("pause").exit_code == 0 and state()["Paused"]
    assert run("unpause").exit_code == 0 and not state()["Paused"]
    assert run("kill").exit_code == 0 and not state()["Running"] and state()["ExitCode"] == 137
    res = run("rm", "-f")
    assert res.exit_code == 0, res.output
    assert engine.project_objects(name)["containers"] == []
    assert run("down").exit_code == 0
    assert engine.project_objects(name) == {"containers": [], "networks": [], "volumes": []}


def test_run_pipes_stdin_and_half_closes(engine, project) -> None:
    name, d = project
    (d / "compose.yaml").write_text("services:\n  cat:\n    image: busybox\n")
    exe = str(Path(sys.executable).parent / "dockyard")
    env = {**os.environ, "DOCKER_HOST": engine.host}
    env.pop("DOCKYARD_HOST", None)
    res = subprocess.run([exe, "compose", "-p", name, "run", "--rm", "-T", "cat", "sh", "-c",
                          "tr a-z A-Z; echo err-line >&2; exit 5"], cwd=d, env=env, input=b"piped in\n",
                         capture_output=True, timeout=60)
    assert (res.returncode, res.stdout) == (5, b"PIPED IN\n"), res.stderr
    assert b"err-line" in res.stderr
    assert engine.project_objects(name)["containers"] == []  # --rm removed it (the network stays)


def test_up_exit_code_from(engine, project, compose_cli) -> None:
    name, d = project
    (d / "compose.yaml").write_text(f"""
services:
  runner:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; echo ran-to-the-end; exit 3"]
  bg:
    image: busybox
    command: ["sh", "-c", "{LOOP.format(pre='')}"]
    stop_grace_period: 1s
""")
    res = compose_cli("-p", name, "up", "--exit-code-from", "runner", cwd=d)
    assert res.exit_code == 3, res.output
    assert "runner-1  | ran-to-the-end" in res.output
    assert "Aborting on container exit" in res.output
    assert not engine.api("GET", f"/containers/{name}-bg-1/json")["State"]["Running"]


def test_build_push_pull_through_a_local_registry(engine, project, registry, compose_cli) -> None:
    if not registry:
        pytest.skip("docker-registry is not installed or did not start")
    name, d = project
    ref = f"{registry}/{name}/app:1"
    (d / "app").mkdir()
    (d / "app" / "Dockerfile").write_text(f"FROM busybox\nRUN echo pushed-{name} > /p\n")
    (d / "compose.yaml").write_text(f"services:\n  app:\n    build: ./app\n    image: {ref}\n"
                                    "    command: [cat, /p]\n")
    run = lambda *a: compose_cli("-p", name, *a, cwd=d)  # noqa: E731
    res = run("build", "-q")
    if res.exit_code != 0 and "has no build endpoint" in res.output:
        pytest.skip(f"{engine.kind} has no POST /build")
    assert res.exit_code == 0, res.output
    res = run("push")
    assert res.exit_code == 0 and "Pushed" in res.output, res.output
    with urllib.request.urlopen(f"http://{registry}/v2/{name}/app/tags/list", timeout=5) as r:
        assert b'"1"' in r.read()
    engine.api("DELETE", f"/images/{ref}")
    res = run("pull")
    assert res.exit_code == 0 and "Pulled" in res.output, res.output
    res = run("run", "--rm", "-T", "app")
    assert res.exit_code == 0, res.output
    assert f"pushed-{name}" in res.output
    engine.api("DELETE", f"/images/{ref}")
