"""A default seccomp profile in the shape of Docker's (``profiles/seccomp/default.json``).

Shape: ``defaultAction`` is ``SCMP_ACT_ERRNO`` (EPERM) and an allowlist of syscalls follows.
What it allows, in short:

* the ordinary process, file, memory, signal, socket, timer, IPC and event syscalls a normal
  program uses (the list in :data:`ALLOWED`, the same names Docker allows unconditionally);
* ``clone`` only without namespace flags (``CLONE_NEW*`` masked, as Docker does), ``clone3``
  answers ``ENOSYS`` so libcs fall back to ``clone``;
* ``personality`` only for the values Docker allows (0, 8, 0x20000, 0x20008, 0xffffffff);
* syscalls tied to a capability only when the container holds that capability
  (:data:`BY_CAPABILITY`: e.g. ``mount``/``unshare``/``setns`` with CAP_SYS_ADMIN, ``ptrace`` and
  ``process_vm_*`` with CAP_SYS_PTRACE, ``settimeofday`` with CAP_SYS_TIME, module loading with
  CAP_SYS_MODULE, ``reboot`` with CAP_SYS_BOOT).

Not allowed at all (EPERM): ``acct`` (without CAP_SYS_PACCT), ``add_key``/``keyctl``/
``request_key``, ``bpf``, ``kexec_*``, ``open_by_handle_at``, ``perf_event_open``, ``userfaultfd``,
``swapon``/``swapoff``, ``uselib``, ``ustat``, ``sysfs``, ``_sysctl``, ``lookup_dcookie``,
``quotactl``, ``nfsservctl``, ``get_kernel_syms``, ``query_module``, ``vm86``...  Compared with
Docker's file this profile is reduced: it names x86-64 (plus x86/x32 personalities) only, and
has no per-architecture syscalls for arm, s390 or ppc.
"""

from __future__ import annotations

from typing import Any

ERRNO_EPERM = 1
ERRNO_ENOSYS = 38

#: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NAMESPACE_FLAGS = 2114060288

ALLOWED: tuple[str, ...] = (
    "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_getres", "clock_gettime", "clock_nanosleep",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchownat",
    "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
    "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_waitv", "futimesat", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
    "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
    "io_uring_enter", "io_uring_register", "io_uring_setup", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr", "link", "linkat",
    "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
    "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd",
    "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat",
    "open", "openat", "openat2", "pause", "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "pipe",
    "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv",
    "preadv2", "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir",
    "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid",
    "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
    "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "socket", "socketpair", "splice", "stat", "statfs",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
    "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask",
    "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork", "vmsplice", "wait4",
    "waitid", "write", "writev",
)

#: Extra syscalls allowed only when the container's capabilities include the key.
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount2",
        "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_adjtime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "CAP_SYSLOG": ("syslog",),
}


#: ``platform.machine()`` -> the libseccomp architectures a profile names.
ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_profile(capabilities: list[str] | set[str] | frozenset[str],
                    machine: str = "x86_64") -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section for a container holding ``capabilities``."""
    caps = set(capabilities)
    syscalls: list[dict[str, Any]] = [{"names": sorted(set(ALLOWED)), "action": "SCMP_ACT_ALLOW"}]
    for personality in (0, 8, 131072, 131080, 4294967295):
        syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": personality, "op": "SCMP_CMP_EQ"}]})
    extra: set[str] = set()
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            extra.update(names)
    if "CAP_SYS_ADMIN" not in caps:
        # clone without namespace flags only; clone3 cannot be filtered by flags: ENOSYS makes
        # glibc and musl fall back to clone.
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                   "op": "SCMP_CMP_MASKED_EQ"}]})
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ERRNO_ENOSYS})
    if extra:
        syscalls.append({"names": sorted(extra - set(ALLOWED)), "action": "SCMP_ACT_ALLOW"})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ERRNO_EPERM,
        "architectures": ARCHITECTURES.get(machine, []),
        "syscalls": syscalls,
    }
