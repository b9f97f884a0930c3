"""Against Debian's docker-registry on 127.0.0.1: dockyard <-> skopeo interoperability, docker
CLI push/pull/login through dockyardd (htpasswd + TLS), the dockyard CLI, /distribution."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import Registry, busybox_to

from dockyard.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _dir_image(path: Path) -> tuple[dict, dict]:
    manifest = json.loads((path / "manifest.json").read_text())
    config = json.loads((path / manifest["config"]["digest"].split(":")[1]).read_text())
    return manifest, config


def test_skopeo_pushed_image_pulled_by_dockyard_then_pushed_back_and_pulled_by_skopeo(
        registry: Registry, dockyardd, tmp_path: Path) -> None:
    busybox_to(registry, "src/busybox:1")
    out = dockyardd.docker("pull", f"{registry.host}/src/busybox:1").stdout
    assert "Pull complete" in out and f"Status: Downloaded newer image for {registry.host}/src/busybox:1" in out
    run = dockyardd.docker("run", "--rm", f"{registry.host}/src/busybox:1", "echo", "hello-from-pulled")
    assert "hello-from-pulled" in run.stdout
    dockyardd.docker("tag", f"{registry.host}/src/busybox:1", f"{registry.host}/dst/bb:2")
    out = dockyardd.docker("push", f"{registry.host}/dst/bb:2").stdout
    assert f"The push refers to repository [{registry.host}/dst/bb]" in out
    assert "Mounted from src/busybox" in out and "Pushed" not in out  # cross-repository mount, no upload
    digest_line = [ln for ln in out.splitlines() if ln.startswith("2: digest: sha256:")]
    assert digest_line, out
    # skopeo reads what dockyard pushed, and it is the same image (same diff IDs)
    dest = tmp_path / "skopeo-dir"
    registry.skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/dst/bb:2", f"dir:{dest}")
    manifest, config = _dir_image(dest)
    inspect = json.loads(dockyardd.docker("image", "inspect", f"{registry.host}/dst/bb:2").stdout)[0]
    assert config["rootfs"]["diff_ids"] == inspect["RootFS"]["Layers"]
    assert "sha256:" + __import__("hashlib").sha256((dest / "manifest.json").read_bytes()).hexdigest() \
        == digest_line[0].split()[2]
    # a second push of the same image: every layer is already there
    again = dockyardd.docker("push", f"{registry.host}/dst/bb:2").stdout
    assert "Layer already exists" in again and "Pushed" not in again
    # every tag of a repository: push --all-tags, then pull --all-tags
    dockyardd.docker("tag", f"{registry.host}/dst/bb:2", f"{registry.host}/dst/bb:3")
    both = dockyardd.docker("push", "--all-tags", f"{registry.host}/dst/bb").stdout
    assert both.count("The push refers to repository") == 1
    assert "2: digest: sha256:" in both and "3: digest: sha256:" in both
    dockyardd.docker("rmi", f"{registry.host}/dst/bb:2", f"{registry.host}/dst/bb:3")
    pulled = dockyardd.docker("pull", "--all-tags", f"{registry.host}/dst/bb").stdout
    assert pulled.count("Digest: sha256:") == 2
    assert f"Status: Downloaded newer image for {registry.host}/dst/bb" in pulled
    tags = dockyardd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert {f"{registry.host}/dst/bb:2", f"{registry.host}/dst/bb:3"} <= set(tags)


def test_push_to_an_empty_registry_uploads_then_skopeo_and_podman_read_it(registry: Registry, dockyardd,
                                                                        tmp_path: Path) -> None:
    busybox_to(registry, "bb:1")
    dockyardd.docker("pull", f"{registry.host}/bb:1")
    registry.wipe()  # forget everything: the next push must upload every blob
    out = dockyardd.docker("push", f"{registry.host}/bb:1").stdout  # compressed while uploading
    assert "Pushed" in out and "Layer already exists" not in out
    first = [ln for ln in out.splitlines() if "digest: sha256:" in ln]
    registry.wipe()  # again: now the compressed layer kept from the first push is uploaded as is
    again = dockyardd.docker("push", f"{registry.host}/bb:1").stdout
    assert "Pushed" in again and [ln for ln in again.splitlines() if "digest: sha256:" in ln] == first
    dest = tmp_path / "oci"
    registry.skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/bb:1", f"oci:{dest}:bb")
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"]
    # podman pulls and runs what dockyard uploaded (its own name, removed afterwards)
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (what dockyard pushed was read by skopeo only)")
    name = f"{registry.host}/bb:1"
    try:
        proc = subprocess.run(["podman", "run", "--rm", "--tls-verify=false", name, "echo", "podman-ran-it"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "podman-ran-it" in proc.stdout, proc.stderr
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True, timeout=60)


def test_docker_login_push_pull_with_htpasswd_and_tls(registry_factory, dockyardd_factory) -> None:
    reg = registry_factory("secure", tls=True, user="alice", password="wonderland")
    d = dockyardd_factory("d")
    cert_dir = d.root / "data" / "certs.d" / reg.host
    cert_dir.mkdir(parents=True)
    (cert_dir / "ca.crt").write_bytes(reg.certs.ca.read_bytes())
    busybox_to(reg, "bb:1")
    # no credentials: refused
    out = d.docker("pull", f"{reg.host}/bb:1", check=False)
    assert out.returncode != 0 and "unauthorized" in out.stderr.lower(), out.stderr
    bad = d.docker("login", reg.host, "-u", "alice", "--password-stdin", input=b"nope\n", check=False)
    assert bad.returncode != 0
    ok = d.docker("login", reg.host, "-u", "alice", "--password-stdin", input=b"wonderland\n")
    assert "Login Succeeded" in ok.stdout
    out = d.docker("pull", f"{reg.host}/bb:1").stdout
    assert "Downloaded newer image" in out
    d.docker("tag", f"{reg.host}/bb:1", f"{reg.host}/copy:7")
    out = d.docker("push", f"{reg.host}/copy:7").stdout
    assert "7: digest: sha256:" in out
    d.docker("logout", reg.host)
    denied = d.docker("push", f"{reg.host}/copy:7", check=False)
    assert denied.returncode != 0 and "unauthorized" in (denied.stderr + denied.stdout).lower()


def test_dockyard_cli_login_pull_push(registry_factory, dockyardd, tmp_path: Path) -> None:
    reg = registry_factory("secure", tls=True, user="bob", password="builder")
    busybox_to(reg, "bb:1")
    env = {"DOCKYARD_CONFIG": str(tmp_path / "dycfg")}
    bad = dockyardd.dockyard("login", reg.host, "-u", "bob", "-p", "wrong", check=False, env=env)
    assert bad.returncode != 0
    out = subprocess.run([str(Path(os.sys.executable).parent / "dockyard"), "-H", dockyardd.host, "login", reg.host,
                          "-u", "bob", "--password-stdin"], input="builder\n", capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env})
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out.stderr
    cfg = tmp_path / "dycfg" / "config.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert reg.host in json.loads(cfg.read_text())["auths"]
    pulled = dockyardd.dockyard("pull", f"{reg.host}/bb:1", env=env)
    assert "Pull complete" in pulled.stdout and "Status: Downloaded newer image" in pulled.stdout
    dockyardd.docker("tag", f"{reg.host}/bb:1", f"{reg.host}/again:3")
    pushed = dockyardd.dockyard("push", f"{reg.host}/again:3", env=env)
    assert "3: digest: sha256:" in pushed.stdout
    missing = dockyardd.dockyard("pull", f"{reg.host}/nothere:1", check=False, env=env)
    assert missing.returncode == 1 and "manifest for" in missing.stderr and "not found" in missing.stderr


def test_distribution_inspect(registry: Registry, dockyardd) -> None:
    busybox_to(registry, "bb:1")
    client = Client(dockyardd.host)
    info = client.get(f"/distribution/{registry.host}/bb:1/json")
    assert info["Descriptor"]["digest"].startswith("sha256:")
    assert info["Descriptor"]["mediaType"].startswith("application/vnd.")
    assert info["Platforms"] and info["Platforms"][0]["os"] == "linux"
    with pytest.raises(Exception, match="not found"):
        client.get(f"/distribution/{registry.host}/nothere:1/json")
