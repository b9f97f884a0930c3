"""dockerd's words and exit codes for a process the runtime could not start.

The docker CLI decides ``docker run``'s exit status from the text of the start's error answer
(``runStartContainerErr``: "executable file not found" / "no such file or directory" → 127,
"permission denied" / "is a directory" → 126, else 125), and ``docker exec``'s from the exec's
``ExitCode``, which dockerd sets by the same rules (``translateContainerdStartErr``: 127 when
the error names the command and says it is not found, 126 for EACCES, 127 for ENOTDIR; an exec
that fails otherwise gets 126). The runtime's own text differs from runc's: crun says
``executable file `/no/such` not found in $PATH: No such file or directory`` for a missing
absolute path, ``open executable: Permission denied`` for a file without the execute bit and
``open executable: Operation not permitted`` for a directory.
So a failure about the command is reworded as runc 1.2 under dockerd 28 words it (Go's
``exec.LookPath`` errors), inside dockerd's wrapping, and anything else keeps the runtime's text
in that wrapping:

- ``docker run busybox /no/such``: ``failed to create task for container: failed to create shim
  task: OCI runtime create failed: runc create failed: unable to start container process: error
  during container init: exec: "/no/such": stat /no/such: no such file or directory: unknown``
- ``docker exec c nosuch``: ``OCI runtime exec failed: exec failed: unable to start container
  process: exec: "nosuch": executable file not found in $PATH: unknown``

The wrapping names runc whatever runtime ran (it is dockerd's text, which clients match on).
"""

from __future__ import annotations

import os
import stat

from dockyard.tarsafe import secure_join

#: dockerd's (containerd's, runc's) wrapping of a failed container start and exec start.
CREATE_PREFIX = ("failed to create task for container: failed to create shim task: OCI runtime create failed: "
                 "runc create failed: unable to start container process: error during container init: ")
EXEC_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: "
SUFFIX = ": unknown"
#: dockerd: a command that cannot be found, one that cannot be invoked
NOT_FOUND, CANNOT_INVOKE = 127, 126
_MOUNT_HINT = (": Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host "
               "path exists and is the expected type")


def exec_error(name: str, text: str) -> str | None:
    """Go's ``exec`` error for command ``name`` when the runtime's ``text`` says that command
    could not be found or invoked; None when the text is about something else."""
    low = text.lower()
    if not name or (name not in text and "executable" not in low):
        return None
    if "not found" in low or "no such file or directory" in low:
        if "/" in name:
            return f'exec: "{name}": stat {name}: no such file or directory'
        return f'exec: "{name}": executable file not found in $PATH'
    if any(m in low for m in ("permission denied", "is a directory", "executable: operation not permitted")):
        return f'exec: "{name}": permission denied'  # LookPath's answer for a directory too (crun: EPERM)
    return None


def exit_code(name: str, message: str) -> int | None:
    """dockerd's exit code for a start that failed with ``message`` (``translateContainerdStartErr``);
    None when it sets none."""
    low = message.lower()
    code = None
    if name and name.lower() in low and ("executable file not found" in low or "no such file or directory" in low):
        code = NOT_FOUND
    if "permission denied" in low:
        code = CANNOT_INVOKE
    if "not a directory" in low:
        code = NOT_FOUND
    return code


def start_failure(args: list[str], text: str) -> tuple[int | None, str]:
    """``(exit code or None, message)`` of a container whose process (``args``) the runtime
    could not start with ``text``: what dockerd answers to the start and records in
    ``State.Error``."""
    name = args[0] if args else ""
    reworded = exec_error(name, text)
    message = CREATE_PREFIX + (reworded if reworded is not None else text.strip()) + SUFFIX
    code = exit_code(name, message)
    if "not a directory" in message.lower():
        message += _MOUNT_HINT
    return code, message


def exec_failure(args: list[str], text: str) -> tuple[int, str]:
    """``(exit code, message)`` of an exec whose process (``args``) the runtime could not start
    with ``text``: the ``ExitCode`` dockerd reports (126 unless a rule says otherwise) and the
    text it writes into the exec's stream."""
    name = args[0] if args else ""
    reworded = exec_error(name, text)
    message = EXEC_PREFIX + (reworded if reworded is not None else text.strip()) + SUFFIX
    code = exit_code(name, message)
    return (code if code is not None else CANNOT_INVOKE), message


def lookup_reason(rootfs: str, name: str, path_env: str, cwd: str = "/") -> str | None:
    """Why command ``name`` could not start, found by looking it up in ``rootfs`` as runc's
    ``exec.LookPath`` does (a name with a slash is that file, relative to ``cwd``; else the
    first executable file of ``path_env``'s directories): a runtime-like text
    :func:`exec_error` understands, or None when the command is there and executable. For a
    failure whose reason the runtime did not report (conmon says nothing about an exec with
    a terminal). Volumes mounted inside the container are not looked into."""
    def stat_in(path: str) -> os.stat_result | None:
        try:
            return os.stat(secure_join(rootfs, path))
        except (OSError, ValueError):
            return None

    if "/" in name:
        st = stat_in(name if name.startswith("/") else os.path.join(cwd or "/", name))
        if st is None:
            return f"executable file `{name}` not found in $PATH: No such file or directory"
        if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
            return "open executable: Permission denied"
        return None
    for d in (path_env or "").split(":"):
        st = stat_in(os.path.join(d or ".", name))
        if st is not None and not stat.S_ISDIR(st.st_mode) and st.st_mode & 0o111:
            return None
    return f"executable file `{name}` not found in $PATH: No such file or directory"
