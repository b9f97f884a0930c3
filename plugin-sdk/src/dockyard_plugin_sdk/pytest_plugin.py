"""The SDK's pytest plugin (``pytest11`` entry point ``dockyard``): fixtures for authors.

Fixtures:

``dockyard_kernel``
    A fresh :class:`dockyard.kernel.Kernel` per test (``autoload=False``: no installed plugin
    is registered), its data and exec roots in the test's ``tmp_path``; stopped at teardown.
``hook_recorder``
    A :class:`dockyard_plugin_sdk.testing.HookRecorder` on that kernel's plugin manager.
``dockyardd``
    A real dockyardd (the installed drivers and plugins) on private roots under ``tmp_path``,
    with its own socket: a :class:`dockyard_plugin_sdk.testing.Daemon` (``.docker(...)`` runs
    the docker CLI against it, ``.dockyard(...)`` our CLI, ``.client()`` our API client,
    ``.docker_client()`` docker-py). At teardown its containers are removed, it must stop
    cleanly, and what it owned on the host is purged.
``dockyardd_factory``
    ``factory(name="d", *flags, config=None, env=None)`` starts more daemons (``tmp_path/name``),
    all torn down like ``dockyardd``.
``dockyardd_client``
    A docker-py ``DockerClient`` on ``dockyardd`` (the test skips without docker-py).
``start_dockyardd`` (session)
    ``start(root, *flags, config=None, env=None)``: :func:`~dockyard_plugin_sdk.testing.start_daemon`
    recording the daemon's owner, for module- or session-scoped daemons the caller stops.
``dockyard_owners`` (session)
    The :class:`~dockyard_plugin_sdk.testing.Owners` of this session: every daemon and kernel
    above records its data root's owner token here; record your own with ``.record(token)``.
``netns_hosts``
    A :class:`dockyard_plugin_sdk.testing.NetnsHosts`: ``await netns_hosts.create(n)`` makes
    ``n`` test hosts in parallel through the ``netns`` provision driver (loaded by a kernel from
    the registry), each a network namespace running its own engine with mutual TLS on a shared
    private bridge (:class:`~dockyard_plugin_sdk.testing.NetnsHost`: ``.docker(...)``,
    ``.client()``, ``.bootstrap()``, ``.address``). All are removed at teardown. Skips with the
    reason without root, ``dockyard-provision-netns`` or an engine to run.
``etcd``, ``etcd_cluster``, ``etcd_factory``, ``module_etcd`` (module)
    A real etcd (Debian's etcd-server) on loopback ports under ``tmp_path``: one member, three,
    ``factory(members=1, host="127.0.0.1")``, or one member shared by a module; an
    :class:`~dockyard_plugin_sdk.testing.etcd.EtcdCluster` (``.url(prefix)`` is a
    ``cluster-store`` URL naming every member; ``.kill(m)``, ``.start(m)``, ``.restart(m)``).
    Killed by PID and removed at teardown; skips when etcd is not installed.
``binfmt_emulation`` (session)
    binfmt_misc handlers (``F``) for arm64 and arm/v7 under qemu-user-static: ``{platform:
    entry}`` of the usable ones. Missing ones are registered and held
    (:mod:`dockyard_plugin_sdk.testing.binfmt`); the last session holding them removes what the
    sessions made; another's handlers are used, never removed. Skips without root,
    qemu-user-static or dockyard-arch-linux.
``no_leaks``
    Fails the test (at teardown) naming every object of a recorded owner (a mount under its
    roots; a link, named netns, cgroup or nft table carrying its token) and every child
    process that appeared during it and is still there.

Option ``--dockyard-leak-check``: at the end of the session, after every fixture is torn down,
fail it when an object of a recorded owner exists that did not when the session started --
child processes included when their command line names a recorded root or token (a daemon
left running, its conmons). Objects of other owners -- another dockyardd on the machine -- and
other processes (orphans adopted by a subreaper, another engine's helpers) are ignored. Hosts
made through :class:`~dockyard_plugin_sdk.testing.NetnsHosts` (``netns_hosts``,
``netns_cluster``) record their engines' tokens too. It also fails the session when the working
directory or the rootdir gained an entry that git does not ignore (a relative path written by
mistake: ``Path("tcp://1.2.3.4:5").parent`` is ``tcp:``).

Skips, never import errors, for what is optional: docker-py, the docker CLI, an API front.
Loaded into every pytest run where the SDK is installed, so imports stay light: the kernel is
imported only when a fixture asks for it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from dockyard_plugin_sdk.testing import (
    Daemon,
    HookRecorder,
    HostSnapshot,
    Leaks,
    Owners,
    snapshot_host,
    start_daemon,
    wait_for_no_leaks,
)

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_plugin_sdk.testing.etcd import EtcdCluster
    from dockyard_plugin_sdk.testing.hosts import NetnsHosts

LEAK_OPTION = "--dockyard-leak-check"
_OWNERS = pytest.StashKey[Owners]()
_BASELINE = pytest.StashKey[HostSnapshot]()
_BEFORE = pytest.StashKey[HostSnapshot]()
_LEFT = pytest.StashKey[tuple[Leaks, Leaks]]()
_DIRS = pytest.StashKey[dict[Path, frozenset[str]]]()
_STRAY = pytest.StashKey[list[str]]()
#: what pytest and the usual tools make in a project directory (ignored even outside git)
TOOL_DIRS = frozenset({".pytest_cache", "__pycache__", ".ruff_cache", ".mypy_cache", ".hypothesis", ".coverage"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dockyard")
    group.addoption(LEAK_OPTION, action="store_true", default=False,
                    help="fail the session if an object of a daemon or kernel it created (mount, link, "
                         "netns, cgroup, nft table) or a child process it started remains at the end")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_OWNERS] = Owners()


def _owners(config: pytest.Config) -> Owners:
    return config.stash.setdefault(_OWNERS, Owners())


@pytest.fixture(scope="session")
def dockyard_owners(pytestconfig: pytest.Config) -> Owners:
    """The owner tokens (and roots) of the daemons and kernels this session created."""
    return _owners(pytestconfig)


# ---------------------------------------------------------------------------------- kernel
@pytest_asyncio.fixture
async def dockyard_kernel(tmp_path: Path, dockyard_owners: Owners) -> AsyncIterator[Kernel]:
    """A fresh kernel with no plugins loaded; data/exec roots under ``tmp_path``."""
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    root = tmp_path / "dockyard-root"
    root.mkdir()
    kernel = Kernel.build(Config.load(overrides={"data-root": str(root), "exec-root": str(root)}),
                          autoload=False)
    dockyard_owners.record(kernel.config.owner, root)
    try:
        yield kernel
    finally:
        await kernel.stop()


@pytest.fixture
def hook_recorder(dockyard_kernel: Kernel) -> Iterator[HookRecorder]:
    """Every hook call made through ``dockyard_kernel.pm`` during the test."""
    recorder = HookRecorder(dockyard_kernel.pm)
    try:
        yield recorder
    finally:
        recorder.finish_recording()


# ---------------------------------------------------------------------------------- daemons
@pytest.fixture(scope="session")
def start_dockyardd(dockyard_owners: Owners) -> Callable[..., Daemon]:
    """``start(root, *flags, config=None, env=None)``: a daemon whose owner is recorded; the
    caller stops it (``teardown()`` removes its containers and purges what it owned)."""
    def start(root: Path, *extra: str, config: dict[str, Any] | None = None,
              env: dict[str, str] | None = None) -> Daemon:
        return start_daemon(root, *extra, config=config, env=env, owners=dockyard_owners)

    return start


@pytest.fixture
def dockyardd_factory(tmp_path: Path, start_dockyardd: Callable[..., Daemon]) -> Iterator[Callable[..., Daemon]]:
    """Start daemons with ``factory(name, *flags, config=..., env=...)``; all are torn down."""
    started: list[Daemon] = []

    def factory(name: str = "d", *extra: str, config: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> Daemon:
        d = start_dockyardd(tmp_path / name, *extra, config=config, env=env)
        started.append(d)
        return d

    yield factory
    errors = []
    for d in started:
        try:
            d.teardown()
        except AssertionError as exc:  # stop the others before failing
            errors.append(str(exc))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def dockyardd(dockyardd_factory: Callable[..., Daemon]) -> Daemon:
    """One real daemon with the installed drivers, its own roots and socket."""
    return dockyardd_factory("d")


@pytest.fixture
def dockyardd_client(dockyardd: Daemon) -> Iterator[Any]:
    """A docker-py ``DockerClient`` on ``dockyardd`` (skips without docker-py)."""
    client = dockyardd.docker_client()
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------------------------- hosts
@pytest_asyncio.fixture
async def netns_hosts(dockyard_owners: Owners) -> AsyncIterator[NetnsHosts]:
    """Test hosts for multi-host tests (``await netns_hosts.create(n)``); removed at teardown."""
    import shutil
    import tempfile

    from dockyard_plugin_sdk.testing.hosts import NetnsHosts, netns_hosts_unavailable

    reason = netns_hosts_unavailable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="dyh-", dir="/tmp"))  # short: the hosts' unix sockets are below
    try:
        hosts = await NetnsHosts.open(root, owners=dockyard_owners)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield hosts
    finally:
        errors = await hosts.close()
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)


# ---------------------------------------------------------------------------------- etcd
@pytest.fixture
def etcd_factory(tmp_path: Path, dockyard_owners: Owners) -> Iterator[Callable[..., EtcdCluster]]:
    """``factory(members=1, host="127.0.0.1", tls=False)``: a real etcd cluster under ``tmp_path`` (see
    :func:`~dockyard_plugin_sdk.testing.etcd.start_etcd`); every one is killed by PID and its
    directory removed at teardown. Skips when etcd is not installed."""
    from dockyard_plugin_sdk.testing.etcd import etcd_unavailable, start_etcd

    reason = etcd_unavailable()
    if reason:
        pytest.skip(reason)
    started: list[EtcdCluster] = []

    def factory(members: int = 1, host: str = "127.0.0.1", tls: bool = False) -> EtcdCluster:
        cluster = start_etcd(tmp_path / "etcd", members=members, host=host, tls=tls)
        dockyard_owners.record(cluster.token)
        started.append(cluster)
        return cluster

    try:
        yield factory
    finally:
        for cluster in started:
            cluster.close()


@pytest.fixture
def etcd(etcd_factory: Callable[..., EtcdCluster]) -> EtcdCluster:
    """One etcd member on a loopback port (``etcd.url(prefix)`` for ``cluster-store``)."""
    return etcd_factory()


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory: pytest.TempPathFactory, dockyard_owners: Owners) -> Iterator[EtcdCluster]:
    """One etcd member shared by a test module (give each test its own URL prefix:
    ``module_etcd.url()`` makes a fresh one). Killed by PID and removed after the module."""
    from dockyard_plugin_sdk.testing.etcd import etcd_unavailable, start_etcd

    reason = etcd_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = start_etcd(tmp_path_factory.mktemp("etcd"))
    dockyard_owners.record(cluster.token)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def etcd_cluster(etcd_factory: Callable[..., EtcdCluster]) -> EtcdCluster:
    """A three-member etcd cluster on loopback ports (``.members``, ``.kill(m)``, ``.start(m)``)."""
    return etcd_factory(members=3)


# ---------------------------------------------------------------------------------- leaks
@pytest.fixture(scope="session")
def binfmt_emulation() -> Iterator[dict[str, str]]:
    import os
    import shutil

    if os.geteuid() != 0:
        pytest.skip("registering binfmt_misc handlers needs root")
    if not (shutil.which("qemu-aarch64-static") and shutil.which("qemu-arm-static")):
        pytest.skip("qemu-user-static is not installed (make install)")
    from dockyard_plugin_sdk.testing import binfmt

    try:
        usable = binfmt.hold(["aarch64", "arm"])
    except binfmt.BinfmtUnavailable as exc:
        binfmt.release()
        pytest.skip(f"no binfmt handlers: {exc} (dockyard-arch-linux installs `dockyard system binfmt`)")
    try:
        yield usable
    finally:
        binfmt.release()


@pytest.fixture
def no_leaks() -> None:
    """Fail the test if it leaves objects of a recorded owner or child processes behind.

    The host is recorded before any fixture of the test is set up and compared after every
    one of them is torn down (hooks below), so the order in which a test lists its fixtures
    does not matter: a fixture that cleans up in its teardown does not count as a leak.
    """


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if "no_leaks" in getattr(item, "fixturenames", ()):
        item.stash[_BEFORE] = snapshot_host()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is not None:
        del item.stash[_BEFORE]
        leaks = wait_for_no_leaks(before, keep=_owners(item.config).owns_or_child)
        if leaks:
            pytest.fail("the test leaked host objects:\n" + leaks.describe(), pytrace=False)
    return result


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption(LEAK_OPTION, default=False):
        session.config.stash[_BASELINE] = snapshot_host()
        session.config.stash[_DIRS] = {d: _entries(d) for d in {Path.cwd(), session.config.rootpath}}


def _entries(directory: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(directory))
    except OSError:
        return frozenset()


def stray_entries(before: dict[Path, frozenset[str]]) -> list[str]:
    """Entries of the watched directories that are new since ``before`` and neither a tool's
    cache (:data:`TOOL_DIRS`) nor ignored by git there (``git check-ignore``; outside a work
    tree, or without git, every new entry counts)."""
    import shutil
    import subprocess

    out: list[str] = []
    for directory, names in sorted(before.items()):
        new = sorted(_entries(directory) - names - TOOL_DIRS)
        git = shutil.which("git")
        if new and git:
            try:
                done = subprocess.run([git, "-C", str(directory), "check-ignore", "--", *new],
                                      capture_output=True, text=True, timeout=10)
                ignored = set(done.stdout.splitlines()) if done.returncode in (0, 1) else set()
            except (OSError, subprocess.SubprocessError):
                ignored = set()
            new = [n for n in new if n not in ignored]
        out += [str(directory / n) for n in new]
    return out


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Iterator[None]:
    """Checked after the other implementations ran: session-scoped fixtures (a daemon for a
    whole module or session) are torn down by then; before the terminal summary is written."""
    result = yield
    config = session.config
    baseline = config.stash.get(_BASELINE, None)
    if baseline is None:
        return result
    owners = _owners(config)
    leaks = wait_for_no_leaks(baseline, keep=owners.owns)
    ours_before = baseline.filter(owners.owns)
    preexisting = snapshot_host().filter(lambda c, i: owners.owns(c, i) and i in getattr(ours_before, c))
    config.stash[_LEFT] = (leaks, preexisting - HostSnapshot())
    stray = stray_entries(config.stash.get(_DIRS, {}))
    config.stash[_STRAY] = stray
    if (leaks or stray) and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    left = config.stash.get(_LEFT, None)
    if left is None:
        return
    leaks, preexisting = left
    stray = config.stash.get(_STRAY, [])
    owners = _owners(config)
    terminalreporter.section("dockyard leak check", red=bool(leaks or stray))
    if leaks:
        terminalreporter.line("objects of this session's daemons and kernels left behind "
                              f"(owners {', '.join(sorted(owners.tokens))}):\n" + leaks.describe(), red=True)
    else:
        terminalreporter.line(f"nothing left behind ({len(owners.tokens)} owner token(s) recorded; "
                              "objects of other owners are not looked at)")
    if stray:
        terminalreporter.line("new in the working directory or the rootdir, not ignored by git (a path "
                              "written relative by mistake?):\n" + "\n".join(f"  {p}" for p in stray), red=True)
    if preexisting:
        terminalreporter.line("present before the session started (not counted):\n"
                              + preexisting.describe(), yellow=True)
