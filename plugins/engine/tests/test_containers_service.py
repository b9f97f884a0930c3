"""The container service: pure rules (restart policy, health, signals, merging, ps, timestamps)
and real containers through a kernel with every core service (root, conmon and crun needed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Config
from dockyard.errors import Conflict, InvalidArgument, NotFound, NotModified
from dockyard.kernel import Kernel
from dockyard.model import (
    ContainerConfig,
    ContainerStatus,
    Health,
    Healthcheck,
    HealthLogEntry,
    HostConfig,
    RestartPolicy,
)
from dockyard.services.containers import ContainerCreate, LogOptions
from dockyard.services.images import chain_ids
from dockyard.specs import hookimpl
from dockyard_engine import container_fs as cfs
from dockyard_engine import health as healthmod
from dockyard_engine import restart as policy
from dockyard_engine.containers import merge_env, parse_signal
from dockyard_plugin_sdk.testing import async_wait_for, async_wait_for_exit

# ============================================================================ pure rules


def test_restart_policy_rules() -> None:
    on_failure = RestartPolicy("on-failure", 2)
    assert policy.should_restart(on_failure, 1, 0, False)
    assert policy.should_restart(on_failure, 1, 1, False)
    assert not policy.should_restart(on_failure, 1, 2, False)  # the limit
    assert not policy.should_restart(on_failure, 0, 0, False)  # success
    assert policy.should_restart(RestartPolicy("on-failure"), 1, 99, False)  # no limit
    assert policy.should_restart(RestartPolicy("always"), 0, 5, False)
    assert not policy.should_restart(RestartPolicy("always"), 0, 5, True)  # manual stop
    assert not policy.should_restart(RestartPolicy("no"), 1, 0, False)
    assert policy.restart_at_daemon_start(RestartPolicy("always"), True)
    assert not policy.restart_at_daemon_start(RestartPolicy("unless-stopped"), True)
    assert policy.restart_at_daemon_start(RestartPolicy("unless-stopped"), False)
    assert not policy.restart_at_daemon_start(RestartPolicy("on-failure"), False)
    with pytest.raises(InvalidArgument):
        policy.validate(RestartPolicy("sometimes"))
    with pytest.raises(InvalidArgument):
        policy.validate(RestartPolicy("always", 3))
    with pytest.raises(InvalidArgument):
        policy.validate(RestartPolicy("always"), auto_remove=True)


def test_backoff_doubles_from_100ms_and_resets_after_10s_up() -> None:
    b = policy.Backoff()
    assert [b.next(0.5) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert b.next(10.0) == 0.1
    for _ in range(20):
        b.next(0.0)
    assert b.delay == policy.BACKOFF_MAX


def test_health_transitions() -> None:
    h = Health()
    e = HealthLogEntry(start="s", end="e", exit_code=1, output="no")
    healthmod.apply_result(h, e, False, 2, in_start_period=True)
    assert h.status == "starting" and h.failing_streak == 0  # failures in the start period do not count
    healthmod.apply_result(h, e, False, 2, in_start_period=False)
    assert h.status == "starting" and h.failing_streak == 1
    healthmod.apply_result(h, e, False, 2, in_start_period=False)
    assert h.status == "unhealthy" and h.failing_streak == 2
    healthmod.apply_result(h, e, True, 2, in_start_period=False)
    assert h.status == "healthy" and h.failing_streak == 0
    for _ in range(10):
        healthmod.apply_result(h, e, True, 2, False)
    assert len(h.log) == healthmod.KEEP_LOG
    assert healthmod.command_of(Healthcheck(test=["CMD-SHELL", "test -f /x"])) == ["/bin/sh", "-c", "test -f /x"]
    assert healthmod.command_of(Healthcheck(test=["CMD", "true", "x"])) == ["true", "x"]
    assert healthmod.command_of(Healthcheck(test=["NONE"])) is None


def test_signals_by_name_and_number() -> None:
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("usr1") == signal.SIGUSR1
    assert parse_signal(None, 15) == 15
    for bad in ("NOPE", "0", "99"):
        with pytest.raises(InvalidArgument):
            parse_signal(bad)


def test_chain_ids_and_env_merge() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    ids = chain_ids([a, b])
    assert ids[0] == a and ids[1].startswith("sha256:") and ids[1] != b
    assert merge_env(["PATH=/bin", "A=1"], ["A=2", "B"]) == ["PATH=/bin", "A=2", "B"]


def test_ps_args_and_timestamps() -> None:
    assert cfs.parse_ps_args("") is None
    assert cfs.parse_ps_args("-ef") is None
    assert cfs.parse_ps_args("-o pid,comm") == ["pid", "comm"]
    with pytest.raises(InvalidArgument):
        cfs.parse_ps_args("-o nosuchfield")
    rows = cfs.top([os.getpid()], "-o pid,comm")
    assert rows["Titles"] == ["PID", "COMMAND"] and rows["Processes"][0][0] == str(os.getpid())
    ns, text = cfs.parse_ts("2026-11-24T04:51:36.211127879+00:00")
    assert text == "2026-11-24T04:51:36.211127879Z" and ns % 1_000_000_000 == 211127879
    assert cfs.parse_ts("2026-11-24T05:51:36.5+01:00")[1] == "2026-11-24T04:51:36.500000000Z"


def test_the_service_implements_the_containers_interface_as_declared() -> None:
    """The facade offers every method of ``dockyard.services.containers.Containers`` with the
    interface's signature (the fronts, the builder and compose are typed against it)."""
    import inspect

    from dockyard.services.containers import Containers
    from dockyard_engine.containers import ContainerService

    declared = {n for n, v in vars(Containers).items() if callable(v) and not n.startswith("_")}
    assert declared >= {"create", "start_container", "logs", "exec_start", "archive_put", "commit"}
    for name in sorted(declared):
        want = inspect.signature(getattr(Containers, name))
        have = inspect.signature(getattr(ContainerService, name))
        assert inspect.iscoroutinefunction(getattr(ContainerService, name)) == \
            inspect.iscoroutinefunction(getattr(Containers, name)), name
        assert list(have.parameters) == list(want.parameters), name
        for p_have, p_want in zip(have.parameters.values(), want.parameters.values(), strict=True):
            assert (p_have.kind, p_have.default) == (p_want.kind, p_want.default), (name, p_have.name)


