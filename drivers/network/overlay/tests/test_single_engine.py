"""An engine without a cluster store: ``docker network create -d overlay`` says what it needs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def test_overlay_without_a_cluster_store_names_the_flag(dockyardd):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out = subprocess.run([docker, "-H", dockyardd.host, "network", "create", "-d", "overlay", "ovx"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "--cluster-store" in out.stderr, out.stderr
    ls = subprocess.run([docker, "-H", dockyardd.host, "network", "ls", "--format", "{{.Name}}"],
                        capture_output=True, text=True, env=env, timeout=60).stdout.split()
    assert "ovx" not in ls, ls
