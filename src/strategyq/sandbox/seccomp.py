"""The seccomp-bpf filter: built once with libseccomp, loaded in each child as raw BPF.

libseccomp (through ``pyseccomp``) writes the program, including the
architecture check; the parent exports it to bytes once so a child only makes
one ``prctl`` call. Denied calls fail with EPERM (``clone3`` and ``openat2``
with ENOSYS, so libc falls back to the calls we can inspect), which Python
turns into a PermissionError the runner reports as a prohibited operation.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from functools import lru_cache

from strategyq.sandbox._libc import PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prctl

log = logging.getLogger(__name__)

CLONE_THREAD = 0x00010000
O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100

DENIED_SYSCALLS: dict[str, tuple[str, ...]] = {
    "process creation": ("execve", "execveat", "fork", "vfork"),
    "network": (
        "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto",
        "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg", "getsockopt", "setsockopt",
        "getpeername", "getsockname", "shutdown",
    ),
    "other processes": (
        "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
        "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "rt_sigqueueinfo",
        "rt_tgsigqueueinfo", "tkill", "migrate_pages", "move_pages",
    ),
    "kernel interfaces": (
        "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "perf_event_open",
        "userfaultfd", "keyctl", "add_key", "request_key", "personality", "memfd_create",
        "memfd_secret", "syslog", "kexec_load", "kexec_file_load", "init_module",
        "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
        "lookup_dcookie", "vhangup", "fanotify_init", "iopl", "ioperm",
    ),
    "namespaces and mounts": (
        "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree",
        "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        "name_to_handle_at", "open_by_handle_at",
    ),
    "file metadata Landlock does not cover": (
        "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "setxattr",
        "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "utime",
        "utimes", "utimensat", "futimesat", "creat",
    ),
    "identity, limits and process groups": (
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
        "setfsgid", "setgroups", "capset", "setrlimit", "setsid", "setpgid",
        "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
    ),
    "System V and POSIX IPC": (
        "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
        "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
        "mq_notify", "mq_getsetattr",
    ),
}  # fmt: skip
"""Calls refused outright, grouped by why."""

ENOSYS_SYSCALLS = ("clone3", "openat2")
"""Refused with ENOSYS so libc falls back to ``clone``/``openat``, whose flags are inspected."""


def build_filter(*, deny_signals_to_others: int | None = None) -> object:
    """Build the libseccomp filter object (default: allow; the table above: EPERM).

    ``clone`` without CLONE_THREAD is refused (threads keep working); ``open``/
    ``openat`` for writing or creating are refused. With ``deny_signals_to_others``
    (a pid), ``kill`` and ``tgkill`` aimed at any other process are refused too,
    for kernels whose Landlock cannot scope signals.
    """
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)

    def deny(action: int, name: str, *args: object) -> None:
        try:
            flt.add_rule(action, name, *args)
        except OSError as exc:
            # A name this architecture does not have (e.g. `open` on aarch64) is nothing to deny.
            log.debug("seccomp: skipping %s: %s", name, exc)

    for names in DENIED_SYSCALLS.values():
        for name in names:
            deny(eperm, name)
    for name in ENOSYS_SYSCALLS:
        deny(sc.ERRNO(errno.ENOSYS), name)
    deny(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    # Reading limits (new_limit == NULL) stays allowed; changing them does not.
    deny(eperm, "prlimit64", sc.Arg(2, sc.NE, 0))
    for name, flags_arg in (("openat", 2), ("open", 1)):
        deny(eperm, name, sc.Arg(flags_arg, sc.MASKED_EQ, O_ACCMODE, O_WRONLY))
        deny(eperm, name, sc.Arg(flags_arg, sc.MASKED_EQ, O_ACCMODE, O_RDWR))
        deny(eperm, name, sc.Arg(flags_arg, sc.MASKED_EQ, O_CREAT, O_CREAT))
    if deny_signals_to_others is not None:
        deny(eperm, "kill", sc.Arg(0, sc.NE, deny_signals_to_others))
        deny(eperm, "tgkill", sc.Arg(0, sc.NE, deny_signals_to_others))
    return flt


def export_bpf(flt: object) -> bytes:
    """The filter as a raw BPF program (array of ``struct sock_filter``)."""
    fd = os.memfd_create("strategyq-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "rb") as file:
            flt.export_bpf(file)  # type: ignore[attr-defined]
            file.seek(0)
            program = file.read()
    finally:
        os.close(fd)
    if not program or len(program) % 8:
        raise OSError(errno.EINVAL, "libseccomp exported an empty or malformed BPF program")
    return program


@lru_cache(maxsize=1)
def compiled_program() -> bytes:
    """The standard filter, compiled once per process."""
    return export_bpf(build_filter())


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_program(program: bytes) -> None:
    """Install a raw BPF program on the calling thread (no_new_privs must be set)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