# ============================================================================ real containers
needs_runtime = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("conmon") or not shutil.which("crun")
                                   or not os.path.exists("/bin/busybox"), reason="needs root, conmon, crun, busybox")


class SpecRecorder:
    """A plugin recording ``dockyard_runtime_spec`` calls and events."""

    def __init__(self) -> None:
        self.specs: list[str] = []
        self.events: list[Any] = []

    @hookimpl
    def dockyard_runtime_spec(self, kernel: Any, container: Any, spec: dict[str, Any]) -> None:
        self.specs.append(container.id)
        spec["process"]["env"].append("AMENDED=yes")

    @hookimpl
    def dockyard_event(self, kernel: Any, event: Any) -> None:
        self.events.append(event)


def _leftovers(root: Path, owner: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            if str(root) in line:
                found.append("mount " + line.split()[4])
    needle = str(root).encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(f"pid {pid}")
            except OSError:
                pass
    for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirs if owner in d]
        dirs[:] = [d for d in dirs if owner not in d]
    return found


class World:
    def __init__(self, tmp: Path) -> None:
        self.root = Path(f"/tmp/dyc-{os.urandom(3).hex()}")  # short: unix socket paths
        self.rec = SpecRecorder()
        self.kernel: Kernel | None = None

    def config(self) -> Config:
        return Config(values={"data-root": str(self.root / "data"), "exec-root": str(self.root / "run"),
                              "storage-driver": "vfs"})

    async def boot(self) -> Kernel:
        self.kernel = Kernel.build(self.config(), plugins=[self.rec], autoload=False)
        await self.kernel.start()
        return self.kernel

    async def halt(self) -> None:
        if self.kernel is not None:
            await self.kernel.stop()
            self.kernel = None

    @property
    def svc(self) -> Any:
        assert self.kernel is not None
        return self.kernel.containers

    def actions(self, cid: str) -> list[str]:
        return [e.action for e in self.rec.events if e.type == "container" and e.actor_id == cid]


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    w = World(tmp_path)
    k = await w.boot()
    await k.images.bootstrap("busybox")
    try:
        yield w
    finally:
        if w.kernel is None:
            await w.boot()
        for c in w.svc.list():
            try:
                await w.svc.remove(c.id, force=True, volumes=True)
            except NotFound:
                pass
        owner = w.kernel.config.owner
        await w.halt()
        left = _leftovers(w.root, owner)
        shutil.rmtree(w.root, ignore_errors=True)
        assert not left, f"left behind: {left}"


