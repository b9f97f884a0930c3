"""``dockyard machine`` against a real dockyardd whose machines are netns hosts (real engines
with mutual TLS), driven by the real docker CLI and docker-py through what ``env`` prints.

One daemon serves the module (machines h1 and h2 are made once, in parallel); tests that break
or rotate a machine make their own. The daemon-killed test starts its own daemon. Every test's
roots are short directories under /tmp (a netns host's sockets live below the daemon's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard_plugin_sdk.testing import Daemon, snapshot_host, wait_for, wait_for_no_leaks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300), pytest.mark.usefixtures("needs_netns")]

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


@dataclass
class Machines:
    """A daemon that keeps machines, and our CLI against it (``-H`` its socket; the client's
    bundles in ``root/client``)."""

    daemon: Daemon
    config: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.daemon.root

    @property
    def storage(self) -> Path:
        return self.root / "client"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
        env.update(MACHINE_STORAGE_PATH=str(self.storage), DOCKER_CONFIG=str(self.root / "docker-config"),
                   PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
        env.update(extra or {})
        return env

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([DOCKYARD, "-H", self.daemon.host, "machine", *args], capture_output=True, text=True,
                             env=self.env(env), input=input, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard machine {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n"
                                 f"{res.stderr}\ndaemon log:\n{self.daemon.log[-3000:]}")
        return res

    def shell(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``script`` in bash, where ``$M`` is our machine command (``dockyard -H ... machine``)."""
        res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                             env=self.env({"M": f"{DOCKYARD} -H {self.daemon.host} machine"}))
        if check and res.returncode != 0:
            raise AssertionError(f"{script} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def api(self) -> Any:
        return self.daemon.client(timeout=None)

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.cli("inspect", name).stdout)

    def engine_pid(self, name: str) -> int:
        return int(Path(self.inspect(name)["Driver"]["Run"], "dockyardd.pid").read_text().split()[0])

    def remove_all(self) -> None:
        client = self.api()
        for m in client.get("/dockyard/v1/machines"):
            client.delete(f"/dockyard/v1/machines/{m['Name']}", force=1)


def start_machined(start_dockyardd: Callable[..., Daemon], root: Path, subnet: str | None = None) -> Machines:
    from dockyard_plugin_sdk.conformance.network import free_test_subnet

    config = {"provision-opts": [f"subnet={subnet or free_test_subnet('10.247.0.0/16', 24)}"]}
    return Machines(start_dockyardd(root, config=config), config)


@pytest.fixture(scope="module")
def machined(start_dockyardd: Callable[..., Daemon], short_roots: Callable[[], Path]) -> Iterator[Machines]:
    m = start_machined(start_dockyardd, short_roots())
    try:
        yield m
    finally:
        try:
            m.remove_all()
        finally:
            m.daemon.teardown()


@pytest.fixture(scope="module")
def made(machined: Machines) -> dict[str, subprocess.CompletedProcess[str]]:
    """h1 (plain) and h2 (engine options), created in parallel; their create outputs."""
    with ThreadPoolExecutor(2) as pool:
        h1 = pool.submit(machined.cli, "create", "-d", "netns", "h1")
        h2 = pool.submit(machined.cli, "create", "--engine-label", "env=test", "--engine-env", "FOO=bar",
                         "--engine-opt", "log-level=debug", "--engine-registry-mirror", "https://mirror.example/hub",
                         "h2")
        return {"h1": h1.result(), "h2": h2.result()}


def bundle_env(out: str) -> dict[str, str]:
    return dict(re.findall(r'^export (\w+)="(.*)"$', out, re.M))


# ---------------------------------------------------------------------------------- create, env
def test_create_prints_docker_machines_progress(machined: Machines, made) -> None:
    out = made["h1"].stdout.splitlines()
    assert out[0] == "Running pre-create checks..."
    assert out[-2:] == ["Docker is up and running!",
                        "To see how to connect your Docker Client to the Docker Engine running on this machine, "
                        "run: dockyard machine env h1"]
    for line in ("Creating machine...", "Copying certs to the local machine directory...",
                 "Copying certs to the remote machine...",
                 "Waiting for machine to be running, this may take a few minutes...",
                 "Checking connection to Docker..."):
        assert line in out


