"""Image load: ``docker load -i X.tar`` of a ~200 MB multi-layer docker-archive into a dockyardd
(through the API, the real docker CLI) against ``podman load -i X.tar`` of the same archive.

Both run in one hyperfine invocation; before every run a ``--prepare`` step removes the image
again (only the benchmark's own tag from the shared podman), so each run is a full load: parse,
verify every digest, unpack every layer. The archive (4 layers of 50 MB of incompressible
files) is generated once in the work directory; the daemon gets its own data root there.

Goal (issue 4): dockyard's load ≤ 1.0× podman's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from harness import (
    Context,
    Goal,
    Result,
    add_ratios,
    check_command,
    hyperfine_prepared,
    start_dockyardd,
    stop_dockyardd,
)

NAME = "image_load"
TAG = "dockyard-bench/imgload:1"
PODMAN_TAG = f"localhost/{TAG}"
LAYERS = 4
FILES_PER_LAYER = 25
FILE_SIZE = 2 << 20  # 4 x 25 x 2 MB = 200 MB
MAX_RATIO = 1.0


def _layer(index: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        d = tarfile.TarInfo(f"layer{index}")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tf.addfile(d)
        for i in range(FILES_PER_LAYER):
            ti = tarfile.TarInfo(f"layer{index}/file{i:03d}.bin")
            ti.size = FILE_SIZE
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(os.urandom(FILE_SIZE)))
    return buf.getvalue()


def make_archive(path: Path) -> Path:
    """A docker-archive of a ~200 MB image with LAYERS layers (made once, reused)."""
    if path.exists():
        return path
    layers = [_layer(i) for i in range(LAYERS)]
    diff_ids = ["sha256:" + hashlib.sha256(lay).hexdigest() for lay in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                                     for i in range(LAYERS)]}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": cname, "RepoTags": [TAG], "Layers": names}]).encode()
    tmp = path.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tf:
        for name, data in [(cname, config), *zip(names, layers, strict=True), ("manifest.json", manifest)]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    os.replace(tmp, path)
    return path


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-image-load"
    work.mkdir(parents=True, exist_ok=True)
    archive = make_archive(work / "image-200mb.tar")
    size_mb = archive.stat().st_size / 1e6
    ctx.log(f"  archive: {archive} ({size_mb:.0f} MB, {LAYERS} layers)")
    docker = shutil.which("docker") or "docker"
    subject = Result(benchmark=NAME, name="docker load → dockyardd", command="")
    peer = Result(benchmark=NAME, name="podman load", role="peer",
                  command=f"podman load -q -i {archive}")
    results = [subject, peer]
    for r, argv in ((subject, [docker, "--version"]), (peer, ["podman", "--version"])):
        why = check_command(argv)
        if why:
            r.error = why
    if shutil.which("hyperfine") is None:
        subject.error = peer.error = "hyperfine is not installed"
        return results
    proc = None
    try:
        if not subject.error:
            try:
                proc, host = start_dockyardd(ctx, work / "daemon", busybox=False)
            except RuntimeError as exc:
                subject.error = str(exc)
        commands: list[tuple[Result, str, str]] = []
        if not subject.error:
            subject.command = f"{docker} -H {host} load -q -i {archive}"
            commands.append((subject, subject.command,
                             f"sh -c '{docker} -H {host} rmi -f {TAG} >/dev/null 2>&1; true'"))
        if not peer.error:
            commands.append((peer, peer.command, f"sh -c 'podman rmi -f {PODMAN_TAG} >/dev/null 2>&1; true'"))
        if commands:
            hyperfine_prepared(ctx, commands, work / "hyperfine.json")
    finally:
        subprocess.run(["podman", "rmi", "-f", PODMAN_TAG], capture_output=True)
        if proc is not None:
            stop_dockyardd(proc, work / "daemon")
    add_ratios(results)
    ratio = subject.ratios.get(peer.name)
    subject.goals = [Goal(f"load of a {size_mb:.0f} MB, {LAYERS}-layer archive ≤ {MAX_RATIO:.1f}× `podman load`",
                          None if ratio is None else ratio <= MAX_RATIO,
                          "" if ratio is None else f"{ratio:.2f}×")]
    return results