def req(cmd: list[str] | None, name: str = "", **kw: Any) -> ContainerCreate:
    host = kw.pop("host", None) or HostConfig(network_mode="none")
    return ContainerCreate(config=ContainerConfig(image=kw.pop("image", "busybox"), **kw), host_config=host,
                           name=name, cmd=cmd)


async def run_to_exit(w: World, cmd: list[str], **kw: Any) -> Any:
    c = await w.svc.create(req(cmd, **kw))
    waiter = asyncio.ensure_future(w.svc.wait(c.id, "next-exit"))
    await w.svc.start_container(c.id)
    code = await asyncio.wait_for(waiter, 20)
    return c, code


async def output(w: World, cid: str, **opts: Any) -> bytes:
    return b"".join([d async for _s, d in w.svc.logs(cid, LogOptions(**opts))])


@needs_runtime
async def test_create_rules(world: World) -> None:
    svc = world.svc
    c = await svc.create(req(None, name="web", env=["A=1"], labels={"x": "y"}))
    assert c.config.cmd == ["sh"] and c.config.entrypoint == []  # the image's CMD
    assert "A=1" in c.config.env and any(e.startswith("PATH=") for e in c.config.env)
    assert c.config.hostname == c.id[:12] and c.state.status is ContainerStatus.CREATED
    ep = await svc.create(ContainerCreate(config=ContainerConfig(image="busybox"), entrypoint=["echo"],
                                          host_config=HostConfig(network_mode="none")))
    assert ep.config.entrypoint == ["echo"] and ep.config.cmd == []  # entrypoint set: image CMD dropped
    with pytest.raises(Conflict, match='The container name "/web" is already in use by container'):
        await svc.create(req(["true"], name="/web"))
    with pytest.raises(InvalidArgument):
        await svc.create(req(["true"], name="-bad"))
    with pytest.raises(NotFound, match="No such image"):
        await svc.create(req(["true"], image="nosuchimage:1"))
    assert svc.get("web").id == c.id == svc.get(c.id[:10]).id == svc.get("/web").id
    named = [svc.get(x.id).name for x in (ep,)]
    assert named[0] and "_" in named[0]  # a random name
    assert world.actions(c.id) == ["create"]


@needs_runtime
async def test_creates_at_once_drawing_the_same_name_both_succeed(world: World, monkeypatch: Any) -> None:
    """A burst of ``docker run -d`` without names: two creates that drew the same generated
    name (both checked it free before either stored it) both succeed, one under a new name."""
    from dockyard_engine import container_create

    drawn = iter(["same_name", "same_name"])
    real = container_create.random_name
    monkeypatch.setattr(container_create, "random_name", lambda taken: next(drawn, None) or real(taken))
    a, b = await asyncio.gather(world.svc.create(req(["true"])), world.svc.create(req(["true"])))
    assert {a.name, b.name} >= {"same_name"} and a.name != b.name
    assert world.svc.get(a.id).name == a.name and world.svc.get(b.id).name == b.name


