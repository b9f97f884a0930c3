"""HookRecorder and the host snapshot, used directly (the fixtures are tested in
test_pytest_plugin.py through a throwaway pytest run)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dockyard.kernel import new_plugin_manager
from dockyard.specs import hookimpl
from dockyard.specs.cluster import SchedulerFilter
from dockyard_plugin_sdk.testing import (
    HookRecorder,
    HostSnapshot,
    Owners,
    WaitTimeout,
    dockyard_named,
    owner_of_data_root,
    snapshot_host,
    wait_for,
    wait_for_exit,
    wait_for_no_leaks,
)


class FilterPlugin:
    @hookimpl
    def dockyard_scheduler_filters(self, kernel):
        return [SchedulerFilter("health", lambda req, nodes: nodes)]


class Boom:
    @hookimpl
    def dockyard_event(self, kernel, event):
        raise RuntimeError("boom")


# ---------------------------------------------------------------------------------- recorder
def test_recorder_keeps_calls_kwargs_plugins_and_results() -> None:
    pm = new_plugin_manager()
    pm.register(FilterPlugin(), name="filters")
    kernel = object()
    with HookRecorder(pm) as rec:
        results = pm.hook.dockyard_scheduler_filters(kernel=kernel)
    [call] = rec.calls("dockyard_scheduler_filters")
    assert call.kwargs == {"kernel": kernel} and call.kernel is kernel
    assert call.plugins == ["filters"]
    assert call.finished and call.result == results and call.result[0][0].name == "health"
    assert rec.names() == ["dockyard_scheduler_filters"]


def test_assert_called_matches_kwargs_and_explains_a_miss() -> None:
    pm = new_plugin_manager()
    rec = HookRecorder(pm)
    pm.hook.dockyard_engine_flags(kernel="k1", host="h1")
    pm.hook.dockyard_engine_flags(kernel="k1", host="h2")
    assert rec.assert_called("dockyard_engine_flags", host="h2").kwargs["host"] == "h2"
    rec.assert_called("dockyard_engine_flags")
    with pytest.raises(AssertionError, match=r"dockyard_engine_flags\(host='h3'\) was not called") as exc:
        rec.assert_called("dockyard_engine_flags", host="h3")
    assert "host='h1'" in str(exc.value) and "host='h2'" in str(exc.value)
    with pytest.raises(AssertionError, match="no calls"):
        rec.assert_called("dockyard_dns_records")
    with pytest.raises(AssertionError, match="called 2 time"):
        rec.assert_not_called("dockyard_engine_flags")
    rec.assert_not_called("dockyard_dns_records")


def test_misspelt_hook_name_is_an_error() -> None:
    rec = HookRecorder(new_plugin_manager())
    with pytest.raises(ValueError, match="no hook named 'dockyard_scheduler_filter'"):
        rec.calls("dockyard_scheduler_filter")


def test_recorder_keeps_the_exception_of_a_failed_call() -> None:
    pm = new_plugin_manager()
    pm.register(Boom(), name="boom")
    rec = HookRecorder(pm)
    with pytest.raises(RuntimeError):
        pm.hook.dockyard_event(kernel=None, event="e")
    [call] = rec.calls("dockyard_event")
    assert isinstance(call.exception, RuntimeError) and call.result is None and call.finished


def test_finish_recording_stops_recording() -> None:
    pm = new_plugin_manager()
    rec = HookRecorder(pm)
    pm.hook.dockyard_engine_flags(kernel=None, host="a")
    rec.finish_recording()
    rec.finish_recording()
    pm.hook.dockyard_engine_flags(kernel=None, host="b")
    assert [c.kwargs["host"] for c in rec.calls("dockyard_engine_flags")] == ["a"]


def test_nested_calls_get_their_own_results() -> None:
    pm = new_plugin_manager()

    class Outer:
        @hookimpl
        def dockyard_engine_flags(self, kernel, host):
            inner = pm.hook.dockyard_dns_records(kernel=kernel, network="n")
            return [f"--inner={len(inner)}"]

    class Inner:
        @hookimpl
        def dockyard_dns_records(self, kernel, network):
            return {"a": ["192.0.2.1"]}

    pm.register(Outer(), name="outer")
    pm.register(Inner(), name="inner")
    rec = HookRecorder(pm)
    pm.hook.dockyard_engine_flags(kernel=None, host="h")
    assert rec.names() == ["dockyard_engine_flags", "dockyard_dns_records"]
    assert rec.calls("dockyard_engine_flags")[0].result == [["--inner=1"]]
    assert rec.calls("dockyard_dns_records")[0].result == [{"a": ["192.0.2.1"]}]


# ---------------------------------------------------------------------------------- snapshot
MOUNTINFO = """\
22 1 0:21 / / rw,relatime - overlay overlay rw
44 22 0:40 / /tmp/dy\\040data rw,relatime - tmpfs none rw
45 22 0:41 / /var/lib/dockyard/overlay/x/merged rw - overlay overlay rw,lowerdir=a
"""


def fake_host(root: Path, links=("lo", "eth0"), netns=(), cgroups=(), mounts=MOUNTINFO) -> dict:
    (root / "proc" / "self").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "self" / "mountinfo").write_text(mounts)
    net = root / "net"
    shutil.rmtree(net, ignore_errors=True)
    net.mkdir()
    for name in links:
        (net / name).mkdir()
    ns = root / "netns"
    shutil.rmtree(ns, ignore_errors=True)
    ns.mkdir()
    for name in netns:
        (ns / name).touch()
    cg = root / "cgroup"
    for path in cgroups:
        (cg / path).mkdir(parents=True, exist_ok=True)
    cg.mkdir(exist_ok=True)
    return dict(proc=root / "proc", sys_net=net, netns_dir=ns, cgroup_root=cg, nft=False, pid=-1)


def test_snapshot_reads_each_source(tmp_path: Path) -> None:
    snap = snapshot_host(**fake_host(tmp_path, netns=("dyns1",), cgroups=("pids/dockyard/c1",)))
    assert snap.links == {"lo", "eth0"} and snap.netns == {"dyns1"}
    assert "/tmp/dy data (tmpfs none)" in snap.mounts
    assert "/var/lib/dockyard/overlay/x/merged (overlay overlay)" in snap.mounts
    cg = tmp_path / "cgroup"
    assert snap.cgroups == {str(cg / "pids"), str(cg / "pids/dockyard"), str(cg / "pids/dockyard/c1")}
    assert snap.processes == frozenset() and snap.notes == ()


def test_difference_names_only_what_is_new(tmp_path: Path) -> None:
    before = snapshot_host(**fake_host(tmp_path, cgroups=("pids",)))
    after = snapshot_host(**fake_host(tmp_path, links=("lo", "eth0", "dybr1", "veth9"),
                                      netns=("dyns",), cgroups=("pids/dy1",),
                                      mounts=MOUNTINFO + "46 22 0:42 / /mnt/x rw - tmpfs t rw\n"))
    leaks = after - before
    assert leaks.items["links"] == ["dybr1", "veth9"]
    assert leaks.items["netns"] == ["dyns"]
    assert leaks.items["mounts"] == ["/mnt/x (tmpfs t)"]
    assert leaks.items["cgroups"] == [str(tmp_path / "cgroup/pids/dy1")]
    text = leaks.describe()
    assert "links: dybr1" in text and "netns: dyns" in text and "mounts: /mnt/x" in text
    assert not (before - after) and not (before - before)


def test_dockyard_named_filter() -> None:
    snap = HostSnapshot(
        mounts=frozenset({"/ (overlay overlay)", "/var/lib/dockyard/x (overlay o)", "/mnt/dyroot (tmpfs t)",
                          "/home/dylan-not-ours/a (tmpfs t)"}),
        links=frozenset({"eth0", "dybr0", "dockyard0", "ydy"}),
        netns=frozenset({"dyns", "other"}),
        cgroups=frozenset({"/sys/fs/cgroup/pids/user", "/sys/fs/cgroup/pids/dockyard/c1"}),
        nft_tables=frozenset({"inet filter", "inet dy1234ab", "ip dockyard"}),
        processes=frozenset({"12 dyd"}))
    kept = snap.filter(dockyard_named)
    assert kept.links == {"dybr0", "dockyard0"}
    assert kept.netns == {"dyns"}
    assert kept.cgroups == {"/sys/fs/cgroup/pids/dockyard/c1"}
    assert kept.nft_tables == {"inet dy1234ab", "ip dockyard"}
    assert kept.processes == frozenset()
    # "dy" prefix of any path component: /home/dylan... matches too (a documented over-match)
    assert kept.mounts == {"/var/lib/dockyard/x (overlay o)", "/mnt/dyroot (tmpfs t)",
                           "/home/dylan-not-ours/a (tmpfs t)"}


def test_owners_keep_only_their_tokens_roots_and_processes(tmp_path: Path) -> None:
    # a child whose command line names our root (as a daemon's or a conmon's does), and one not
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"{tmp_path}/d/run/conmon"])
    other = subprocess.Popen(["sleep", "31"])
    try:
        wait_for(lambda: f"{tmp_path}/d/run".encode() in Path(f"/proc/{ours.pid}/cmdline").read_bytes(), 10,
                 f"{ours.pid} to exec")
        _owners_filter(tmp_path, ours.pid, other.pid)
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def _owners_filter(tmp_path: Path, ours: int, other_pid: int) -> None:
    owners = Owners()
    token = owners.record_data_root(tmp_path / "d" / "data", tmp_path / "d")
    assert token == owner_of_data_root(tmp_path / "d" / "data") and token.startswith("dy") and len(token) == 8
    other = owner_of_data_root(tmp_path / "elsewhere" / "data")
    snap = HostSnapshot(
        mounts=frozenset({f"{tmp_path}/d/data/overlay/x/merged (overlay overlay)",
                          f"{tmp_path}/d/run/netns/abc (nsfs nsfs)",
                          f"/var/lib/other/merged (overlay dockyard-{token})",
                          f"{tmp_path}/dd/data (tmpfs none)",
                          f"/var/lib/dockyard/{other}/m (overlay dockyard-{other})"}),
        links=frozenset({f"{token}-0123456", f"{token}v89abcd", f"{other}-0123456", "dybr0", "eth0"}),
        netns=frozenset({f"{token}-ns1", f"{other}-ns1"}),
        cgroups=frozenset({f"/sys/fs/cgroup/pids/dockyard-{token}-c1", f"/sys/fs/cgroup/pids/dockyard-{other}-c1"}),
        nft_tables=frozenset({f"ip dockyard-{token}", f"ip dockyard-{other}", "inet filter"}),
        processes=frozenset({f"{ours} python3", f"{other_pid} sleep"}))
    kept = snap.filter(owners.owns)
    assert kept.mounts == {f"{tmp_path}/d/data/overlay/x/merged (overlay overlay)",
                           f"{tmp_path}/d/run/netns/abc (nsfs nsfs)",
                           f"/var/lib/other/merged (overlay dockyard-{token})"}
    assert kept.links == {f"{token}-0123456", f"{token}v89abcd"}
    assert kept.netns == {f"{token}-ns1"}
    assert kept.cgroups == {f"/sys/fs/cgroup/pids/dockyard-{token}-c1"}
    assert kept.nft_tables == {f"ip dockyard-{token}"}
    # a child process is an owner's when its command line names a root or token (a daemon, its
    # conmons), not any child (an orphan a subreaper adopted); a single test counts every child
    assert kept.processes == {f"{ours} python3"}
    assert snap.filter(owners.owns_or_child).processes == snap.processes
    assert snap.filter(owners.owns_or_child).links == kept.links
    # nothing recorded: nothing is ours
    assert Owners().owns("links", f"{token}-0123456") is False
    with pytest.raises(ValueError):
        Owners().record("")


def test_unreadable_source_becomes_a_note(tmp_path: Path) -> None:
    args = fake_host(tmp_path)
    args["sys_net"] = tmp_path / "mountinfo-is-a-file"
    args["sys_net"].write_text("x")
    snap = snapshot_host(**args)
    assert snap.links == frozenset() and any(n.startswith("links:") for n in snap.notes)


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_child_processes_are_seen_and_reaped_ones_are_not() -> None:
    before = snapshot_host(nft=False)
    child = subprocess.Popen(["sleep", "30"])
    try:
        # until it has exec'd, the forked child is still named after the test's interpreter
        wait_for(lambda: _comm(child.pid) == "sleep", 10, f"child {child.pid} to exec sleep")
        leaks = snapshot_host(nft=False) - before
        assert f"{child.pid} sleep" in leaks.items["processes"]
    finally:
        child.kill()
        child.wait()
    # processes only: other work on this host may make links or mounts meanwhile
    assert not wait_for_no_leaks(before, timeout=2, snapshot=lambda: snapshot_host(nft=False),
                                 keep=lambda category, _item: category == "processes")


def test_grandchildren_and_zombies_count() -> None:
    before = snapshot_host(nft=False)
    child = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    try:
        wait_for(lambda: _comm(grandchild) == "sleep", 10, f"grandchild {grandchild} to exec sleep")
        procs = (snapshot_host(nft=False) - before).items["processes"]
        assert f"{child.pid} sh" in procs and f"{grandchild} sleep" in procs, procs
    finally:
        os.kill(grandchild, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        procs = (snapshot_host(nft=False) - before).items["processes"]
        assert any(p.startswith(f"{zombie.pid} ") and p.endswith(" <defunct>") for p in procs), procs
    finally:
        zombie.wait()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot create a real kernel object here ({' '.join(cmd)}): {proc.stderr.strip()}")


def test_real_kernel_objects_are_seen(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to create real links, netns and mounts")
    tag = "dy" + uuid.uuid4().hex[:6]
    mnt = tmp_path / tag
    mnt.mkdir()
    cg = Path("/sys/fs/cgroup/pids") if Path("/sys/fs/cgroup/pids").is_dir() else Path("/sys/fs/cgroup")
    before = snapshot_host()
    created: list[list[str]] = []
    try:
        _run(["ip", "link", "add", tag + "a", "type", "veth", "peer", "name", tag + "b"])
        created.append(["ip", "link", "del", tag + "a"])
        _run(["ip", "netns", "add", tag])
        created.append(["ip", "netns", "del", tag])
        _run(["mount", "-t", "tmpfs", "none", str(mnt)])
        created.append(["umount", str(mnt)])
        (cg / tag).mkdir()
        created.append(["rmdir", str(cg / tag)])
        if shutil.which("nft"):
            _run(["nft", "add", "table", "inet", tag])
            created.append(["nft", "delete", "table", "inet", tag])
        leaks = (snapshot_host() - before).items
        assert {tag + "a", tag + "b"} <= set(leaks["links"])
        assert tag in leaks["netns"]
        assert any(m.startswith(f"{mnt} (tmpfs") for m in leaks["mounts"])
        assert str(cg / tag) in leaks["cgroups"]
        if shutil.which("nft"):
            assert f"inet {tag}" in leaks["nft_tables"]
        ours = snapshot_host().filter(dockyard_named)
        assert tag + "a" in ours.links and tag in ours.netns and str(cg / tag) in ours.cgroups
    finally:
        for cmd in reversed(created):
            subprocess.run(cmd, capture_output=True)
    after = (snapshot_host() - before).items
    assert not any(tag in item for items in after.values() for item in items), after


# ---------------------------------------------------------------------------------- waiting
def test_wait_for_returns_the_value_once_true() -> None:
    calls = iter([0, None, [], "ready"])
    assert wait_for(lambda: next(calls), 5, "the fourth call") == "ready"


def test_wait_for_names_what_it_waited_for_and_the_last_value() -> None:
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"timed out after 0.2s waiting for the moon \(last: \[\]\)"):
        wait_for(lambda: [], 0.2, "the moon")
    assert 0.2 <= time.monotonic() - t0 < 1.5
    with pytest.raises(AssertionError, match=r"waiting for the condition at test_testing.py:\d+"):
        wait_for(lambda: False, 0.05)


def test_wait_for_ignores_only_the_listed_exceptions() -> None:
    attempts = []

    def refuses_twice() -> bool:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")
        return True

    assert wait_for(refuses_twice, 5, "a server", ignore=(OSError,)) is True
    with pytest.raises(ZeroDivisionError):
        wait_for(lambda: 1 / 0, 5, "a bug", ignore=(OSError,))
    with pytest.raises(WaitTimeout, match="not yet"):
        wait_for(lambda: (_ for _ in ()).throw(ConnectionRefusedError("not yet")), 0.1, "x", ignore=(OSError,))


async def test_async_wait_for_takes_plain_and_async_predicates() -> None:
    from dockyard_plugin_sdk.testing import async_wait_for

    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)

    async def is_set() -> bool:
        return flag.is_set()

    assert await async_wait_for(is_set, 5, "the flag") is True
    assert await async_wait_for(lambda: 7, 5, "seven") == 7
    with pytest.raises(WaitTimeout, match="waiting for never"):
        await async_wait_for(lambda: None, 0.1, "never")


def test_stays_fails_as_soon_as_the_condition_breaks() -> None:
    from dockyard_plugin_sdk.testing import stays

    stays(lambda: True, 0.1, "true")
    values = iter([True, True, False, True])
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="no longer true within 5s: the light is on"):
        stays(lambda: next(values), 5, "the light is on", interval=0.01)
    assert time.monotonic() - t0 < 1


def test_wait_for_exit_of_a_process_that_is_not_our_child() -> None:
    from dockyard_plugin_sdk.testing import async_wait_for_exit

    # sh's background child exits; the exec'd sleep never reaps it (a zombie); killing the parent ends all
    parent = subprocess.Popen(["sh", "-c", "sleep 0.3 & echo $!; exec sleep 30"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(parent.stdout.readline())
        with pytest.raises(WaitTimeout, match=f"process {grandchild} to exit"):
            wait_for_exit(grandchild, 0.05)
        t0 = time.monotonic()
        wait_for_exit(grandchild, 10)  # a zombie of sh's counts: it has exited
        assert time.monotonic() - t0 < 5
        wait_for_exit(grandchild, 0.01)
        asyncio.run(async_wait_for_exit(grandchild, 1))
        asyncio.run(async_wait_for_exit(parent.pid + 10_000_000, 1))  # no such process: exited
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def test_binfmt_entries_are_a_leak_category_held_ones_excepted(tmp_path: Path, monkeypatch) -> None:
    """A ``dockyard-qemu-*`` handler that appeared and is still there is a session's leak unless a
    live test session holds it (:mod:`dockyard_plugin_sdk.testing.binfmt`); others' are not ours."""
    import json
    import os

    from dockyard_plugin_sdk.testing import binfmt as hold

    args = fake_host(tmp_path)
    misc = tmp_path / "proc" / "sys" / "fs" / "binfmt_misc"
    misc.mkdir(parents=True)
    for name in ("register", "status", "qemu-arm"):
        (misc / name).write_text("")
    before = snapshot_host(**args)
    (misc / "dockyard-qemu-aarch64").write_text("")
    leaks = snapshot_host(**args) - before
    assert leaks.items["binfmt"] == ["dockyard-qemu-aarch64"]
    monkeypatch.setattr(hold, "HOLDERS", tmp_path / "holders")
    monkeypatch.setattr(hold, "MISC", misc)
    owners = Owners()
    assert owners.owns("binfmt", "dockyard-qemu-aarch64") and not owners.owns("binfmt", "qemu-arm")
    (tmp_path / "holders").mkdir()
    (tmp_path / "holders" / "1.json").write_text(json.dumps({"pid": os.getpid(), "made": ["dockyard-qemu-aarch64"]}))
    assert not owners.owns("binfmt", "dockyard-qemu-aarch64")  # held by a live session