def test_env_then_docker_run_and_docker_py(machined: Machines, made, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("the offline busybox image needs /bin/busybox (busybox-static)")
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    out = machined.cli("env", "h1").stdout
    bundle = machined.storage / "machines" / "h1"
    url = machined.inspect("h1")["URL"]
    assert out == (f'export DOCKER_TLS_VERIFY="1"\nexport DOCKER_HOST="{url}"\n'
                   f'export DOCKER_CERT_PATH="{bundle}"\nexport DOCKER_MACHINE_NAME="h1"\n'
                   "# Run this command to configure your shell: \n"
                   f"# eval $(dockyard -H {machined.daemon.host} machine env h1)\n")
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert stat.S_IMODE((bundle / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(machined.storage.stat().st_mode) == 0o700
    # eval $(dockyard machine env h1): our CLI bootstraps busybox in h1, the docker CLI runs it
    res = machined.shell('eval $($M env h1) && dockyard image bootstrap busybox >/dev/null && '
                         'docker run --rm busybox echo hi && docker info --format "{{.Name}}"')
    assert res.stdout == "hi\nh1\n"
    docker = pytest.importorskip("docker")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    client = docker.from_env(environment=bundle_env(out))
    try:
        assert client.containers.run("busybox", "echo hi from docker-py", remove=True) == b"hi from docker-py\n"
        assert client.info()["Name"] == "h1"
    finally:
        client.close()
    # --unset, and another shell
    unset = machined.cli("env", "--unset").stdout
    assert unset.startswith("unset DOCKER_TLS_VERIFY\nunset DOCKER_HOST\nunset DOCKER_CERT_PATH\n")
    assert machined.cli("env", "--shell", "fish", "h1").stdout.startswith('set -gx DOCKER_TLS_VERIFY "1";\n')
    swarm = machined.cli("env", "--swarm", "h1", check=False)
    assert swarm.returncode == 1 and "is not a swarm master" in swarm.stderr


def test_engine_options_reach_the_engine(machined: Machines, made) -> None:
    doc = machined.inspect("h2")
    assert doc["HostOptions"]["EngineOptions"]["Labels"] == ["env=test"]
    environ = Path(f"/proc/{machined.engine_pid('h2')}/environ").read_bytes().split(b"\0")
    assert b"FOO=bar" in environ
    flags = Path(f"/proc/{machined.engine_pid('h2')}/cmdline").read_bytes().split(b"\0")
    assert b"--label" in flags and b"env=test" in flags and b"--log-level=debug" in flags
    assert flags[flags.index(b"--registry-mirror") + 1] == b"https://mirror.example/hub"
    assert doc["HostOptions"]["EngineOptions"]["RegistryMirror"] == ["https://mirror.example/hub"]
    config = machined.cli("config", "h2").stdout
    bundle = machined.storage / "machines" / "h2"
    assert config == (f'--tlsverify\n--tlscacert="{bundle}/ca.pem"\n--tlscert="{bundle}/cert.pem"\n'
                      f'--tlskey="{bundle}/key.pem"\n-H={doc["URL"]}\n')
    if shutil.which("docker"):
        info_args = [a.replace('"', "") for a in config.split()]
        info = subprocess.run(["docker", *info_args, "info", "--format",
                               "{{json .Labels}} {{json .RegistryConfig.Mirrors}}"],
                              capture_output=True, text=True, env=machined.env(), timeout=60)
        assert info.returncode == 0, info.stderr
        labels, mirrors = info.stdout.split(" ", 1)
        assert "env=test" in json.loads(labels)
        assert json.loads(mirrors) == ["https://mirror.example/hub/"]


def test_create_errors(machined: Machines, made) -> None:
    dup = machined.cli("create", "h1", check=False)
    assert (dup.returncode, dup.stderr) == (1, 'Error: Error creating machine: Docker machine "h1" already exists\n')
    bad = machined.cli("create", "bad_name", check=False)
    assert "Invalid hostname specified. Allowed hostname chars are: 0-9a-zA-Z . -" in bad.stderr
    nodrv = machined.cli("create", "-d", "nope", "x1", check=False)
    assert nodrv.returncode == 1 and "pip install dockyard-provision-nope" in nodrv.stderr
    mirror = machined.cli("create", "--engine-registry-mirror", "ftp://m.example", "x1", check=False)
    assert "invalid mirror: unsupported scheme 'ftp'" in mirror.stderr
    assert "x1" not in machined.cli("ls", "-q").stdout.split()
    # a failure after the stream started: the engine exits at once; nothing is left of it
    failed = machined.cli("create", "--engine-opt", "storage-driver=no-such-driver", "x2", check=False)
    assert failed.returncode == 1 and "Waiting for machine to be running" in failed.stdout
    assert "Error: Error creating machine: the engine of host x2 exited with status" in failed.stderr
    assert "no-such-driver" in failed.stderr  # the engine's log tail says why
    assert "x2" not in machined.cli("ls", "-q").stdout.split()
    assert not (machined.daemon.data_root / "machines" / "machines" / "x2").exists()


# ---------------------------------------------------------------------------------- ls
def test_ls_columns_quiet_filters_and_formats(machined: Machines, made) -> None:
    url1, url2 = machined.inspect("h1")["URL"], machined.inspect("h2")["URL"]
    out = machined.cli("ls", env={"DOCKER_HOST": url2}).stdout.splitlines()
    assert re.split(r"\s{3,}", out[0]) == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "SWARM", "DOCKER", "ERRORS"]
    assert out[1].split() == ["h1", "-", "netns", "Running", url1, "v0.1.0"]
    assert out[2].split() == ["h2", "*", "netns", "Running", url2, "v0.1.0"]
    assert out[1].index("netns") == out[0].index("DRIVER") and out[1].index(url1) == out[0].index("URL")
    assert machined.cli("ls", "-q").stdout == "h1\nh2\n"
    assert machined.cli("ls", "-q", "--filter", "label=env=test").stdout == "h2\n"
    assert machined.cli("ls", "-q", "--filter", "name=^h1$").stdout == "h1\n"
    assert machined.cli("ls", "-q", "--filter", "driver=netns", "--filter", "state=running").stdout == "h1\nh2\n"
    assert machined.cli("ls", "-q", "--filter", "state=Stopped").stdout == ""
    assert machined.cli("ls", "--format", "{{.Name}} {{.DriverName}} {{.State}} {{.URL}}").stdout == \
        f"h1 netns Running {url1}\nh2 netns Running {url2}\n"
    assert machined.cli("ls", "--format", "table {{.Name}}\\t{{.DockerVersion}}").stdout == \
        "NAME   DOCKER\nh1     v0.1.0\nh2     v0.1.0\n"
    assert machined.cli("active", env={"DOCKER_HOST": url1}).stdout == "h1\n"
    bad = machined.cli("ls", "--filter", "color=red", check=False)
    assert bad.returncode == 1 and "Unsupported filter key 'color'" in bad.stderr
    bad = machined.cli("ls", "--format", "{{.Nope}}", check=False)
    assert "can't evaluate field Nope" in bad.stderr
    for cmd, expected in ((("ip", "h1"), url1[6:].split(":")[0] + "\n"), (("url", "h1"), url1 + "\n"),
                          (("status", "h1"), "Running\n"),
                          (("inspect", "--format", "{{.Driver.IPAddress}} {{.DriverName}}", "h1"),
                           url1[6:].split(":")[0] + " netns\n")):
        assert machined.cli(*cmd).stdout == expected


def test_the_api_answers_its_documented_errors(machined: Machines, made) -> None:
    from dockyard.errors import Conflict, InvalidArgument, NotFound, NotModified

    client = machined.api()
    with pytest.raises(NotFound, match='Host does not exist: "nope"'):
        client.get("/dockyard/v1/machines/nope/json")
    with pytest.raises(NotModified):
        client.post("/dockyard/v1/machines/h1/start")
    with pytest.raises(InvalidArgument, match="Name is required"):
        client.post("/dockyard/v1/machines/create", body={})
    with pytest.raises(InvalidArgument, match="Unsupported filter key"):
        client.get("/dockyard/v1/machines", filters=json.dumps({"color": ["red"]}))
    with pytest.raises(Conflict):
        client.request("POST", "/dockyard/v1/machines/create", body={"Name": "h1"})
    # the same answers without the /vX.Y prefix our client always sends
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(machined.daemon.socket))
        s.sendall(b"GET /dockyard/v1/machines/nope/json HTTP/1.0\r\n\r\n")
        raw = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split()[1] == b"404" and json.loads(body) == {"message": 'Host does not exist: "nope"'}


# ---------------------------------------------------------------------------------- ssh, scp
def test_ssh_runs_in_the_hosts_namespaces_and_scp_copies(machined: Machines, made, tmp_path: Path) -> None:
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter (util-linux) is not installed")
    address = machined.inspect("h1")["Driver"]["IPAddress"]
    assert machined.cli("ssh", "h1", "hostname").stdout == "h1\n"
    dev = machined.cli("ssh", "h1", "cat", "/proc/net/dev").stdout
    assert "eth0:" in dev
    fib = machined.cli("ssh", "h1", "sh", "-c", "cat /proc/net/fib_trie").stdout
    assert address in fib
    assert machined.cli("ssh", "h1", "sh", "-c", "exit 3", check=False).returncode == 3
    src = tmp_path / "f.txt"
    src.write_text("payload")
    machined.cli("scp", str(src), f"h1:{tmp_path / 'g.txt'}")
    assert (tmp_path / "g.txt").read_text() == "payload"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    assert "use -r" in machined.cli("scp", f"h1:{tmp_path / 'd'}", str(tmp_path / "e"), check=False).stderr
    machined.cli("scp", "-r", f"h1:{tmp_path / 'd'}", str(tmp_path / "e"))
    assert (tmp_path / "e" / "x").read_text() == "x"
    assert "not supported" in machined.cli("scp", "-d", str(src), f"h1:{tmp_path}/z", check=False).stderr
    assert 'Host does not exist: "nope"' in machined.cli("ssh", "nope", "true", check=False).stderr


# ---------------------------------------------------------------------------------- life cycle
def test_a_machine_whose_engine_died_shows_error_and_start_brings_it_back(machined: Machines, made) -> None:
    machined.cli("create", "dead1")
    since = str(int(time.time()) - 1)
    os.kill(machined.engine_pid("dead1"), signal.SIGKILL)
    wait_for(lambda: "Error" in machined.cli("status", "dead1").stdout, 10, "dead1 to show Error")
    row = next(line for line in machined.cli("ls").stdout.splitlines() if line.startswith("dead1 "))
    assert re.match(r"dead1 +- +netns +Error +Unknown +the engine \(pid \d+\) was killed by SIGKILL$", row), row
    error = machined.cli("inspect", "--format", "{{.Error}}", "dead1").stdout
    assert "was killed by SIGKILL; its log ends:" in error and "listening on tcp://" in error
    env = machined.cli("env", "dead1", check=False)
    assert env.returncode == 1 and "dead1 is not running" in env.stderr
    out = machined.cli("start", "dead1").stdout
    assert out.splitlines()[:2] == ['Starting "dead1"...', 'Machine "dead1" was started.']
    assert machined.cli("status", "dead1").stdout == "Running\n"
    again = machined.cli("start", "dead1", check=False)
    assert again.returncode == 1 and 'Machine "dead1" is already running.' in again.stderr
    events = machined.daemon.past_events(since, "type=machine")
    assert re.search(r"machine die \w+ .*name=dead1", events) and re.search(r"machine start \w+ .*name=dead1", events)
    machined.cli("rm", "-y", "dead1")


def served_certificate(url: str, bundle: Path) -> bytes:
    host, port = url.removeprefix("tcp://").split(":")
    ctx = ssl.create_default_context(cafile=str(bundle / "ca.pem"))
    ctx.load_cert_chain(bundle / "cert.pem", bundle / "key.pem")
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return tls.getpeercert(binary_form=True) or b""


def test_regenerate_certs_upgrade_restart_stop_kill(machined: Machines, made) -> None:
    if not os.path.exists("/bin/busybox") or shutil.which("docker") is None:
        pytest.skip("needs /bin/busybox (the offline busybox image) and the docker CLI")
    machined.cli("create", "rot1")
    machined.shell('eval $($M env rot1) && dockyard image bootstrap busybox >/dev/null && '
                   'dockyard create --name keep busybox true >/dev/null')
    url = machined.inspect("rot1")["URL"]
    bundle = machined.storage / "machines" / "rot1"
    before = served_certificate(url, bundle)
    out = machined.cli("regenerate-certs", "-f", "rot1").stdout
    assert out == "Regenerating TLS certificates\n"
    assert served_certificate(url, bundle) != before, "the engine presents the new certificate"
    assert machined.shell("eval $($M env rot1) && docker ps -a --format '{{.Names}}'").stdout.split() == ["keep"]
    out = machined.cli("upgrade", "rot1").stdout
    assert out == ('Restarting the engine of "rot1" on the dockyard installed for it...\n'
                   'Machine "rot1" runs dockyard 0.1.0 (it ran 0.1.0).\n')
    assert machined.cli("restart", "rot1").stdout.startswith('Restarting "rot1"...\nRestarted machines may have')
    assert machined.cli("stop", "rot1").stdout == 'Stopping "rot1"...\nMachine "rot1" was stopped.\n'
    row = next(line for line in machined.cli("ls").stdout.splitlines() if line.startswith("rot1 "))
    assert row.split() == ["rot1", "-", "netns", "Stopped", "Unknown"]
    assert machined.cli("url", "rot1", check=False).stderr == "Error: Host is not running\n"
    killed = machined.cli("kill", "rot1", check=False)
    assert 'Machine "rot1" is already stopped.' in killed.stderr
    machined.cli("start", "rot1")
    assert machined.cli("kill", "rot1").stdout == 'Killing "rot1"...\nMachine "rot1" was killed.\n'
    machined.cli("start", "rot1")
    assert machined.shell("eval $($M env rot1) && docker ps -a --format '{{.Names}}'").stdout.split() == ["keep"]
    machined.cli("rm", "-f", "rot1")


def test_concurrent_creates_of_one_name_one_wins_the_other_is_a_409(machined: Machines, made) -> None:
    from dockyard.errors import Conflict

    barrier = threading.Barrier(2)

    def one() -> str:
        client = machined.api()
        barrier.wait()
        try:
            resp = client.request("POST", "/dockyard/v1/machines/create", body={"Name": "twin"}, timeout=None)
        except Conflict as exc:
            return f"409 {exc}"
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        return "200 " + json.dumps(lines[-1])

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda _: one(), range(2)))
    assert results[0].startswith('200 {"aux": {"Name": "twin"'), results
    assert results[1] == '409 Docker machine "twin" already exists'
    assert machined.cli("ls", "-q", "--filter", "name=twin").stdout == "twin\n"
    machined.cli("rm", "-y", "twin")