@needs_runtime
async def test_run_exit_code_logs_events_and_spec_hook(world: World) -> None:
    script = "echo out1; echo err1 >&2; echo out2; echo $AMENDED; exit 3"
    c, code = await run_to_exit(world, ["sh", "-c", script], labels={"team": "a"})
    assert code == 3
    cur = world.svc.get(c.id)
    assert cur.state.status is ContainerStatus.EXITED and cur.state.exit_code == 3
    both = await output(world, c.id)  # two pipes: stdout/stderr order between them is not kept
    assert sorted(both.splitlines()) == [b"err1", b"out1", b"out2", b"yes"]
    assert await output(world, c.id, stderr=False) == b"out1\nout2\nyes\n"
    assert await output(world, c.id, stdout=False) == b"err1\n"
    assert await output(world, c.id, tail=1, stderr=False) == b"yes\n"
    stamped = await output(world, c.id, tail=1, timestamps=True, stderr=False)
    assert stamped.endswith(b"Z yes\n") and len(stamped.split(b" ")[0]) == 30  # nanoseconds
    assert c.id in world.rec.specs  # the dockyard_runtime_spec hook ran
    assert world.actions(c.id)[:3] == ["create", "start", "die"]
    die = [e for e in world.rec.events if e.action == "die" and e.actor_id == c.id][0]
    assert die.attributes["exitCode"] == "3" and die.attributes["team"] == "a"
    assert die.attributes["image"] == "busybox" and die.attributes["name"] == cur.name
    with pytest.raises(Conflict):
        await world.svc.kill(c.id)
    with pytest.raises(NotModified):
        await world.svc.stop_container(c.id)
    assert await world.svc.wait(c.id) == 3  # not-running: at once


@needs_runtime
async def test_logs_opened_then_the_container_removed(world: World) -> None:
    """docker-py's containers.run(remove=True): the follow stream is answered while the container
    runs; the client waits, removes the container, and only then reads the stream."""
    svc = world.svc
    lines = 30000  # more than one read of the log
    c = await svc.create(req(["sh", "-c", f"sleep 0.2; echo late; yes l | head -n {lines}"]))
    waiter = asyncio.ensure_future(svc.wait(c.id, "next-exit"))
    await svc.start_container(c.id)
    followed = await svc.open_logs(c.id, LogOptions(follow=True))
    assert await asyncio.wait_for(waiter, 20) == 0
    once = await svc.open_logs(c.id, LogOptions(follow=True))  # exited: no follow
    await svc.remove(c.id)
    with pytest.raises(NotFound):
        await svc.open_logs(c.id, LogOptions())
    expected = b"late\n" + b"l\n" * lines
    assert b"".join([d async for _s, d in followed]) == expected
    assert b"".join([d async for _s, d in once]) == expected


@needs_runtime
async def test_attach_before_start_and_stdin(world: World) -> None:
    c = await world.svc.create(req(["sh", "-c", "cat; echo done >&2"], open_stdin=True, stdin_once=True,
                                   attach_stdin=True))
    _c, fut = await world.svc.attach(c.id)
    assert isinstance(fut, asyncio.Future) and not fut.done()
    await world.svc.start_container(c.id)
    stream = await asyncio.wait_for(fut, 10)
    await stream.write(b"hello\n")
    await stream.close_stdin()
    got = []
    while (item := await asyncio.wait_for(stream.read(), 15)) is not None:
        got.append(item)
    stream.close()
    assert b"".join(d for s, d in got if s == "stdout") == b"hello\n"
    assert b"".join(d for s, d in got if s == "stderr") == b"done\n"


