"""docker-py 7 against dockyardd: login, pull (it sends no X-Registry-Auth without auth_config),
push with auth_config, streamed JSON progress ending in the aux line, get_registry_data."""

from __future__ import annotations

import pytest
from conftest import busybox_to

docker = pytest.importorskip("docker")
pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_docker_py_login_pull_push(registry_factory, dockyardd) -> None:
    reg = registry_factory("secure", tls=True, user="dan", password="py")
    busybox_to(reg, "bb:1")
    client = docker.DockerClient(base_url=dockyardd.host, version="1.41")
    try:
        with pytest.raises(docker.errors.APIError):
            client.login(username="dan", password="bad", registry=reg.host, reauth=True)
        assert client.login(username="dan", password="py", registry=reg.host, reauth=True)["Status"] \
            == "Login Succeeded"
        creds = {"username": "dan", "password": "py"}
        image = client.images.pull(f"{reg.host}/bb", tag="1", auth_config=creds)
        assert f"{reg.host}/bb:1" in image.tags
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(f"{reg.host}/nothere", tag="1", auth_config=creds)
        image.tag(f"{reg.host}/pushed", tag="py")
        lines = list(client.images.push(f"{reg.host}/pushed", tag="py", auth_config=creds, stream=True,
                                        decode=True))
        assert not [ln for ln in lines if "error" in ln], lines
        aux = [ln["aux"] for ln in lines if "aux" in ln]
        assert aux and aux[-1]["Tag"] == "py" and aux[-1]["Digest"].startswith("sha256:")
        data = client.images.get_registry_data(f"{reg.host}/pushed:py", auth_config=creds)
        assert data.id == aux[-1]["Digest"]
        assert data.has_platform("linux/amd64")
    finally:
        client.close()
