"""Registry push and pull of a ~200 MB, 4-layer image: ``dockyard push|pull`` through a real
dockyardd against ``skopeo copy`` of the same image, to the same local docker-registry, in the
same run (runs alternate between subject and peer).

- push: the registry is emptied before every run, and dockyard's compressed-layer cache too,
  so both compress and upload every layer (skopeo from a docker-archive of the same image);
- pull: the registry holds the image (pushed by skopeo); dockyard's copy is removed before
  every run, so both download, verify, decompress and unpack every layer (skopeo into a private
  containers-storage with the same layer driver family, overlay).

Goal (issue 7): throughput ≥ 1.0× skopeo's, i.e. time ratio ≤ 1.0. Figures are wall-clock
medians of ``DOCKYARD_BENCH_REGISTRY_RUNS`` runs (default 5; 200 MB per run).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness import Context, Goal, Result

NAME = "registry"
MB = 1_000_000
#: (megabytes, kind) of each layer, bottom first: ~200 MB in all.
LAYERS = ((70, "random"), (60, "text"), (40, "mixed"), (30, "random"))


def _layer_bytes(size_mb: int, kind: str, seed: int) -> bytes:
    n = size_mb * MB
    if kind == "random":
        return os.urandom(n)
    if kind == "text":
        line = b"".join(b"line %08d of layer %d: the quick brown fox jumps over the lazy dog\n" % (i, seed)
                        for i in range(2000))
        return (line * (n // len(line) + 1))[:n]
    half = os.urandom(n // 2)
    return half + bytes(n - len(half))


def make_archive(path: Path) -> int:
    """A docker-archive (``docker save`` layout) of the benchmark image; returns its size."""
    layers, diff_ids = [], []
    for i, (mb, kind) in enumerate(LAYERS):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = _layer_bytes(mb, kind, i)
            ti = tarfile.TarInfo(f"data/layer{i}.bin")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        tar = buf.getvalue()
        layers.append(tar)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"bench layer {i}"} for i in range(len(layers))]}).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(path, "w") as out:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
        add(cfg_name, config)
        names = []
        for i, tar in enumerate(layers):
            names.append(f"l{i}/layer.tar")
            add(names[-1], tar)
        add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["bench/registry:1"],
                                          "Layers": names}]).encode())
    return sum(len(t) for t in layers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(json.dumps({
            "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "bench"}}))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait_tcp(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self.start()


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Daemon:
    def __init__(self, ctx: Context, root: Path) -> None:
        self.root = root
        self.sock = root / "run" / "dockyard.sock"
        self.host = f"unix://{self.sock}"
        root.mkdir(parents=True, exist_ok=True)
        log = open(root / "daemon.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen([str(ctx.python), "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                                      "--exec-root", str(root / "run"), "-H", self.host],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockyardd did not start:\n" + (root / "daemon.log").read_text()[-2000:])
            time.sleep(0.05)
        time.sleep(0.2)

    def client(self):  # noqa: ANN201
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "core" / "src"))
        from dockyard.client import Client

        return Client(self.host, timeout=600)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}")
    return elapsed * 1000.0


def _fill(r: Result, times: list[float]) -> Result:
    r.median_ms = statistics.median(times)
    r.mean_ms = statistics.fmean(times)
    r.stddev_ms = statistics.stdev(times) if len(times) > 1 else 0.0
    r.min_ms, r.max_ms, r.runs = min(times), max(times), len(times)
    return r


def _goal(subject: Result, peer: Result, size: int, what: str) -> None:
    if not (subject.measured and peer.measured):
        subject.goals = [Goal(f"{what}: throughput ≥ 1.0× skopeo's", None)]
        return
    ratio = peer.median_ms / subject.median_ms  # throughput ratio
    mbps = size / MB / (subject.median_ms / 1000.0)
    peer_mbps = size / MB / (peer.median_ms / 1000.0)
    subject.goals = [Goal(f"{what}: throughput ≥ 1.0× skopeo's", ratio >= 1.0,
                          f"{ratio:.2f}× ({mbps:.0f} MB/s vs {peer_mbps:.0f} MB/s, {size / MB:.0f} MB)")]


def run(ctx: Context) -> list[Result]:
    dockyard = str(ctx.venv_bin / "dockyard")
    runs = int(os.environ.get("DOCKYARD_BENCH_REGISTRY_RUNS", "5"))
    push_s = Result(benchmark="registry push", name="dockyard push", command=f"{dockyard} push REG/bench:1")
    push_p = Result(benchmark="registry push", name="skopeo copy docker-archive: → docker://", role="peer",
                    command="skopeo copy docker-archive:bench.tar docker://REG/bench:1")
    pull_s = Result(benchmark="registry pull", name="dockyard pull", command=f"{dockyard} pull REG/bench:1")
    pull_p = Result(benchmark="registry pull", name="skopeo copy docker:// → containers-storage:", role="peer",
                    command="skopeo copy docker://REG/bench:1 containers-storage:[overlay@ROOT+RUN]bench:1")
    results = [push_s, push_p, pull_s, pull_p]
    missing = [t for t in ("docker-registry", "skopeo") if shutil.which(t) is None]
    if missing or not Path(dockyard).exists():
        why = f"not installed: {', '.join(missing) or dockyard}"
        for r in results:
            r.error = why
        return results
    work = ctx.work_dir / "registry-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    archive = work / "bench.tar"
    size = make_archive(archive)
    ctx.log(f"  image: {size / MB:.0f} MB in {len(LAYERS)} layers; {runs} runs each")
    reg = LocalRegistry(work / "registry")
    reg.start()
    daemon = Daemon(ctx, work / "dockyardd")
    cs_root, cs_run = work / "cs-root", work / "cs-run"
    try:
        client = daemon.client()
        with open(archive, "rb") as f:
            client.request("POST", "/images/load", {"quiet": "1"}, body=f.read(), timeout=600).read()
        name = f"{reg.host}/bench/registry:1"
        client.request("POST", "/images/bench/registry:1/tag", {"repo": f"{reg.host}/bench/registry", "tag": "1"})
        data_root = daemon.root / "data"
        env = {**os.environ, "DOCKYARD_CONFIG": str(work / "dycfg")}
        times: dict[str, list[float]] = {r.name: [] for r in results}

        def measure(r: Result, fn) -> None:  # noqa: ANN001
            if r.error:
                return
            try:
                times[r.name].append(fn())
            except Exception as exc:  # noqa: BLE001 - reported as NOT MEASURED
                r.error = str(exc)

        def dockyard_push() -> float:
            reg.wipe()
            shutil.rmtree(data_root / "distribution" / "compressed", ignore_errors=True)
            (data_root / "distribution" / "v2metadata.json").unlink(missing_ok=True)
            return _timed([dockyard, "-H", daemon.host, "push", "-q", name], env)

        def skopeo_push() -> float:
            reg.wipe()
            return _timed(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}",
                           f"docker://{name}"])

        for _ in range(runs):
            measure(push_s, dockyard_push)
            measure(push_p, skopeo_push)
        # pull: the image as skopeo pushed it
        reg.wipe()
        _timed(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{name}"])
        image_id = client.get(f"/images/{name}/json")["Id"]

        def remove_image() -> None:
            # by ID: every tag goes, and the image's layers are collected
            with contextlib.suppress(Exception):
                client.request("DELETE", f"/images/{image_id}", {"force": "1"}).read()
            left = [i for i in client.get("/images/json", all="1") or [] if i.get("Id") == image_id]
            if left:
                raise RuntimeError(f"image {image_id} is still there after rmi")

        remove_image()

        def dockyard_pull() -> float:
            remove_image()
            return _timed([dockyard, "-H", daemon.host, "pull", "-q", name], env)

        def skopeo_pull() -> float:
            shutil.rmtree(cs_root, ignore_errors=True)
            shutil.rmtree(cs_run, ignore_errors=True)
            return _timed(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{name}",
                           f"containers-storage:[overlay@{cs_root}+{cs_run}]bench/registry:1"])

        for _ in range(runs):
            measure(pull_s, dockyard_pull)
            measure(pull_p, skopeo_pull)
        for r in results:
            if not r.error and times[r.name]:
                _fill(r, times[r.name])
    finally:
        daemon.stop()
        reg.stop()
        subprocess.run(["umount", "-R", str(cs_root / "overlay")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    _goal(push_s, push_p, size, "push")
    _goal(pull_s, pull_p, size, "pull")
    return results
