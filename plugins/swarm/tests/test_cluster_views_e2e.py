"""The manager's images, networks, volumes, /info and /events through the real docker CLI and
docker-py, against the shared ``swarm_cluster`` (three netns hosts, a real etcd, a manager)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


def info_nodes(out: str) -> dict[str, dict[str, str]]:
    """``docker info``'s per-node blocks (`` h1: ADDR`` then ``  └ Key: value``)."""
    nodes: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in out.splitlines():
        if line.startswith("  h") and ": " in line and "└" not in line:
            name, _, addr = line.strip().partition(": ")
            current = nodes[name] = {"addr": addr}
        elif "└" in line and current is not None:
            key, _, value = line.split("└", 1)[1].strip().partition(": ")
            current[key] = value
    return nodes


def manager_docker(c: Any, *args: str, input: bytes = b"", **env_extra: str) -> str:
    """The docker CLI against the manager with ``input`` on stdin (``docker load``)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(c.root / "docker-config")
    env.update(env_extra)
    try:
        res = subprocess.run(["docker", "-H", f"unix://{c.manager.socket}", *args], input=input,
                             capture_output=True, env=env, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"docker {' '.join(args)} timed out; manager log:\n{c.manager.log()[-3000:]}") from exc
    assert res.returncode == 0, res.stderr.decode(errors="replace") + c.manager.log()[-3000:]
    return res.stdout.decode(errors="replace")


def subprocess_run_manager(c: Any, *args: str) -> bytes:
    """The docker CLI against the manager; its stdout as bytes (``docker save``)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(c.root / "docker-config")
    res = subprocess.run(["docker", "-H", f"unix://{c.manager.socket}", *args], capture_output=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return res.stdout


async def wait_for(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


async def test_docker_info_lists_the_nodes_with_swarm_classics_fields(swarm_cluster: Any) -> None:
    c = swarm_cluster

    def healthy() -> dict[str, dict[str, str]] | None:
        nodes = info_nodes(c.docker("info").stdout)
        return nodes if len(nodes) == 3 and all(n.get("Status") == "Healthy" for n in nodes.values()) else None

    nodes = await wait_for("three healthy nodes in docker info", healthy)
    out = c.docker("info").stdout
    for key in ("Role: primary", "Strategy: spread", "Filters: ", "Nodes: 3", "Server Version: swarm/"):
        assert key in out, out
    for h in c.hosts:
        node = nodes[h.name]
        assert node["addr"] == f"{h.address}:2376"
        assert node["ID"] and node["ServerVersion"] and node["Error"] == "(none)"
        assert node["Reserved CPUs"].startswith("0 / ") and " / " in node["Reserved Memory"]
        assert "storagedriver=" in node["Labels"] and "kernelversion=" in node["Labels"]
        assert node["Containers"].endswith("Stopped)")
    assert c.docker("version", "--format", "{{.Server.Version}}").stdout.strip().startswith("swarm/")
    df = c.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout
    assert int(df.split("Images ")[1].split()[0]) >= 3, df  # every node's busybox
    doc = json.loads(c.docker("info", "--format", "{{json .}}").stdout)
    assert doc["Images"] >= 3 and doc["NCPU"] >= 3  # busybox on each node; the nodes' CPUs added up


async def test_docker_py_info(swarm_cluster: Any) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{swarm_cluster.manager.socket}", version="1.41")
    try:
        info = await asyncio.to_thread(client.info)
    finally:
        client.close()
    status = dict(map(tuple, info["SystemStatus"]))
    assert status["Nodes"] == "3" and status["Role"] == "primary"
    assert sum(1 for k, v in info["SystemStatus"] if k == "  └ Status" and v == "Healthy") == 3


async def test_images_across_nodes_and_load_everywhere(swarm_cluster: Any) -> None:
    c = swarm_cluster
    listed = c.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")
    assert any(line.startswith("busybox:latest ") for line in listed), listed
    # an image only h1 has, saved there and loaded through the manager: every node gets it
    h1 = c.host("h1")
    h1.docker("tag", "busybox", "onlyh1:v1")
    await wait_for("h1's new tag seen by the manager",
                   lambda: "onlyh1:v1" in c.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout)
    resp = h1.client().request("GET", "/images/get", {"names": "onlyh1:v1"})
    archive = resp.read()
    resp.close()
    c.docker("rmi", "onlyh1:v1")
    for h in c.hosts:
        assert "onlyh1" not in h.docker("images").stdout
    text = manager_docker(c, "load", input=archive)
    for h in c.hosts:
        assert f"{h.name}: Loaded image: onlyh1:v1" in text, text
        assert "onlyh1" in h.docker("images").stdout
    inspected = json.loads(c.docker("image", "inspect", "onlyh1:v1").stdout)[0]
    assert "onlyh1:v1" in inspected["RepoTags"] and inspected["Config"]["Cmd"], inspected
    assert "CREATED BY" in c.docker("history", "onlyh1:v1").stdout
    # save comes from a node holding it: the archive names the image
    import io
    import tarfile

    res = subprocess_run_manager(c, "save", "onlyh1:v1")
    with tarfile.open(fileobj=io.BytesIO(res)) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["onlyh1:v1"], manifest
    c.docker("rmi", "onlyh1:v1")
    assert all("onlyh1" not in h.docker("images").stdout for h in c.hosts)


async def test_build_runs_on_the_node_its_constraint_names(swarm_cluster: Any, tmp_path: Any) -> None:
    c = swarm_cluster
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL built.by=swarm\n")
    out = manager_docker(c, "build", "-t", "built:h2", "--build-arg", "constraint:node==h2", str(tmp_path),
                         DOCKER_BUILDKIT="0")
    assert "Successfully tagged built:h2" in out, out
    assert "built" in c.host("h2").docker("images").stdout
    assert not any("built" in c.host(n).docker("images").stdout for n in ("h1", "h3"))
    await wait_for("the manager sees the built image",
                   lambda: "built:h2" in c.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout)
    c.docker("rmi", "built:h2")


def tiny_registry_app() -> tuple[Any, str]:
    """A read-only registry (OCI manifest, one gzip layer holding /hello) and the image's ID."""
    import gzip
    import hashlib
    import io
    import tarfile

    from aiohttp import web

    def sha(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("hello")
        info.size, info.mode = 3, 0o644
        tf.addfile(info, io.BytesIO(b"hi\n"))
    layer = buf.getvalue()
    gz = gzip.compress(layer, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha(gz), "size": len(gz)}]}).encode()
    blobs = {sha(config): config, sha(gz): gz}

    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def manifests(request: web.Request) -> web.Response:
        return web.Response(body=manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                    "Docker-Content-Digest": sha(manifest)})

    async def blob(request: web.Request) -> web.Response:
        data = blobs.get(request.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        return web.Response(body=data, headers={"Content-Type": "application/octet-stream",
                                                "Docker-Content-Digest": request.match_info["digest"]})

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_route("*", "/v2/{name:.+}/manifests/{ref}", manifests)
    app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", blob)
    return app, sha(config)


async def test_pull_lands_on_every_node_and_is_listed_once(swarm_cluster: Any) -> None:
    import os
    import signal

    from aiohttp import web

    c = swarm_cluster
    gateway = str(c.netns.driver.gateway.ip)
    app, image_id = tiny_registry_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, gateway, 0)  # on the hosts' bridge: they reach it, nothing else does
    await site.start()
    registry = f"{gateway}:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    saved: dict[str, str] = {}
    try:
        for h in c.hosts:  # plain http to it: the engines' insecure-registries, reloaded (SIGHUP)
            path = os.path.join(h.host.extra["root"], "daemon.json")
            with open(path) as f:
                saved[path] = f.read()
            config = json.loads(saved[path])
            config["insecure-registries"] = [registry]
            with open(path, "w") as f:
                json.dump(config, f)
            os.kill(int(h.host.extra["pid"]), signal.SIGHUP)
        ref = f"{registry}/tiny:1"

        attempts: list[str] = []

        def pulled() -> str | None:  # until every engine has read its new configuration
            res = c.docker("pull", ref, check=False)
            attempts.append(res.stdout + res.stderr)
            done = all(f"{h.name}: Pulling {ref}... : downloaded" in res.stdout for h in c.hosts)
            return res.stdout if res.returncode == 0 and done else None

        out = await wait_for("a pull through the manager", pulled, 20)
        for h in c.hosts:
            assert f"{h.name}: Pulling {ref}... : downloaded" in out, out
            assert image_id.removeprefix("sha256:")[:12] in h.docker("images", "-q").stdout
        listed = [line for line in c.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
                  if line.startswith(f"{registry}/tiny:1 ")]
        assert len(listed) == 1, listed  # one image on three nodes: shown once
        c.docker("rmi", "-f", image_id.removeprefix("sha256:")[:12])  # by ID: gone from every node
        left = {h.name: h.docker("images").stdout for h in c.hosts
                if image_id.removeprefix("sha256:")[:12] in h.docker("images", "-q").stdout}
        assert not left, (left, attempts)
    finally:
        for path, text in saved.items():  # an engine started again reads its file as it was
            with open(path, "w") as f:
                f.write(text)
        await runner.cleanup()


