"""Foreign architectures under emulation (issue 19): what qemu-user through binfmt_misc costs.

Startup: ``docker run --rm --platform linux/arm64 busybox true`` → dockyardd (arm64 busybox from
Debian's busybox-static, ``dockyard image bootstrap busybox --platform linux/arm64``) against the
same native, and ``podman run --rm --network none --arch arm64 IMAGE true`` (the same arm64
busybox imported into podman) against podman's native run, in one hyperfine invocation.
CPU-bound: ``sha256sum`` of 64 MiB (``head -c 67108864 /dev/zero | sha256sum`` in the container)
emulated and native, on both engines, in a second invocation (``BENCH_EMU_CPU_RUNS``, 3).

Both engines go through the same binfmt_misc handlers (``F``): the benchmark makes the missing
ones (dockyard-arch-linux's ``binfmt.install``) and removes what it made. Reported, no goal:
the added start-up and the emulated/native slowdown for each engine.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

from harness import Context, Goal, Result, add_ratios, check_command, fill, start_dockyardd, stop_dockyardd

NAME = "emulation"
BUSYBOX_ARM64 = Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox") / "arm64" / "busybox"
PODMAN_IMAGE = "localhost/dockyard-bench-busybox-arm64:latest"
CPU_RUNS = int(os.environ.get("BENCH_EMU_CPU_RUNS", "3"))
SHA = "head -c 67108864 /dev/zero | sha256sum"


def arm64_rootfs_tar() -> bytes:
    """busybox (arm64) with the applets the benchmark runs, as a rootfs tar for ``podman import``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for d in ("bin", "dev", "proc", "sys", "tmp", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = BUSYBOX_ARM64.stat().st_size, 0o755
        with open(BUSYBOX_ARM64, "rb") as f:
            tf.addfile(ti, f)
        for applet in ("sh", "true", "head", "sha256sum", "uname"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(link)
    return buf.getvalue()


def podman_arm64_image(work: Path) -> str:
    """Import the arm64 busybox into podman (once); "" or why not."""
    if subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], capture_output=True).returncode == 0:
        return ""
    tar = work / "busybox-arm64.tar"
    tar.write_bytes(arm64_rootfs_tar())
    proc = subprocess.run(["podman", "import", "--arch", "arm64", "--change", "CMD [\"sh\"]", str(tar), PODMAN_IMAGE],
                          capture_output=True, text=True)
    return "" if proc.returncode == 0 else f"podman import --arch arm64 failed: {proc.stderr.strip()[-200:]}"


def hyperfine(commands: list[tuple[Result, str]], runs: int, warmup: int, out: Path) -> None:
    argv = [shutil.which("hyperfine") or "hyperfine", "--style", "none", "--shell", "none", "--warmup", str(warmup),
            "--runs", str(runs), "--export-json", str(out)]
    for r, cmd in commands:
        argv += ["--command-name", r.name, cmd]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        for r, _cmd in commands:
            r.error = f"hyperfine failed ({res.returncode}): {res.stderr.strip()[-300:]}"
        return
    for (r, _cmd), stats in zip(commands, json.loads(out.read_text())["results"], strict=True):
        fill(r, stats)


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-emulation"
    work.mkdir(parents=True, exist_ok=True)
    docker = shutil.which("docker") or "docker"
    names = ["run arm64 → dockyardd", "run native → dockyardd", "podman run --arch arm64", "podman run native",
             "sha256 64MiB arm64 → dockyardd", "sha256 64MiB native → dockyardd", "podman sha256 64MiB arm64",
             "podman sha256 64MiB native"]
    res = {n: Result(benchmark=NAME + ("_cpu" if "sha256" in n else ""), name=n, command="",
                     role="subject" if "dockyardd" in n and "arm64" in n else "peer") for n in names}
    results = list(res.values())
    why = ("" if BUSYBOX_ARM64.is_file() else f"no arm64 busybox at {BUSYBOX_ARM64} (make install)") or \
        check_command(["hyperfine", "--version"]) or check_command([docker, "--version"])
    if why:
        for r in results:
            r.error = why
        return results
    try:
        from dockyard_arch_linux import binfmt
    except ImportError:
        for r in results:
            r.error = "dockyard-arch-linux is not installed"
        return results
    made: list[str] = []
    proc = None
    try:
        made = binfmt.install(["aarch64"]).made
        if "linux/arm64" not in dict(binfmt.emulated_platforms()):
            raise RuntimeError("no usable arm64 binfmt handler: `dockyard system binfmt status`")
        proc, host = start_dockyardd(ctx, work / "daemon")
        boot = subprocess.run([str(ctx.venv_bin / "dockyard"), "-H", host, "image", "bootstrap", "busybox",
                               "--platform", "linux/arm64"], capture_output=True, text=True)
        if boot.returncode != 0:
            raise RuntimeError(f"bootstrap --platform linux/arm64: {boot.stderr.strip()[-200:]}")
        podman_why = check_command(["podman", "image", "exists", "busybox"]) or podman_arm64_image(work)
        d = f"{docker} -H {host} run --rm"
        p = "podman run --rm --network none"
        sha = shlex.quote(SHA)
        startup = [(res["run arm64 → dockyardd"], f"{d} --platform linux/arm64 busybox true"),
                   (res["run native → dockyardd"], f"{d} busybox true")]
        cpu = [(res["sha256 64MiB arm64 → dockyardd"], f"{d} --platform linux/arm64 busybox sh -c {sha}"),
               (res["sha256 64MiB native → dockyardd"], f"{d} busybox sh -c {sha}")]
        if podman_why:
            for n in names:
                if n.startswith("podman"):
                    res[n].error = podman_why
        else:
            startup += [(res["podman run --arch arm64"], f"{p} --arch arm64 {PODMAN_IMAGE} true"),
                        (res["podman run native"], f"{p} busybox true")]
            cpu += [(res["podman sha256 64MiB arm64"], f"{p} --arch arm64 {PODMAN_IMAGE} sh -c {sha}"),
                    (res["podman sha256 64MiB native"], f"{p} busybox sh -c {sha}")]
        for r, cmd in startup + cpu:
            r.command = cmd
        hyperfine(startup, ctx.runs, ctx.warmup, work / "startup.json")
        hyperfine(cpu, CPU_RUNS, 1, work / "cpu.json")
    except RuntimeError as exc:
        for r in results:
            r.error = r.error or str(exc)
    finally:
        if proc is not None:
            stop_dockyardd(proc, work / "daemon")
        if made:
            binfmt.remove(made)
    add_ratios(results)  # each subject against its native run and podman's two, per benchmark
    pairs = {"run arm64 → dockyardd": ("run native → dockyardd", "podman run --arch arm64", "podman run native"),
             "sha256 64MiB arm64 → dockyardd": ("sha256 64MiB native → dockyardd", "podman sha256 64MiB arm64",
                                               "podman sha256 64MiB native")}
    for subject, (native, peer_emu, peer_native) in pairs.items():
        s = res[subject]
        if s.measured and res[native].measured and res[peer_emu].measured and res[peer_native].measured:
            ours = s.median_ms - res[native].median_ms  # type: ignore[operator]
            theirs = res[peer_emu].median_ms - res[peer_native].median_ms  # type: ignore[operator]
            s.goals.append(Goal("reported: emulation's cost, dockyardd vs podman", None,
                                f"dockyardd {ours:+.0f} ms ({s.ratios[native]:.2f}× native), podman {theirs:+.0f} ms "
                                f"({res[peer_emu].median_ms / res[peer_native].median_ms:.2f}× native)"))
    return results
