"""End to end: the real docker CLI (``DOCKER_BUILDKIT=0`` and unset), docker-py and ``dockyard
build`` against a real dockyardd whose RUN steps run in real containers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard_plugin_sdk.testing import WaitTimeout, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MULTI_STAGE = r"""# syntax=docker/dockerfile:1
# escape=\
ARG BASE=busybox
ARG VERSION=1.0

FROM $BASE AS onbuild-base
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD ENV FROM_TRIGGER=yes

FROM onbuild-base AS build
ARG VERSION
ARG FLAVOR=plain
ENV APP_HOME=/opt/app \
    GREETING="hello world"
WORKDIR ${APP_HOME}
COPY --chown=1000:1000 --chmod=0750 src/ ./src/
COPY *.txt ./
ADD archive.tar.gz /opt/unpacked/
RUN echo "${GREETING} v$VERSION ${FLAVOR:-none} ${UNSET:-dflt} ${FLAVOR:+set}" > /opt/app/info.txt \
 && cat /opt/app/info.txt
SHELL ["/bin/sh", "-e", "-c"]
RUN ["/bin/sh", "-c", "echo exec-form > /opt/app/exec.txt"]
USER 1000
RUN id -u > /tmp/whoami

FROM busybox AS final
LABEL org.example.title="multi stage" version=${VERSION:-unset}
COPY --from=build /opt/app/ /app/
COPY --from=build /opt/unpacked/ /unpacked/
COPY --from=build /onbuild.txt /tmp/whoami /
EXPOSE 8080 9000-9001/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD ["cat", "/app/info.txt"]
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/info.txt"]
"""


def _tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


@pytest.fixture(scope="module")
def multi_ctx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("ms"), {
        "Dockerfile": MULTI_STAGE,
        "src/main.sh": "echo main\n",
        "src/sub/x": "sub\n",
        "src/junk.tmp": "junk\n",
        "notes.txt": "notes\n",
        "README.txt": "readme\n",
        "ignored/secret": "secret\n",
        "archive.tar.gz": _tar_gz({"inside.txt": b"inside\n"}),
        ".dockerignore": "ignored\n**/*.tmp\n!README.txt\n",
    })


def steps(output: str) -> list[tuple[str, list[str]]]:
    """``[(step line, following lines)]`` of a classic build's output."""
    out: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith("Step "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def cached(block: list[str]) -> bool:
    return " ---> Using cache" in block


def test_multi_stage_with_every_instruction(h: Any, daemon: Any, multi_ctx: Path) -> None:
    res = h.docker(daemon, "build", "--build-arg", "FLAVOR=spicy", "--label", "extra=1",
                 "-t", "ms:1", "-t", "ms:2", str(multi_ctx))
    out = res.stdout
    assert "BuildKit is currently disabled" in res.stderr  # DOCKER_BUILDKIT=0: the classic path
    st = steps(out)
    assert st[0][0] == "Step 1/29 : FROM $BASE AS onbuild-base"
    assert st[-1][0] == 'Step 29/29 : LABEL "extra"=\'1\''
    assert "# Executing 2 build triggers" in out
    assert "hello world v1.0 spicy dflt set" in out  # RUN output streamed, ARG/ENV substitution
    assert "Removing intermediate container" in out and " ---> Running in " in out
    assert "Successfully tagged ms:1" in out and "Successfully tagged ms:2" in out
    image_id = h.docker(daemon, "image", "inspect", "ms:1", "--format", "{{.Id}}").stdout.strip()
    assert f"Successfully built {image_id[7:19]}" in out
    assert h.docker(daemon, "image", "inspect", "ms:2", "--format", "{{.Id}}").stdout.strip() == image_id

    cfg = json.loads(h.docker(daemon, "image", "inspect", "ms:1", "--format", "{{json .Config}}").stdout)
    assert cfg["User"] == "nobody"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGTERM"
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /app/info.txt"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "cat", "/app/info.txt"]
    assert cfg["Healthcheck"]["Interval"] == 5_000_000_000 and cfg["Healthcheck"]["Retries"] == 3
    assert cfg["Labels"] == {"org.example.title": "multi stage", "version": "unset", "extra": "1"}

    run = h.docker(daemon, "run", "--rm", "ms:1")
    assert run.stdout.strip() == "hello world v1.0 spicy dflt set"
    listing = h.docker(daemon, "run", "--rm", "--user", "0", "ms:1",
                     "cd / && cat onbuild.txt whoami unpacked/inside.txt app/exec.txt && find app | sort").stdout
    lines = listing.splitlines()
    assert lines[:4] == ["triggered", "1000", "inside", "exec-form"]
    assert "app/README.txt" in lines and "app/notes.txt" in lines and "app/src/main.sh" in lines
    assert "app/src/junk.tmp" not in lines  # .dockerignore (**/*.tmp)
    # the build stage itself: --chown/--chmod, ONBUILD's ENV, WORKDIR
    h.docker(daemon, "build", "--build-arg", "FLAVOR=spicy", "--target", "build", "-t", "ms-build", str(multi_ctx))
    probe = h.docker(daemon, "run", "--rm", "--user", "0", "ms-build",
                   "sh", "-c", "stat -c '%u:%g %a' src/main.sh src/sub; pwd; echo $FROM_TRIGGER; "
                   "ls /opt/app/ignored 2>&1 || true").stdout.splitlines()
    assert probe[:4] == ["1000:1000 750", "1000:1000 750", "/opt/app", "yes"]

    rec = h.image_record(daemon, image_id)["build_record"]
    bd = rec["buildDefinition"]
    assert bd["externalParameters"]["buildArgs"] == {"FLAVOR": "spicy"}
    assert bd["externalParameters"]["dockerfile"]["digest"]["sha256"] == \
        hashlib.sha256(MULTI_STAGE.encode()).hexdigest()
    deps = {d["uri"]: d for d in bd["resolvedDependencies"]}
    busybox = h.docker(daemon, "image", "inspect", "busybox", "--format", "{{.Id}}").stdout.strip()
    assert deps["docker-image://docker.io/library/busybox:latest"]["digest"]["sha256"] == busybox[7:]
    assert deps["context:src/main.sh"]["digest"]["sha256"] == hashlib.sha256(b"echo main\n").hexdigest()
    assert "context:src/junk.tmp" not in deps and "context:ignored/secret" not in deps
    assert deps["stage:build"]["annotations"]["role"] == "copy-from"
    assert [s["step"] for s in rec["steps"]][-1] == 29


def test_second_build_is_fully_cached(h: Any, daemon: Any, multi_ctx: Path) -> None:
    args = ["build", "--build-arg", "FLAVOR=spicy", "--label", "extra=1", "-t", "ms:1", str(multi_ctx)]
    first = h.docker(daemon, *args, buildkit=None)  # DOCKER_BUILDKIT unset: also the classic builder
    before = h.docker(daemon, "image", "inspect", "ms:1", "--format", "{{.Id}}").stdout.strip()
    again = h.docker(daemon, *args, buildkit=None)
    assert "legacy builder is deprecated" in again.stderr
    st = steps(again.stdout)
    assert len(st) == 29
    for line, block in st:
        if " FROM " not in line:
            assert cached(block), f"not cached: {line}\n{again.stdout}"
    assert " ---> Running in" not in again.stdout
    after = h.docker(daemon, "image", "inspect", "ms:1", "--format", "{{.Id}}").stdout.strip()
    assert after == before
    assert f"Successfully built {after[7:19]}" in again.stdout and first.returncode == 0


def test_changing_one_copied_file_reruns_only_the_steps_after_it(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {
        "Dockerfile": "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n"
                      "COPY b.txt /b.txt\nCMD [\"cat\", \"/copy\"]\n",
        "a.txt": "first\n", "b.txt": "bee\n"})
    h.docker(daemon, "build", "-t", "touch:1", str(ctx))
    (ctx / "a.txt").write_text("second\n")
    res = h.docker(daemon, "build", "-t", "touch:1", str(ctx))
    st = steps(res.stdout)
    assert [cached(b) for _, b in st[1:]] == [True, False, False, False, False], res.stdout
    assert h.docker(daemon, "run", "--rm", "touch:1").stdout == "second\n"
    os.utime(ctx / "b.txt", (1, 1))  # mtime only: as with dockerd, not a change
    res = h.docker(daemon, "build", "-t", "touch:1", str(ctx))
    assert all(cached(b) for _, b in steps(res.stdout)[1:]), res.stdout
    res = h.docker(daemon, "build", "--no-cache", "-t", "touch:1", str(ctx))
    assert not any(cached(b) for _, b in steps(res.stdout)[1:]), res.stdout


def test_dockerignore_is_applied_by_the_daemon(h: Any, daemon: Any) -> None:
    """A client that does not apply .dockerignore (a raw tar via docker-py's custom_context)."""
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in {"Dockerfile": b"FROM busybox\nCOPY . /ctx/\nRUN find /ctx | sort\n",
                           ".dockerignore": b"secret.key\nlogs\n*.bak\n!keep.bak\n",
                           "secret.key": b"k", "logs/a.log": b"a", "app.py": b"print()",
                           "old.bak": b"o", "keep.bak": b"k"}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    client = docker_py.DockerClient(base_url=daemon.host, version="1.41")
    try:
        stream = client.api.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag="ignored:1",
                                  decode=True, rm=True)
        text = "".join(m.get("stream", "") for m in stream)
    finally:
        client.close()
    found = sorted(line for line in text.splitlines() if line.startswith("/ctx"))
    assert found == ["/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/app.py", "/ctx/keep.bak"], text