async def test_pull_goes_to_every_node_and_reports_each(swarm_cluster: Any) -> None:
    c = swarm_cluster
    # the hosts reach no registry: each node's failure is reported under its name, and the
    # pull fails as a whole because no node could pull it
    res = c.docker("pull", "127.0.0.1:9/nothing:1", check=False)
    assert res.returncode != 0
    for h in c.hosts:
        assert f"{h.name}: Pulling 127.0.0.1:9/nothing:1..." in res.stdout + res.stderr, res.stdout + res.stderr


async def test_networks_and_volumes_per_node(swarm_cluster: Any) -> None:
    c = swarm_cluster
    nets = c.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    for h in c.hosts:
        assert {f"{h.name}/bridge", f"{h.name}/host", f"{h.name}/none"} <= set(nets), nets
    c.docker("network", "create", "appnet")
    nets = c.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert {f"{h.name}/appnet" for h in c.hosts} <= set(nets), nets
    assert all("appnet" in h.docker("network", "ls").stdout for h in c.hosts)
    c.docker("network", "create", "h2/only2")
    assert "only2" in c.host("h2").docker("network", "ls").stdout
    assert "only2" not in c.host("h1").docker("network", "ls").stdout
    assert json.loads(c.docker("network", "inspect", "h2/only2").stdout)[0]["Name"] == "only2"
    # connect goes to the container's node, where a network of that name exists
    c.docker("run", "-d", "--name", "netc", "-e", "constraint:node==h3", "busybox", "sleep", "300")
    c.docker("network", "connect", "appnet", "netc")
    nets_of = json.loads(c.host("h3").docker("inspect", "netc").stdout)[0]["NetworkSettings"]["Networks"]
    assert "appnet" in nets_of, nets_of
    members = json.loads(c.docker("network", "inspect", "h3/appnet").stdout)[0]["Containers"]
    assert [v["Name"] for v in members.values()] == ["netc"], members
    c.docker("network", "disconnect", "appnet", "netc")
    assert "appnet" not in json.loads(c.host("h3").docker("inspect", "netc").stdout)[0]["NetworkSettings"]["Networks"]
    c.docker("rm", "-f", "netc")
    c.docker("network", "rm", "appnet", "h2/only2")
    assert not any("appnet" in h.docker("network", "ls").stdout for h in c.hosts)

    c.docker("volume", "create", "data")
    c.docker("volume", "create", "h3/logs")
    vols = c.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"h1/data", "h2/data", "h3/data", "h3/logs"} <= set(vols), vols
    assert "h1/logs" not in vols
    c.docker("volume", "rm", "data", "h3/logs")
    # prune on every node: unused volumes and networks go, named NODE/NAME in the answer
    c.docker("volume", "create", "h1/spare")
    c.docker("network", "create", "h2/sparenet")
    assert "h1/spare" in c.docker("volume", "prune", "-f").stdout
    assert "h2/sparenet" in c.docker("network", "prune", "-f").stdout
    assert "spare" not in c.host("h1").docker("volume", "ls").stdout
    assert "sparenet" not in c.host("h2").docker("network", "ls").stdout
    assert not any(v.endswith(("/data", "/logs")) for v in c.docker("volume", "ls", "--format", "{{.Name}}").stdout.split())


