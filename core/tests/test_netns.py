import os

import pytest

from dockyard import netns


def test_in_thread_returns_and_raises() -> None:
    assert netns.in_thread(lambda: 42) == 42
    with pytest.raises(KeyError):
        netns.in_thread(lambda: {}["x"])


def test_run_in_a_missing_namespace_is_an_oserror(tmp_path) -> None:
    with pytest.raises(OSError):
        netns.run_in(tmp_path / "none", lambda: 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="setns needs CAP_SYS_ADMIN")
def test_run_in_own_namespace() -> None:
    # entering the namespace the process is already in changes nothing and runs fn
    assert netns.run_in(f"/proc/{os.getpid()}/ns/net", lambda: os.getpid()) == os.getpid()
