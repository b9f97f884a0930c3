"""A process the runtime could not start: dockerd's words and exit codes from crun's and runc's
texts (what the docker CLI's ``run`` and ``exec`` exit statuses follow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_engine.start_errors import (
    CREATE_PREFIX,
    EXEC_PREFIX,
    exec_failure,
    lookup_reason,
    start_failure,
)

CRUN_NOT_FOUND = "executable file `{0}` not found in $PATH: No such file or directory"
CASES = [  # (args, the runtime's text, dockerd's exit code, dockerd's exec error)
    (["/no/such"], CRUN_NOT_FOUND.format("/no/such"), 127, 'exec: "/no/such": stat /no/such: no such file or directory'),
    (["nosuch", "x"], CRUN_NOT_FOUND.format("nosuch"), 127, 'exec: "nosuch": executable file not found in $PATH'),
    (["/etc/passwd"], "open executable: Permission denied", 126, 'exec: "/etc/passwd": permission denied'),
    (["/etc"], "open executable: Operation not permitted", 126, 'exec: "/etc": permission denied'),
    (["/etc"], "open executable: Is a directory", 126, 'exec: "/etc": permission denied'),
    (["/no/such"], 'runc create failed: unable to start container process: error during container init: exec: '
                   '"/no/such": stat /no/such: no such file or directory', 127,
     'exec: "/no/such": stat /no/such: no such file or directory'),
]


@pytest.mark.parametrize(("args", "text", "code", "exec_text"), CASES, ids=[f"{a[0]}-{t[:12]}" for a, t, _c, _e in CASES])
def test_a_command_that_cannot_start_gets_dockerds_words_and_code(args: list[str], text: str, code: int,
                                                                  exec_text: str) -> None:
    assert start_failure(args, text) == (code, f"{CREATE_PREFIX}{exec_text}: unknown")
    assert exec_failure(args, text) == (code, f"{EXEC_PREFIX}{exec_text}: unknown")


def test_other_failures_keep_the_runtimes_text() -> None:
    text = "chdir to `/nowhere`: No such file or directory"  # not the command: no 127 (dockerd)
    assert start_failure(["/bin/top"], text) == (None, f"{CREATE_PREFIX}{text}: unknown")
    assert exec_failure(["/bin/top"], text) == (126, f"{EXEC_PREFIX}{text}: unknown")  # an exec's default
    code, message = start_failure(["/bin/top"], "mount `/a` to `/b`: Not a directory")
    assert code == 127 and message.endswith("Check if the specified host path exists and is the expected type")
    assert start_failure([], "boom") == (None, f"{CREATE_PREFIX}boom: unknown")


def test_a_reason_the_runtime_did_not_give_is_looked_up_as_runc_would(tmp_path: Path) -> None:
    """conmon reports nothing for an exec with a terminal: the command is looked up in the
    rootfs as Go's exec.LookPath does, symlinks resolved inside it."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "busybox").write_text("")
    (tmp_path / "bin" / "busybox").chmod(0o755)
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "escape").symlink_to("/usr/bin/env")  # outside the rootfs: not followed there
    path = "/usr/bin:/bin"
    assert lookup_reason(str(tmp_path), "sh", path) is None
    assert lookup_reason(str(tmp_path), "/bin/sh", path) is None
    assert lookup_reason(str(tmp_path), "../bin/sh", path, cwd="/etc") is None
    for name, says in (("bash", 127), ("/no/such", 127), ("/escape", 127), ("/etc/passwd", 126), ("/etc", 126)):
        reason = lookup_reason(str(tmp_path), name, path)
        assert reason is not None and exec_failure([name], reason)[0] == says, name
    assert exec_failure(["bash"], lookup_reason(str(tmp_path), "bash", path) or "")[1] == (
        f'{EXEC_PREFIX}exec: "bash": executable file not found in $PATH: unknown')
