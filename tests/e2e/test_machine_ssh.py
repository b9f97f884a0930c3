"""Issue 14's walkthrough with the ssh driver, as a user types it: ``dockyard machine create -d
ssh`` against Debian's real openssh-server in a network namespace (a fresh target with no
engine), then ``eval $(dockyard machine env NAME)`` and the real docker CLI runs busybox there;
``machine rm`` takes everything back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ssh_testing = pytest.importorskip("dockyard_provision_ssh.testing", reason="dockyard-provision-ssh is not installed")
pytest.importorskip("dockyard_machine", reason="dockyard-machine is not installed")
DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def test_machine_create_ssh_env_docker_run_rm(dockyardd_factory: Callable[..., Any], dockyard_owners: Any,
                                              tmp_path: Path) -> None:
    from dockyard_plugin_sdk.conformance.network import free_test_subnet, random_owner
    from dockyard_provision_ssh.installer import engine_owner

    reason = ssh_testing.unavailable() or (None if shutil.which("docker") else "the docker CLI is not installed")
    if reason:
        pytest.skip(reason)
    daemon = dockyardd_factory("m")
    owner = random_owner("dys")
    dockyard_owners.record(owner)
    target = ssh_testing.make_target(owner, 0, free_test_subnet(ssh_testing.SUBNET_BASE, 24))
    dockyard_owners.record(engine_owner(target.ssh_target(), "s1"), target.install_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_", "REQUESTS_CA", "CURL_CA"))}
    env.update(MACHINE_STORAGE_PATH=str(tmp_path / "machines"), DOCKER_CONFIG=str(tmp_path / "docker-config"),
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
               M=f"{DOCKYARD} -H {daemon.host} machine")
    try:
        create = subprocess.run(
            [DOCKYARD, "-H", daemon.host, "machine", "create", "-d", "ssh", "--ssh-address", target.address,
             "--ssh-key", str(target.client_key), "--ssh-host-key", target.host_key_pub,
             "--driver-opt", f"install-root={target.install_root}", "s1"],
            capture_output=True, text=True, env=env, timeout=240)
        assert create.returncode == 0, create.stdout + create.stderr + daemon.log[-3000:]
        run = subprocess.run(["bash", "-c", "eval $($M env s1) && dockyard image bootstrap busybox >/dev/null && "
                                            "docker run --rm busybox echo hi && docker info --format '{{.Name}}'"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == ["hi", "s1"]
        # machine ssh / scp: OpenSSH with the machine's key and pinned host key
        out = subprocess.run(["bash", "-c", "$M ssh s1 cat /etc/hostname"], capture_output=True, text=True,
                             env=env, timeout=60)
        assert (out.returncode, out.stdout.strip()) == (0, "s1"), out.stderr
        (tmp_path / "sent").write_text("over scp\n")
        out = subprocess.run(["bash", "-c", f"$M scp {tmp_path / 'sent'} s1:{tmp_path / 'arrived'}"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "arrived").read_text() == "over scp\n"
        # machine upgrade installs this machine's dockyard again; the running container stays
        out = subprocess.run(["bash", "-c", "eval $($M env s1) && docker run -d --name keep busybox sleep 300 "
                                            ">/dev/null && $M upgrade s1 && docker ps --format '{{.Names}} {{.State}}'"
                                            " && docker rm -f keep >/dev/null"],
                             capture_output=True, text=True, env=env, timeout=180)
        assert out.returncode == 0, out.stderr
        assert "keep running" in out.stdout.splitlines(), out.stdout
        ls = subprocess.run(["bash", "-c", "$M ls --format '{{.Name}} {{.DriverName}} {{.State}}'"],
                            capture_output=True, text=True, env=env, timeout=60)
        assert ls.stdout.split("\n")[0] == "s1 ssh Running", ls.stdout + ls.stderr
        rm = subprocess.run(["bash", "-c", "$M rm -y s1"], capture_output=True, text=True, env=env, timeout=120)
        assert rm.returncode == 0, rm.stderr
        assert not ssh_testing.Path(target.install_root, "engines").exists() or not any(
            Path(target.install_root, "engines").iterdir())
        assert target.processes() == []
    finally:
        subprocess.run([DOCKYARD, "-H", daemon.host, "machine", "rm", "-f", "-y", "s1"], capture_output=True,
                       env=env, timeout=120)
        left = ssh_testing.remove_target(target)
        assert not left, f"processes left in the target: {left}"