@needs_runtime
async def test_exec_and_signals(world: World) -> None:
    svc = world.svc
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"
    c = await svc.create(req(["sh", "-c", script], name="sig"))
    await svc.start_container(c.id)
    code, out = await svc.exec_run("sig", ["sh", "-c", "echo x; echo y >&2; exit 4"])
    assert (code, out) == (4, "x\ny\n")
    sess = svc.exec_create("sig", ["/no/such/binary"])
    await svc.exec_start(sess.id)
    # dockerd 28: 127 for a command not found, and runc's words (dockerd 20.10 said 126)
    assert sess.exit_code == 127 and sess.error.endswith('exec: "/no/such/binary": stat /no/such/binary: '
                                                         'no such file or directory: unknown')
    top = await svc.top("sig")
    assert top["Titles"][1] == "PID" and any("sh -c" in row[-1] for row in top["Processes"])
    stats = await svc.stats("sig")
    assert stats["pids_stats"]["current"] >= 1 and stats["name"] == "/sig"
    await svc.pause("sig")
    with pytest.raises(Conflict, match="already paused"):
        await svc.pause("sig")
    with pytest.raises(Conflict):
        svc.exec_create("sig", ["true"])
    await svc.unpause("sig")
    with pytest.raises(Conflict):
        await svc.unpause("sig")
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        await svc.remove("sig")
    await svc.rename("sig", "sig2")
    assert svc.get("sig2").id == c.id
    await svc.stop_container("sig2", timeout=10)
    cur = svc.get(c.id)
    assert cur.state.exit_code == 42 and b"got-term" in await output(world, c.id)
    acts = world.actions(c.id)
    assert "exec_die" in acts and "pause" in acts and "unpause" in acts and "rename" in acts
    assert acts[-3:] == ["kill", "die", "stop"]


