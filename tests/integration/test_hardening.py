"""What a hostile probe found (issue 21, items 11-13 and 15), tried its own way against a real
dockyardd: an unprivileged user, a tmpfs data root that fills up, a 200k-line log and a label
of megabytes, ``kill -9`` in the middle of a burst of ``docker run -d``."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for

sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                reason="needs root, the docker CLI and conmon")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def root() -> Iterator[Path]:
    """A daemon root other users could reach (pytest's tmp_path is 0700: it would hide what
    the daemon itself must protect)."""
    path = Path(f"/tmp/dyz-{os.urandom(3).hex()}")
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(start_dockyardd: Callable[..., Daemon]) -> Iterator[Callable[..., Daemon]]:
    """Start daemons whose containers are removed and whose host objects are purged at the end."""
    started: list[Daemon] = []
    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)

    def run(root: Path, *flags: str) -> Daemon:
        d = start_dockyardd(root, *flags, config={"default-address-pools": f"{pool}:24"})
        started.append(d)
        d.dockyard("image", "bootstrap", "busybox")
        return d

    yield run
    for d in started:
        d.teardown()


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd`` as nobody, through a shell: setpriv's own exec still holds root's capabilities
    (it reaches paths nobody could), the shell's does not."""
    return subprocess.run([*NOBODY, "sh", "-c", 'exec "$@"', "sh", *cmd], capture_output=True, text=True,
                          timeout=30)


# ----------------------------------------------------------------------------- 11. a full data root
def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_full_data_root_loses_no_exit_and_frees_through_the_api(root: Path, start: Callable[..., Daemon]) -> None:
    """On a 32 MiB tmpfs data root filled up while containers run: the exit is recorded with
    its real code (``docker run`` returns it, and after a restart too), ``stop`` and ``rm -f``
    work, and what cannot be done names the full filesystem; no traceback."""
    data = root / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)], check=True)
    try:
        d = start(root)
        d.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "60")
        env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.root / "docker-config")}
        run = subprocess.Popen(["docker", "run", "--name", "ex", "busybox", "sh", "-c", "sleep 2; exit 3"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: d.docker("inspect", "-f", "{{.State.Running}}", "ex", check=False).stdout == "true\n",
                 20, "the container to run")
        _fill(data / "filler")
        assert run.wait(timeout=30) == 3, run.stderr.read() if run.stderr else ""
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ex").stdout == "exited 3\n"
        d.docker("stop", "-t", "1", "sleeper")
        d.docker("rm", "-f", "sleeper")
        _fill(data / "filler2")  # what the removal freed
        refused = d.docker("run", "--rm", "busybox", "true", check=False)
        assert refused.returncode == 125 and "no space left on device" in refused.stderr
        assert str(data) in refused.stderr, refused.stderr  # the full filesystem is named
        assert "Traceback" not in d.log, d.log[-3000:]
        (data / "filler").unlink()
        (data / "filler2").unlink()
        assert d.stop() == 0
        d = start(root)
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ex").stdout == "exited 3\n"
        d.docker("rm", "ex")
        d.teardown()
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


# ----------------------------------------------------------------------------- 12. roots
def test_other_users_cannot_read_state_or_run_volume_setuid_files(root: Path, start: Callable[..., Daemon]) -> None:
    """dockerd keeps its root 0710, containerd 0700: ``-e`` secrets in the state database and
    bundles, and a setuid binary planted in a named volume (CVE-2021-41091) stay out of reach."""
    d = start(root)
    assert stat.S_IMODE(d.data_root.stat().st_mode) == 0o710
    assert stat.S_IMODE(d.exec_root.stat().st_mode) == 0o700
    d.docker("run", "-d", "--name", "secretive", "-e", "SECRET=hunter2", "-v", "planted:/v", "busybox", "sh", "-c",
             "cp /bin/busybox /v/sh && chmod 4755 /v/sh && sleep 60")
    wait_for(lambda: d.docker("exec", "secretive", "test", "-u", "/v/sh", check=False).returncode == 0, 20,
             "the setuid file in the volume")
    seen = as_nobody("grep", "-rl", "hunter2", str(d.root))
    assert seen.stdout == "" and "Permission denied" in seen.stderr
    assert as_nobody("cat", str(d.data_root / "state.db")).returncode != 0
    planted = d.data_root / "volume" / "local" / "volumes" / "planted" / "_data" / "sh"
    ran = as_nobody(str(planted), "id", "-u")
    assert ran.returncode != 0 and "Permission denied" in ran.stderr
    assert d.docker("run", "--rm", "--user", "1000", "-v", "planted:/v", "busybox", "ls", "/v").stdout == "sh\n"
    # roots an earlier version left open are tightened at start
    d.docker("rm", "-f", "secretive")
    assert d.stop() == 0
    os.chmod(d.data_root, 0o755)
    os.chmod(d.exec_root, 0o755)
    d = start(root)
    assert stat.S_IMODE(d.data_root.stat().st_mode) == 0o710
    assert stat.S_IMODE(d.exec_root.stat().st_mode) == 0o700


# ----------------------------------------------------------------------------- 15. recovery
def test_kill_9_mid_burst_leaks_no_network_namespaces(root: Path, start: Callable[..., Daemon]) -> None:
    d = start(root)
    netns = d.exec_root / "arch" / "linux" / "netns"
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.root / "docker-config")}
    burst = [subprocess.Popen(["docker", "run", "-d", "busybox", "sleep", "60"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(8)]
    wait_for(lambda: netns.exists() and any(netns.iterdir()), 30, "the first network sandbox")
    d.proc.send_signal(signal.SIGKILL)  # in the middle of the starts
    d.proc.wait()
    for p in burst:
        p.wait(timeout=60)
    d = start(root)
    running = d.docker("ps", "-q", "--no-trunc").stdout.split()
    left = sorted(p.name.split("-", 1)[1] for p in netns.iterdir()) if netns.exists() else []
    assert left == sorted(running), "sandboxes of containers that are not running survived the restart"
    endpoints = d.docker("network", "inspect", "bridge", "-f", "{{range $k, $v := .Containers}}{{$k}} {{end}}").stdout
    assert sorted(endpoints.split()) == sorted(running), "endpoints of containers that are not running"
    ids = d.docker("ps", "-aq").stdout.split()
    d.docker("rm", "-f", *ids)
    assert not netns.exists() or not any(netns.iterdir())
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(root) in line]
