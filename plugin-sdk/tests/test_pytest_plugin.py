"""The SDK's pytest plugin seen from a plugin author's project: a throwaway test tree run in a
child pytest (Pytester's ``runpytest_subprocess`` style), the plugin coming in through its
``pytest11`` entry point as it would for anyone who installed the SDK."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest


def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_author.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n"
                                         "asyncio_default_fixture_loop_scope = function\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


def outcome(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr


def test_plugin_is_registered_through_its_entry_point(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, """
        def test_x(pytestconfig):
            assert pytestconfig.pluginmanager.get_plugin("dockyard") is not None
        """, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--dockyard-leak-check" in proc.stdout


def test_dockyard_kernel_is_fresh_rooted_in_tmp_and_stopped(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, """
        from dockyard.kernel import Kernel
        from dockyard.specs import hookimpl

        KERNELS = []

        class Plugin:
            @hookimpl
            def dockyard_engine_flags(self, kernel, host):
                return ["--x"]

        def test_first(dockyard_kernel, tmp_path):
            assert isinstance(dockyard_kernel, Kernel)
            assert dockyard_kernel.config.data_root.is_relative_to(tmp_path)
            assert dockyard_kernel.config.exec_root.is_relative_to(tmp_path)
            # autoload=False: no entry-point plugin is registered, only what a test adds
            assert [p for p in dockyard_kernel.pm.get_plugins()] == []
            dockyard_kernel.pm.register(Plugin(), name="mine")
            dockyard_kernel.open_store()
            KERNELS.append(dockyard_kernel)

        async def test_second_gets_another_kernel(dockyard_kernel):
            first = KERNELS[0]
            assert dockyard_kernel is not first
            assert dockyard_kernel.pm.get_plugin("mine") is None
            assert first.store is None, "the previous kernel was not stopped"
            dockyard_kernel.open_store()
            KERNELS.append(dockyard_kernel)

        def test_third_sees_the_async_one_stopped():
            assert len(KERNELS) == 2 and KERNELS[1].store is None
        """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in outcome(proc)


def test_hook_recorder_fixture(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, """
        import pytest
        from dockyard.specs import hookimpl

        class Plugin:
            @hookimpl
            def dockyard_engine_flags(self, kernel, host):
                return ["--label=a"]

        def test_records(dockyard_kernel, hook_recorder):
            dockyard_kernel.pm.register(Plugin(), name="p")
            dockyard_kernel.hook.dockyard_engine_flags(kernel=dockyard_kernel, host="h1")
            call = hook_recorder.assert_called("dockyard_engine_flags", host="h1")
            assert call.result == [["--label=a"]] and call.plugins == ["p"]
            assert len(hook_recorder.calls("dockyard_engine_flags")) == 1

        def test_fails_naming_the_calls(dockyard_kernel, hook_recorder):
            dockyard_kernel.hook.dockyard_engine_flags(kernel=dockyard_kernel, host="h1")
            hook_recorder.assert_called("dockyard_engine_flags", host="h2")
        """)
    assert proc.returncode == 1
    assert "1 failed, 1 passed" in outcome(proc)
    assert "dockyard_engine_flags(host='h2') was not called" in proc.stdout
    assert "host='h1'" in proc.stdout


def test_no_leaks_fails_naming_a_leaked_child_and_passes_a_clean_test(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, """
        import subprocess
        CHILDREN = []

        def test_clean(no_leaks):
            subprocess.run(["true"], check=True)

        def test_leaky(no_leaks):
            CHILDREN.append(subprocess.Popen(["sleep", "30"]))

        def test_cleanup():
            for c in CHILDREN:
                c.kill(); c.wait()
        """)
    assert "3 passed, 1 error" in outcome(proc), proc.stdout + proc.stderr
    assert "the test leaked host objects" in proc.stdout
    assert "processes:" in proc.stdout and " sleep" in proc.stdout
    assert "ERROR at teardown of test_leaky" in proc.stdout


def test_no_leaks_checks_after_every_fixture_whatever_their_order(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, """
        import subprocess
        import pytest

        @pytest.fixture
        def child():
            p = subprocess.Popen(["sleep", "30"])
            yield p
            p.kill(); p.wait()

        CARELESS = []

        @pytest.fixture
        def careless():
            CARELESS.append(subprocess.Popen(["sleep", "31"]))
            yield CARELESS[-1]

        def test_fixture_first(child, no_leaks):
            assert child.poll() is None

        def test_fixture_last(no_leaks, child):
            assert child.poll() is None

        def test_careless_fixture(careless, no_leaks):
            pass

        def test_cleanup():
            for p in CARELESS:
                p.kill(); p.wait()
        """)
    assert "4 passed, 1 error" in outcome(proc), proc.stdout + proc.stderr
    assert "ERROR at teardown of test_careless_fixture" in proc.stdout
    assert "sleep" in proc.stdout and "fixture_first" not in proc.stdout.split("short test summary")[-1]


def left_behind(stdout: str) -> str:
    """The "left behind" part of the leak-check summary."""
    if "dockyard leak check" not in stdout:
        return ""
    section = stdout.split("dockyard leak check", 1)[1]
    return section.split("present before the session started", 1)[0]


def _remove_netns(name: str) -> None:
    from pyroute2 import netns

    if name in netns.listnetns():
        netns.remove(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a named netns")
def test_session_leak_check_fails_on_a_leftover_of_a_recorded_owner(tmp_path: Path) -> None:
    ns = f"dy{uuid.uuid4().hex[:6]}x"
    source = f"""
        from pyroute2 import netns

        def test_makes_a_netns(dockyard_owners):
            dockyard_owners.record("{ns[:8]}")
            netns.create("{ns}")
        """
    try:
        proc = run_pytest(tmp_path, source, "--dockyard-leak-check")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout
        assert f"netns: {ns}" in left_behind(proc.stdout), proc.stdout

        # the same leftover, present before the session: not counted, but reported
        again = run_pytest(tmp_path, source.replace(f'netns.create("{ns}")', "pass"),
                           "--dockyard-leak-check")
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"netns: {ns}" not in left_behind(again.stdout), again.stdout
        assert f"netns: {ns}" in again.stdout.split("present before the session started")[1]
    finally:
        _remove_netns(ns)

    # without the option, nothing is checked
    try:
        proc = run_pytest(tmp_path, source)
        assert proc.returncode == 0 and "dockyard leak check" not in proc.stdout
    finally:
        _remove_netns(ns)


def test_session_leak_check_fails_on_a_new_entry_in_the_working_directory(tmp_path: Path) -> None:
    """A socket URL taken for a path makes a directory named after its scheme where the tests
    run (``tcp:`` appeared once at the repository's root): the session fails naming it."""
    source = """
        from pathlib import Path

        def test_mistakes_a_url_for_a_path():
            Path("tcp://127.0.0.1:2376").parent.mkdir(parents=True, exist_ok=True)
        """
    proc = run_pytest(tmp_path, source, "--dockyard-leak-check")
    assert proc.returncode == 1 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert f"  {tmp_path / 'tcp:'}" in proc.stdout.split("not ignored by git")[1], proc.stdout
    (tmp_path / "tcp:").rmdir()
    clean = run_pytest(tmp_path, source.replace('Path("tcp://127.0.0.1:2376").parent.mkdir(parents=True, exist_ok=True)',
                                                 "pass"), "--dockyard-leak-check")
    assert clean.returncode == 0 and "not ignored by git" not in clean.stdout, clean.stdout  # __pycache__ is fine


def _delete_links(*names: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for name in names:
            if ipr.link_lookup(ifname=name):
                ipr.link("del", ifname=name)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create links")
def test_leak_checks_ignore_a_foreign_owner_and_report_a_recorded_one(tmp_path: Path) -> None:
    """A link named with the token of a root the session did not record (another daemon's)
    is not a leak; one named with a recorded token is, for the test and for the session."""
    from dockyard_plugin_sdk.testing import owner_of_data_root

    mine = owner_of_data_root(tmp_path / "mine" / "data")
    foreign = owner_of_data_root(tmp_path / "another-daemon" / "data")
    assert mine != foreign
    links = (f"{mine}-leak", f"{foreign}-leak")
    source = f"""
        import pytest
        from pathlib import Path
        from pyroute2 import IPRoute

        def _add(name):
            with IPRoute() as ipr:
                ipr.link("add", ifname=name, kind="bridge")  # no dummy module on every kernel

        def test_foreign_only(no_leaks):
            _add("{links[1]}")

        def test_recorded(no_leaks, dockyard_owners):
            assert dockyard_owners.record_data_root(Path("{tmp_path / 'mine' / 'data'}")) == "{mine}"
            _add("{links[0]}")
        """
    try:
        proc = run_pytest(tmp_path, source, "--dockyard-leak-check")
    finally:
        _delete_links(*links)
    out = proc.stdout + proc.stderr
    assert "2 passed, 1 error" in outcome(proc), out
    assert "ERROR at teardown of test_recorded" in out and "test_foreign_only" not in out.split("short test summary")[-1]
    assert f"links: {links[0]}" in out and links[1] not in out
    assert f"links: {links[0]}" in left_behind(proc.stdout) and mine in left_behind(proc.stdout)


def test_session_leak_check_counts_mounts_under_recorded_roots_only(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    plain, rooted = tmp_path / "plainmnt", tmp_path / "daemon-root" / "data" / "mnt"
    plain.mkdir()
    rooted.mkdir(parents=True)
    source = f"""
        import subprocess
        from pathlib import Path

        def test_mounts(dockyard_owners):
            dockyard_owners.record_data_root(Path("{rooted.parent}"), Path("{rooted.parent.parent}"))
            for mnt in ("{plain}", "{rooted}"):
                subprocess.run(["mount", "-t", "tmpfs", "none", mnt], check=True)
        """
    try:
        proc = run_pytest(tmp_path, source, "--dockyard-leak-check")
    finally:
        for mnt in (plain, rooted):
            subprocess.run(["umount", str(mnt)], capture_output=True)
    assert "1 passed" in proc.stdout and proc.returncode == 1, proc.stdout + proc.stderr
    assert f"mounts: {rooted} (tmpfs none)" in left_behind(proc.stdout)
    assert str(plain) not in proc.stdout, "a mount under no recorded root was counted"


def test_daemon_fixtures_for_a_third_party_project(tmp_path: Path) -> None:
    """``dockyardd`` and friends come through the entry point (no conftest), record their
    daemon's owner for the leak checks, and skip (not fail) without what they need."""
    source = """
        import importlib.util
        import pytest
        from dockyard_plugin_sdk.testing import Daemon, owner_of

        def test_daemon(dockyardd, dockyard_owners, no_leaks):
            assert isinstance(dockyardd, Daemon)
            assert dockyardd.client().get("/info")["DockerRootDir"] == str(dockyardd.root / "data")
            assert owner_of(dockyardd.root) in dockyard_owners.tokens
            assert str(dockyardd.root) in dockyard_owners.roots

        def test_factory_roots_are_apart(dockyardd_factory):
            a, b = dockyardd_factory("a"), dockyardd_factory("b")
            assert a.socket != b.socket and a.owner != b.owner

        def test_docker_py_is_optional(dockyardd_client):
            assert dockyardd_client.ping() is True

        def test_kernel_records_its_owner(dockyard_kernel, dockyard_owners):
            assert dockyard_kernel.config.owner in dockyard_owners.tokens
        """
    proc = run_pytest(tmp_path, source, "-rs", "--dockyard-leak-check")
    out = proc.stdout + proc.stderr
    if importlib.util.find_spec("dockyard_api_docker") is None:
        assert "1 passed, 3 skipped" in outcome(proc), out
        assert "pip install dockyard-api-docker" in out
        return
    want = "4 passed" if importlib.util.find_spec("docker") else "3 passed, 1 skipped"
    assert want in outcome(proc), out
    assert proc.returncode == 0 and "nothing left behind (5 owner token(s)" in out, out