@needs_runtime
async def test_a_command_that_cannot_start_fails_as_with_dockerd(world: World) -> None:
    """The start's error is dockerd's (the docker CLI's exit status follows its words), and the
    container stays created with dockerd's exit code: 127 not found, 126 not executable."""
    svc = world.svc
    for cmd, code, says in ((["/no/such"], 127, 'exec: "/no/such": stat /no/such: no such file or directory'),
                            (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied')):
        c = await svc.create(req(cmd, host=HostConfig(network_mode="none")))
        with pytest.raises(InvalidArgument) as failed:
            await svc.start_container(c.id)
        assert str(failed.value).startswith("failed to create task for container: failed to create shim task: ")
        assert str(failed.value).endswith(f"{says}: unknown")
        st = svc.get(c.id).state
        assert (st.status, st.exit_code, st.error) == (ContainerStatus.CREATED, code, str(failed.value))


@needs_runtime
async def test_restart_policy_and_auto_remove(world: World) -> None:
    svc = world.svc
    c = await svc.create(req(["sh", "-c", "exit 1"], host=HostConfig(
        network_mode="none", restart_policy=RestartPolicy("on-failure", 2))))
    await svc.start_container(c.id)
    await async_wait_for(lambda: (st := svc.get(c.id).state).restart_count == 2 and st.status is ContainerStatus.EXITED,
                         10, "two restarts, then exited")
    assert world.actions(c.id).count("start") == 3
    rm = await svc.create(req(["sh", "-c", "exit 5"], volumes=["/data"],
                              host=HostConfig(network_mode="none", auto_remove=True)))
    anonymous = [m.name for m in svc.get(rm.id).mounts if m.type == "volume"]
    assert len(anonymous) == 1
    rt, drv = await svc.ctx.runtime(), await svc.ctx.storage()
    removed = asyncio.ensure_future(svc.wait(rm.id, "removed"))
    await svc.start_container(rm.id)
    assert await asyncio.wait_for(removed, 20) == 5
    # answered once it is really gone: record, runtime record, layer, anonymous volume, its events
    with pytest.raises(NotFound):
        svc.get(rm.id)
    assert rm.id not in await rt.list()
    assert not await drv.exists(rm.id)
    assert anonymous[0] not in [v.name for v in world.kernel.volumes.list()]
    assert world.actions(rm.id)[-3:] == ["start", "die", "destroy"]


@needs_runtime
async def test_healthcheck_transitions(world: World) -> None:
    svc = world.svc
    check = Healthcheck(test=["CMD-SHELL", "test -f /tmp/ok"], interval=200_000_000, retries=1)
    c = await svc.create(req(["sleep", "30"], healthcheck=check))
    await svc.start_container(c.id)
    for want in ("unhealthy", "healthy"):
        if want == "healthy":
            await svc.exec_run(c.id, ["touch", "/tmp/ok"])
        await async_wait_for(lambda want=want: svc.get(c.id).state.health.status == want, 5, f"health {want}")
    assert "health_status: unhealthy" in world.actions(c.id)
    assert world.actions(c.id)[-1] == "health_status: healthy"


@needs_runtime
async def test_bridge_network_and_live_restore(world: World) -> None:
    svc = world.svc
    c = await svc.create(req(["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
                             host=HostConfig(network_mode="bridge")))
    await svc.start_container(c.id)
    gone = await svc.create(req(["sh", "-c", "sleep 0.5; exit 7"]))
    await svc.start_container(gone.id)
    ip = svc.get(c.id).networks["bridge"].ipv4_address
    sandbox = svc.get(c.id).state.sandbox_key  # made by the runtime driver, named with the owner
    assert ip and Path(sandbox).exists() and world.kernel.config.owner in Path(sandbox).name
    gone_pid = svc.get(gone.id).state.pid
    await world.halt()  # the daemon goes away; containers keep running
    if gone_pid > 0:  # the second one exits while no daemon runs
        await async_wait_for_exit(gone_pid, 15, "the exiting container's process to exit")
    await world.boot()
    svc = world.svc
    assert svc.get(c.id).state.status is ContainerStatus.RUNNING
    assert svc.get(gone.id).state.exit_code == 7 and svc.get(gone.id).state.status is ContainerStatus.EXITED
    before = (await output(world, c.id)).count(b"tick")

    async def ticks_grew() -> bool:
        return (await output(world, c.id)).count(b"tick") > before

    await async_wait_for(ticks_grew, 10, "the running container's logs to continue after the restart")
    assert svc.get(c.id).state.sandbox_key == sandbox
    await svc.stop_container(c.id, timeout=1)
    assert svc.get(c.id).state.status is ContainerStatus.EXITED
    assert not svc.get(c.id).state.sandbox_key and not Path(sandbox).exists()



@needs_runtime
async def test_networks_joined_while_the_runtime_creates(world: World, monkeypatch: Any) -> None:
    """The sandbox is made first and the networks joined during the runtime's create: the
    process starts with its interface up and /etc/hosts naming its address (written again in
    place before start); a join that fails takes the runtime's record and the sandbox along."""
    svc = world.svc
    c, code = await run_to_exit(world, ["sh", "-c", "grep \"$(hostname)\" /etc/hosts; ip -4 -o addr show eth0"],
                                host=HostConfig(network_mode="bridge"))
    assert code == 0
    out = (await output(world, c.id, stdout=True, stderr=True)).decode()
    lines = out.split("\n")
    ip = lines[0].split()[0]
    assert ip.count(".") == 3 and f"inet {ip}/" in out, out

    async def refused(*_a: Any, **_k: Any) -> Any:
        raise InvalidArgument("no address for you")

    monkeypatch.setattr(type(world.kernel.service("networks")), "connect", refused)
    bad = await svc.create(req(["true"], host=HostConfig(network_mode="bridge")))
    with pytest.raises(InvalidArgument, match="no address for you"):
        await svc.start_container(bad.id)
    st = svc.get(bad.id).state
    assert st.status is ContainerStatus.CREATED and st.exit_code == 126 and not st.sandbox_key
    rt = await world.kernel.driver_ready("arch")
    assert bad.id not in await rt.list()
    assert not [p for p in (world.root / "run").rglob(f"*{bad.id}*") if p.parent.name == "netns"]



@needs_runtime
async def test_an_auto_remove_container_that_failed_to_start_is_removed(world: World, monkeypatch: Any) -> None:
    """Whatever the failure (here not one of ours: the rootfs mount's OSError, which a start
    raises as it is), an AutoRemove container that failed to start is removed, as dockerd does:
    ``docker run --rm`` waits for condition=removed and would otherwise wait for good."""
    svc = world.svc
    drv = await svc.ctx.storage()

    async def broken(*_a: Any, **_k: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(drv), "mount", broken)
    c = await svc.create(req(["true"], host=HostConfig(network_mode="none", auto_remove=True)))
    removed = asyncio.ensure_future(svc.wait(c.id, "removed"))
    with pytest.raises(OSError, match="No space left"):
        await svc.start_container(c.id)
    await asyncio.wait_for(removed, 20)
    with pytest.raises(NotFound):
        svc.get(c.id)
    assert not await drv.exists(c.id)

def _as_written_by_0_1(root: Path, cid: str) -> str:
    """Rewrite a stored container as dockyard 0.1 left it: the engine's bookkeeping in
    ``extra``, and its network namespace (if any) bound where 0.1's engine bound it,
    ``<exec-root>/netns/<id>``. Returns that namespace's path."""
    import json
    import sqlite3
    import subprocess

    db = root / "data" / "state.db"
    conn = sqlite3.connect(db)
    try:
        (raw,) = conn.execute("SELECT data FROM objects WHERE kind='container' AND id=?", (cid,)).fetchone()
        data = json.loads(raw)
        state = data["state"]
        netns = state.pop("sandbox_key")
        if netns:
            old = root / "run" / "netns" / cid
            old.parent.mkdir(parents=True, exist_ok=True)
            old.touch()
            subprocess.run(["mount", "--bind", netns, str(old)], check=True)
            subprocess.run(["umount", "-l", netns], check=True)
            os.unlink(netns)
            netns = str(old)
        data["extra"] = {"run": state.pop("start_count"), "manual_stop": state.pop("manually_stopped"),
                         "netns": netns}
        conn.execute("UPDATE objects SET data=? WHERE kind='container' AND id=?", (json.dumps(data), cid))
        conn.commit()
    finally:
        conn.close()
    return netns


@needs_runtime
async def test_live_restore_of_containers_an_older_version_started(world: World) -> None:
    """After an upgrade from 0.1, whose records kept the state machine in ``extra``: a running
    container is found running and stops cleanly (its namespace removed), one that exited
    meanwhile gets its exit code and its restart policy."""
    svc = world.svc
    c = await svc.create(req(["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
                             host=HostConfig(network_mode="bridge")))
    await svc.start_container(c.id)
    quits = await svc.create(req(["sh", "-c", "sleep 0.5; exit 7"], host=HostConfig(
        network_mode="bridge", restart_policy=RestartPolicy("unless-stopped"))))
    await svc.start_container(quits.id)
    await world.halt()
    sandbox = _as_written_by_0_1(world.root, c.id)
    assert sandbox == str(world.root / "run" / "netns" / c.id)
    quits_sandbox = _as_written_by_0_1(world.root, quits.id)
    await asyncio.sleep(1.0)  # "quits" exits while no daemon runs
    await world.boot()
    svc = world.svc
    cur = svc.get(c.id)
    assert cur.state.status is ContainerStatus.RUNNING and cur.state.sandbox_key == sandbox
    assert cur.state.start_count == 1 and not cur.state.manually_stopped
    for _ in range(100):  # unless-stopped, not stopped by hand: restarted at daemon start
        if svc.get(quits.id).state.restart_count == 1:
            break
        await asyncio.sleep(0.05)
    assert svc.get(quits.id).state.restart_count == 1 and svc.get(quits.id).state.start_count == 2
    assert "die" in world.actions(quits.id) and world.actions(quits.id).count("start") == 2
    assert not Path(quits_sandbox).exists()  # 0.1's namespace of the exited run is gone
    before = (await output(world, c.id)).count(b"tick")
    await asyncio.sleep(0.3)
    assert (await output(world, c.id)).count(b"tick") > before
    await svc.stop_container(c.id, timeout=1)
    cur = svc.get(c.id)
    assert cur.state.status is ContainerStatus.EXITED and cur.state.manually_stopped
    assert not cur.state.sandbox_key and not Path(sandbox).exists()
