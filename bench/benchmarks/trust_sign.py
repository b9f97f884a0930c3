"""Signing an image in a registry: ``dockyard trust sign`` (resolve the digest, decrypt the
cosign key, ECDSA-sign the simple-signing payload, push the payload blob, the config and the
``sha256-<digest>.sig`` manifest) against skopeo, in the same run.

**Subject**: ``dockyard trust sign 127.0.0.1:PORT/busybox:base --key cosign.key`` (a key made by
``dockyard trust key generate``, passphrase from ``COSIGN_PASSWORD``); the ``.sig`` manifest is
deleted after each run, so every run writes a fresh one with one layer.

**Peers**: ``skopeo copy --sign-by-sigstore-private-key cosign.key`` of the same image to
another tag of the same local docker-registry (copies the manifest, whose blobs are already
there, and signs it with the same key file); and, for scale, the same ``skopeo copy`` without
signing. Debian's skopeo 1.9 is built without sigstore ("Debian-local change: sigstore
disabled"): there the signing peer is NOT MEASURED, with that reason.

Goal (issue 18): reported, not checked. ``BENCH_TRUST_RUNS`` runs each (default 5), interleaved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from harness import Context, Result, add_ratios, fill, sample_stats

NAME = "trust_sign"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return time.perf_counter() - t0, proc


def run(ctx: Context) -> list[Result]:
    runs = int(os.environ.get("BENCH_TRUST_RUNS", "5"))
    dockyard = str(ctx.venv_bin / "dockyard")
    subject = Result(benchmark=NAME, name="dockyard trust sign", role="subject",
                     command="dockyard trust sign REG/busybox:base --key cosign.key")
    peer = Result(benchmark=NAME, name="skopeo copy --sign-by-sigstore-private-key", role="peer",
                  command="skopeo copy --sign-by-sigstore-private-key cosign.key docker://REG/busybox:base "
                          "docker://REG/busybox:peer")
    plain = Result(benchmark=NAME, name="skopeo copy (no signature)", role="peer",
                   command="skopeo copy docker://REG/busybox:base docker://REG/busybox:plain")
    results = [subject, peer, plain]
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        for r in results:
            r.error = "docker-registry and skopeo are needed (make install)"
        return results
    work = ctx.work_dir / "bench-trust"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = _free_port()
    host = f"127.0.0.1:{port}"
    (work / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}, "delete": {"enabled": True}},
        "http": {"addr": host, "secret": "bench"}}))
    reg = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    env = {**os.environ, "COSIGN_PASSWORD": "bench"}
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cp = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                             "containers-storage:docker.io/library/busybox:latest",
                             f"docker://{host}/busybox:base"], capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            for r in results:
                r.error = f"no offline busybox to push (tools/setup-peers.sh): {cp.stderr.strip()[-200:]}"
            return results
        gen = subprocess.run([dockyard, "trust", "key", "generate", "--output-key-prefix", str(work / "cosign")],
                             capture_output=True, text=True, env=env, timeout=60)
        if gen.returncode != 0:
            subject.error = f"key generate failed: {gen.stderr.strip()[-300:]}"
            return results
        (work / "pass").write_text("bench")
        (work / "registries.d").mkdir()
        (work / "registries.d" / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
        commands = {
            subject.name: [dockyard, "trust", "sign", f"{host}/busybox:base", "--key", str(work / "cosign.key")],
            peer.name: ["skopeo", "--registries.d", str(work / "registries.d"), "copy", "--src-tls-verify=false",
                        "--dest-tls-verify=false", "--sign-by-sigstore-private-key", str(work / "cosign.key"),
                        "--sign-passphrase-file", str(work / "pass"), f"docker://{host}/busybox:base",
                        f"docker://{host}/busybox:peer"],
            plain.name: ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                         f"docker://{host}/busybox:base", f"docker://{host}/busybox:plain"],
        }
        samples: dict[str, list[float]] = {n: [] for n in commands}
        by_name = {r.name: r for r in results}
        for _ in range(runs):
            for name, argv in commands.items():
                if by_name[name].error:
                    continue
                seconds, proc = _timed(argv, env)
                if proc.returncode != 0:
                    by_name[name].error = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][-300:]
                    ctx.log(f"  {name}: NOT MEASURED: {by_name[name].error}")
                    continue
                samples[name].append(seconds)
                if name == subject.name:
                    _delete_sig(host, proc.stdout)
        for name, secs in samples.items():
            if secs and not by_name[name].error:
                fill(by_name[name], sample_stats(secs))
        add_ratios(results)
        return results
    finally:
        os.kill(reg.pid, signal.SIGTERM)
        reg.wait(15)
        shutil.rmtree(work, ignore_errors=True)


def _delete_sig(host: str, stdout: str) -> None:
    """Delete the ``.sig`` manifest the subject wrote (its digest ends the CLI's output line)."""
    digest = stdout.strip().rsplit(" ", 1)[-1]
    if digest.startswith("sha256:"):
        req = urllib.request.Request(f"http://{host}/v2/busybox/manifests/{digest}", method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback
        except OSError:
            pass