def test_rm_leaves_nothing_behind(machined: Machines, made, dockyard_owners) -> None:
    """A busy machine (a container running in it: its engine's bridge, veths, nft rules,
    mounts, cgroups, conmon) removed: no netns, link, mount, cgroup or process of it is left."""
    if not os.path.exists("/bin/busybox"):
        pytest.skip("the offline busybox image needs /bin/busybox (busybox-static)")
    before = snapshot_host()
    machined.cli("create", "gone1")
    machined.shell('eval $($M env gone1) && dockyard image bootstrap busybox >/dev/null && '
                   'dockyard run -d --name busy busybox sleep 600 >/dev/null')
    during = snapshot_host() - before
    assert any("m-gone1" in n for n in during.items["netns"]) and during.items["processes"]
    out = machined.cli("rm", "gone1", input="y\n").stdout
    assert out == ("About to remove gone1\nWARNING: This action will delete both local reference and remote "
                   "instance.\nAre you sure? (y/n): Successfully removed gone1\n")
    leaks = wait_for_no_leaks(before, 5.0, keep=dockyard_owners.owns_or_child)
    assert not leaks, "rm left:\n" + leaks.describe()
    assert not (machined.storage / "machines" / "gone1").exists()
    assert not (machined.daemon.data_root / "machines" / "machines" / "gone1").exists()
    assert "gone1" not in machined.cli("ls", "-q").stdout.split()
    cancelled = machined.cli("rm", "gone1", input="n\n", check=False)
    assert "Successfully" not in cancelled.stdout