def test_failing_run_gives_its_exit_code(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before-failure; exit 3\nRUN echo never\n"})
    res = h.docker(daemon, "build", str(ctx), buildkit=None, check=False)
    assert res.returncode == 3, res
    assert "The command '/bin/sh -c echo before-failure; exit 3' returned a non-zero code: 3" in res.stderr
    assert "before-failure" in res.stdout and "Step 3/3" not in res.stdout
    res = h.docker(daemon, "build", "--force-rm", str(ctx), check=False)
    assert res.returncode == 3 and "Removing intermediate container" in res.stdout


def test_docker_py_images_build(h: Any, daemon: Any, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")

    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nARG WHO=nobody\nRUN echo hi $WHO | tee /hi\nCMD [\"cat\", \"/hi\"]\n",
                           "unused.txt": "x"})
    client = docker_py.DockerClient(base_url=daemon.host, version="1.41")
    try:
        image, logs = client.images.build(path=str(ctx), tag="py:1", buildargs={"WHO": "docker-py"},
                                          labels={"via": "docker-py"}, rm=True)
        text = "".join(m.get("stream", "") for m in logs)
        assert "Step 1/5 : FROM busybox" in text and "hi docker-py" in text
        assert "py:1" in image.tags and image.labels == {"via": "docker-py"}
        out = client.containers.run("py:1", remove=True)
        assert out == b"hi docker-py\n"
        with pytest.raises(docker_py.errors.APIError, match="Cannot locate specified Dockerfile: Nope"):
            client.images.build(path=str(ctx), tag="py:2", dockerfile="Nope")
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
        with pytest.raises(docker_py.errors.BuildError, match="returned a non-zero code: 4"):
            client.images.build(path=str(ctx), tag="py:3")
    finally:
        client.close()


def test_dockyard_build_cli(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt\n",
                           "hello.txt": "from the dockyard cli\n", "skip.me": "x", ".dockerignore": "skip.me\n"})
    dockyard = str(Path(sys.executable).parent / "dockyard")
    res = subprocess.run([dockyard, "-H", daemon.host, "build", "-t", "cli:1", str(ctx)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Step 3/3 : RUN cat /hello.txt" in res.stdout and "from the dockyard cli" in res.stdout
    assert "Successfully tagged cli:latest" not in res.stdout and "Successfully tagged cli:1" in res.stdout
    q = subprocess.run([dockyard, "-H", daemon.host, "build", "-q", str(ctx)], capture_output=True, text=True,
                       timeout=120)
    image_id = h.docker(daemon, "image", "inspect", "cli:1", "--format", "{{.Id}}").stdout.strip()
    assert q.returncode == 0 and q.stdout.strip() == image_id
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 5\n")
    bad = subprocess.run([dockyard, "-H", daemon.host, "build", str(ctx)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 5 and "returned a non-zero code: 5" in bad.stderr


def test_errors_before_the_build_starts(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\n\nFOO bar\n"})
    res = h.docker(daemon, "build", str(ctx), check=False)
    assert res.returncode == 1 and "dockerfile parse error line 3: unknown instruction: FOO" in res.stderr
    (ctx / "Dockerfile").write_text("FROM 127.0.0.1:9/no-such-image:9\n")  # nothing listens on port 9
    res = h.docker(daemon, "build", str(ctx), check=False)
    assert res.returncode == 1
    import importlib.util

    if importlib.util.find_spec("dockyard_distribution") is not None:  # a registry plugin tried to pull
        assert "pulling 127.0.0.1:9/no-such-image:9: cannot reach registry 127.0.0.1:9" in res.stderr, res.stderr
    else:
        assert "not present locally and no registry plugin is installed" in res.stderr, res.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nADD https://example.com/x.tgz /x\n")
    res = h.docker(daemon, "build", str(ctx), check=False)
    assert res.returncode == 1 and "remote URLs is not supported" in res.stderr
    status, body = h.api(daemon.socket, "POST", "/v1.41/build?target=nope", body=_plain_tar(
        {"Dockerfile": b"FROM busybox\n"}), headers={"Content-Type": "application/x-tar"})
    assert status == 400 and b"failed to reach build target nope" in body


def _plain_tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_scratch_copy_from_image_and_index_onbuild_image_and_escape(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {
        "Dockerfile": "FROM scratch AS s\nCOPY hello.txt /\nFROM busybox\nCOPY --from=s /hello.txt /from-scratch\n"
                      "COPY --from=busybox /bin/busybox /bb\nCOPY --from=0 /hello.txt /again\n"
                      "RUN cmp /bb /bin/busybox && cat /from-scratch /again\n",
        "Dockerfile.base": "FROM busybox\nONBUILD COPY trig.txt /trig.txt\nONBUILD RUN cat /trig.txt\n",
        "Dockerfile.child": "# escape=`\nFROM obbase\nRUN echo a `\n  b\n",
        "hello.txt": "hello\n", "trig.txt": "trigger-content\n"})
    res = h.docker(daemon, "build", "-t", "sc:1", str(ctx))
    assert "hello\nhello\n" in res.stdout
    res = h.docker(daemon, "build", "--target", "s", "-t", "sc:s", str(ctx))
    layers = json.loads(h.docker(daemon, "image", "inspect", "sc:s", "--format", "{{json .RootFS.Layers}}").stdout)
    assert len(layers) == 1  # scratch + one COPY: one layer
    h.docker(daemon, "build", "-f", str(ctx / "Dockerfile.base"), "-t", "obbase", str(ctx))
    res = h.docker(daemon, "build", "-f", str(ctx / "Dockerfile.child"), "-t", "obchild", str(ctx))
    assert "# Executing 2 build triggers" in res.stdout and "trigger-content" in res.stdout
    assert "Step 2/2 : RUN echo a   b" in res.stdout and "\na b\n" in res.stdout
    onbuild = h.docker(daemon, "image", "inspect", "obchild", "--format", "{{json .Config.OnBuild}}").stdout.strip()
    assert onbuild in ("null", "[]")  # triggers do not pass on to grandchildren


def test_arg_and_env_scoping(h: Any, daemon: Any, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (
        "ARG GLOBAL=from-global\n"
        "ARG UNDECLARED_IN_STAGE=meta\n"
        "FROM busybox\n"
        "ARG GLOBAL\n"
        "ARG SHADOWED=arg\n"
        "ENV SHADOWED=env A=one\n"
        "ENV A=two B=$A\n"  # one ENV line expands with the values from before it
        "VOLUME /vol\n"
        "RUN echo \"g=$GLOBAL u=${UNDECLARED_IN_STAGE:-unset} s=$SHADOWED a=$A b=$B p=$http_proxy\" | tee /out"
        " && echo lost > /vol/file\n"
        "HEALTHCHECK CMD false\n"
        "RUN test ! -e /vol/file && echo volume-discarded\n")})
    res = h.docker(daemon, "build", "--build-arg", "http_proxy=http://proxy:3128", "--build-arg", "NOT_USED=1",
                   "-t", "scope:1", str(ctx))
    assert "g=from-global u=unset s=env a=two b=one p=http://proxy:3128" in res.stdout
    assert "volume-discarded" in res.stdout
    assert "[Warning] One or more build-args [NOT_USED] were not consumed" in res.stdout
    history = h.docker(daemon, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "scope:1").stdout
    assert "|1 GLOBAL=from-global /bin/sh -c echo" in history  # build args a RUN saw, in its history
    assert "proxy:3128" not in history  # predefined proxy args stay out of history (and cache keys)
    env = json.loads(h.docker(daemon, "image", "inspect", "scope:1", "--format", "{{json .Config.Env}}").stdout)
    assert "A=two" in env and "B=one" in env and "SHADOWED=env" in env
    assert not any(e.startswith(("GLOBAL=", "http_proxy=")) for e in env)  # ARGs do not persist
    vols = h.docker(daemon, "volume", "ls", "-q").stdout.split()
    assert vols == [], "a RUN container's anonymous volume was left behind"


def test_missing_base_is_pulled_through_the_registry_plugin(h: Any, daemon: Any, tmp_path: Path) -> None:
    """With a registry plugin installed, FROM of an image that is not here pulls it (and
    ``--pull`` refreshes it) through the daemon's own ``/images/create``; progress is relayed."""
    import importlib.util
    import shutil
    import signal
    import socket

    registry = shutil.which("docker-registry")
    if registry is None or importlib.util.find_spec("dockyard_distribution") is None:
        pytest.skip("needs docker-registry and the dockyard-distribution plugin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: builder-test\n")
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([registry, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    try:
        try:
            wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() or True, 15,
                     f"docker-registry on 127.0.0.1:{port}", ignore=(OSError,))
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'registry.log').read_text()}") from None
        ref = f"127.0.0.1:{port}/builder/base:1"
        h.docker(daemon, "tag", "busybox", ref)
        h.docker(daemon, "push", ref)
        h.docker(daemon, "rmi", ref)
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {ref}\nRUN echo pulled-base\n"})
        res = h.docker(daemon, "build", "-t", "pulled:1", str(ctx))
        assert "pulled-base" in res.stdout
        assert "Digest: sha256:" in res.stdout or "Status:" in res.stdout, res.stdout  # the pull's lines
        h.docker(daemon, "image", "inspect", ref)  # it is in the store now
        res = h.docker(daemon, "build", "--pull", "-t", "pulled:1", str(ctx))
        assert "Image is up to date" in res.stdout or "Digest: sha256:" in res.stdout, res.stdout
        dockyard = str(Path(sys.executable).parent / "dockyard")
        cli = subprocess.run([dockyard, "-H", daemon.host, "build", "--pull", "--no-cache", "-t", "pulled:2",
                              str(ctx)], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert "Digest: sha256:" in cli.stdout and "pulled-base" in cli.stdout, cli.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