async def test_events_merge_every_node_with_its_fields(swarm_cluster: Any) -> None:
    c = swarm_cluster
    since = time.time()
    c.docker("volume", "create", "evvol")
    c.docker("volume", "rm", "evvol")

    def seen() -> list[dict[str, Any]] | None:
        out = c.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                       "--filter", "type=volume", "--format", "{{json .}}").stdout
        docs = [json.loads(line) for line in out.splitlines() if line.strip()]
        nodes = {d["Actor"]["Attributes"].get("node.name") for d in docs if d["Action"] == "create"}
        return docs if nodes >= {h.name for h in c.hosts} else None

    docs = await wait_for("a volume create event from every node", seen)
    by_node = {d["Actor"]["Attributes"]["node.name"]: d for d in docs if d["Action"] == "create"}
    for h in c.hosts:
        attrs = by_node[h.name]["Actor"]["Attributes"]
        assert attrs["node.addr"] == f"{h.address}:2376" and attrs["node.ip"] == h.address and attrs["node.id"]
    only_h2 = c.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter", "node=h2",
                       "--filter", "type=volume", "--format", "{{index .Actor.Attributes \"node.name\"}}").stdout.split()
    assert only_h2 and set(only_h2) == {"h2"}, only_h2
    # the raw stream carries Swarm classic's top-level node object too
    from dockyard.client import Client, DaemonAddress

    client = Client(DaemonAddress.parse(f"unix://{c.manager.socket}"), timeout=30)
    resp = await asyncio.to_thread(client.request, "GET", "/events",
                                   {"since": f"{since:.3f}", "until": f"{time.time():.3f}",
                                    "filters": json.dumps({"type": ["volume"]})})
    raw = [json.loads(line) for line in (await asyncio.to_thread(resp.read)).splitlines() if line.strip()]
    resp.close()
    assert {d["node"]["Name"] for d in raw} >= {h.name for h in c.hosts}
    assert all(d["node"]["Addr"] == d["Actor"]["Attributes"]["node.addr"] for d in raw)