def test_a_create_interrupted_by_kill_9_of_the_daemon_is_cleaned_at_restart_and_machines_outlive_a_stop(
        start_dockyardd: Callable[..., Daemon], short_roots: Callable[[], Path], dockyard_owners) -> None:
    root = short_roots()
    m = start_machined(start_dockyardd, root)
    subnet = m.config["provision-opts"][0].split("=", 1)[1]
    try:
        proc = subprocess.Popen([DOCKYARD, "-H", m.daemon.host, "machine", "create", "k1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=m.env())
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Waiting for machine to be running"):
                break
        m.daemon.proc.send_signal(signal.SIGKILL)
        m.daemon.proc.wait()
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "Error creating machine" in err
        m = start_machined(start_dockyardd, root, subnet)  # the same roots and range: the daemon again
        assert m.cli("ls", "-q").stdout == ""
        assert "destroy" in m.daemon.log or "removed what was made" in m.daemon.log
        tag = m.daemon.owner
        assert not [n for n in os.listdir("/run/netns") if n.startswith(tag) and n.endswith("-k1")]
        wait_for(lambda: not _processes_naming(str(root / "run" / "provision")), 10, "k1's engine to be gone")
        m.cli("create", "k1")  # the name is free again
        # a machine outlives a clean stop of the daemon, as containers do, and is found again
        assert m.daemon.stop() == 0
        m = start_machined(start_dockyardd, root, subnet)
        assert m.cli("ls", "--format", "{{.Name}} {{.State}} {{.DockerVersion}}").stdout == "k1 Running v0.1.0\n"
        m.cli("rm", "-f", "k1")
    finally:
        try:
            if m.daemon.proc.poll() is None:
                m.remove_all()
        finally:
            m.daemon.teardown()


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name} {cmdline[:200]}")
    return found

