"""The cgroup v2 code path, on a host that is hybrid: a private mount namespace gets a
cgroup2-only mount over /sys/fs/cgroup, so the driver (and crun/runc) see a unified layout.

What this proves: layout detection, the container's v2 directory, cgroup.procs (top),
cgroup.freeze (pause/resume through the runtime), cpu.stat (stats) and cleanup. What it cannot:
memory/pids/cpu limits, because on this host those controllers are bound to v1 hierarchies and
the v2 root offers none of them (its cgroup.controllers is empty).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import NEEDS_HOST

pytestmark = [NEEDS_HOST, pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1)")]

SCRIPT = textwrap.dedent("""
    import asyncio, json, os, signal, subprocess, sys
    from pathlib import Path
    from dockyard_plugin_sdk.conformance.arch import busybox_rootfs, make_runtime_context, make_request
    from dockyard_arch_linux.driver import LinuxRuntime
    from dockyard_plugin_sdk.testing import async_wait_for

    async def two_or_more(d, cid):
        top = await d.top(cid)
        return top if len(top) >= 2 else None

    async def main(base, owner, runtime):
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"], check=True)
        base = Path(base)
        root = busybox_rootfs(base / "rootfs")
        d = LinuxRuntime(make_runtime_context(base, owner))
        await d.setup()
        out = {"layout": d.layout.name}
        r = make_request(root, ["sh", "-c", "sleep 60 & while true; do sleep 0.1; done"], runtime=runtime)
        cid = r.container.id
        try:
            await d.create(r)
            out["pid"] = (await d.start(cid)).pid
            out["top"] = await async_wait_for(lambda: two_or_more(d, cid), 5, "two processes in top")
            cg = await d.cgroup(cid)
            out["cgdir"] = cg.dir("")
            await d.pause(cid)
            out["paused"] = (await d.state(cid)).status
            out["frozen"] = cg.frozen()
            await d.resume(cid)
            out["thawed"] = not cg.frozen()
            out["stats"] = await d.stats(cid)
            await d.kill(cid, signal.SIGKILL)
            out["exit"] = (await d.wait(cid)).exit_code
        finally:
            await d.delete(cid, force=True)
        out["left"] = os.path.exists(out.get("cgdir") or "/nonexistent")
        print(json.dumps(out))

    asyncio.run(main(*sys.argv[1:]))
""")


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_v2_layout_in_a_private_mount_namespace(runtime, base_dir, owner):
    if not shutil.which(runtime):
        pytest.skip(f"{runtime} is not installed")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", SCRIPT,
                           str(base_dir), owner, runtime], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["layout"] == "v2"
    assert out["cgdir"].startswith("/sys/fs/cgroup/dockyard-" + owner)
    assert out["pid"] in out["top"] and len(out["top"]) >= 2
    assert out["paused"] == "paused" and out["frozen"] and out["thawed"]
    assert out["stats"]["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert out["exit"] == 137 and not out["left"]
    # the same v2 hierarchy is the host's /sys/fs/cgroup/unified: nothing may remain there
    unified = "/sys/fs/cgroup/unified"
    if os.path.isdir(unified):
        assert not [d for d in os.listdir(unified) if owner in d]