async def test_a_node_down_and_back_in_info_and_events(swarm_cluster: Any) -> None:
    """Last in the module: h3's engine is killed and started again."""
    c = swarm_cluster
    h3 = c.host("h3")
    since = time.time()
    c.kill_engine(h3)
    await wait_for("h3 unhealthy in docker info",
                   lambda: info_nodes(c.docker("info").stdout).get("h3", {}).get("Status") == "Unhealthy")
    assert info_nodes(c.docker("info").stdout)["h1"]["Status"] == "Healthy"
    await c.restart_engine(h3)
    await wait_for("h3 healthy again",
                   lambda: info_nodes(c.docker("info").stdout).get("h3", {}).get("Status") == "Healthy", 15)
    # the relay is back: an event on h3 reaches the manager's stream with h3's fields
    h3.docker("volume", "create", "afterback")

    def node_events() -> list[tuple[str, str]] | None:
        out = c.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                       "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"node.name\"}}").stdout
        rows = [tuple(line.split()) for line in out.splitlines()]
        back = any(r[:2] == ("volume", "create") and r[2] == "afterback" and r[-1] == "h3" for r in rows)
        return rows if back else None

    rows = await wait_for("h3's event relayed after it came back", node_events, 15)
    actions = [r[1] for r in rows if r[0] == "node" and r[2] == "h3"]
    # back within the TTL it reconnects; dropped first (lease expired), it joins as new
    assert "engine_disconnect" in actions and {"engine_reconnect", "engine_connect"} & set(actions), rows
    h3.docker("volume", "rm", "afterback")
