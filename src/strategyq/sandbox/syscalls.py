"""The seccomp allow-list: every system call a locked-down child may make, and why.

Everything else is refused (EPERM), including any call a future kernel adds.
The list was measured, not guessed: ``python -m tools.measure_syscalls`` runs
the legitimate corpus (``tests/unit/sandbox_legit.py``, 100+ strategies of
every kind) through the fork server under ``strace`` and prints each call
made after the filter was loaded; what it records is below, plus the calls
CPython and glibc make on paths the corpus reaches only under other
conditions (a thread, a big allocation, a signal, a time zone lookup), each
with its reason. Calls that can reach another process or the filesystem carry
argument filters (:data:`FILTERED`): scheduling, priority, affinity, limits
and I/O priority only on the caller; ``kill``/``tgkill`` only to the caller's
own pid; ``fcntl`` without owner, signal, lease or notify commands;
``clone`` only with the thread flags; ``open*`` read-only (Landlock then
refuses every path but the preloaded libraries' data files).
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOWED: dict[str, str] = {
    # -- measured: what the corpus called after lock-down
    "read": "reads the program from the source pipe",
    "write": "writes the answer to the result pipe",
    "close": "closes the pipes when done",
    "brk": "malloc grows the heap",
    "futex": "locks inside CPython, glibc and numpy (GIL, malloc arenas, import locks)",
    "getrandom": "seeds str hashes, random and numpy's Generator",
    "exit_group": "the child's exit",
    # -- memory management (glibc malloc, numpy's allocator, large frames)
    "mmap": "anonymous mappings for large arrays (the only files that open are libraries' data)",
    "munmap": "frees large arrays",
    "mremap": "grows large arrays in place (realloc)",
    "mprotect": "guard pages of thread stacks, malloc arenas",
    "madvise": "malloc returns freed memory to the kernel",
    # -- time
    "clock_gettime": "time.time(), time.monotonic(), datetime.now() when the vDSO is unavailable",
    "clock_getres": "time.get_clock_info()",
    "gettimeofday": "legacy time source of some libc paths",
    "clock_nanosleep": "time.sleep() (the wall-clock kill still applies)",
    "nanosleep": "time.sleep() on older glibc",
    "getrusage": "resource.getrusage(), time.process_time() fallback",
    "times": "os.times()",
    # -- identity of the caller only (no other process is named)
    "getpid": "the child's own pid (the signal filter below, os.getpid())",
    "gettid": "the calling thread's id (glibc raise(), threading)",
    "getuid": "os.getuid(); the uid is not a secret",
    "geteuid": "os.geteuid()",
    "getgid": "os.getgid()",
    "getegid": "os.getegid()",
    # -- signals to itself
    "rt_sigaction": "Python installs handlers (SIGINT, SIGPIPE) and numpy's floating-point traps",
    "rt_sigprocmask": "glibc blocks signals around thread creation and in raise()",
    "rt_sigreturn": "return from a signal handler",
    "sigaltstack": "CPython's faulthandler and thread start-up",
    "restart_syscall": "the kernel restarts an interrupted sleep",
    # -- threads (a strategy may start one; it is jailed like the child)
    "set_robust_list": "glibc thread start-up",
    "rseq": "glibc thread start-up (restartable sequences)",
    "exit": "a thread's exit",
    "sched_yield": "spin locks in glibc and OpenBLAS",
    # -- descriptors the child already holds (0-2 are /dev/null, 3 the result pipe)
    "lseek": "file objects on the standard descriptors",
    "readv": "buffered reads",
    "writev": "buffered writes",
    "dup": "os.dup() of an own descriptor",
    "dup3": "os.dup2() of an own descriptor",
    "fstat": "file objects check what a descriptor is",
    "newfstatat": "glibc's fstat (AT_EMPTY_PATH); also stat of a path: metadata only, see docs",
    "statx": "the same on newer glibc",
}
"""Calls allowed with any arguments."""

# Constants of the argument filters (Linux UAPI, same on every architecture we build for).
CLONE_THREAD = 0x00010000
CLONE_VM = 0x00000100
CLONE_SIGHAND = 0x00000800
THREAD_FLAGS = CLONE_THREAD | CLONE_VM | CLONE_SIGHAND
O_ACCMODE = 0o3
O_CREAT = 0o100
O_TRUNC = 0o1000
O_ASYNC = 0o20000
PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
TCGETS, TIOCGWINSZ, FIONBIO, FIONCLEX, FIOCLEX = 0x5401, 0x5413, 0x5421, 0x5450, 0x5451

SELF_PID = 0x7EADBEEF
"""Placeholder for the child's pid in the compiled program, patched in after fork.

Above any pid the kernel hands out (``pid_max`` is at most 2**22), so an
unpatched program allows no signal to anyone.
"""


@dataclass(frozen=True)
class Rule:
    """One allowed form of a call: every (argument index, op, value[, mask]) must hold."""

    reason: str
    args: tuple[tuple[int, str, int] | tuple[int, str, int, int], ...] = ()


FILTERED: dict[str, tuple[Rule, ...]] = {
    "clone": (
        Rule(
            "threads only: CLONE_THREAD|CLONE_VM|CLONE_SIGHAND set (no new process)",
            ((0, "masked_eq", THREAD_FLAGS, THREAD_FLAGS),),
        ),
    ),
    "openat": (
        Rule(
            "read-only opens reach Landlock, which refuses every path but the libraries' data "
            "(libc's optional files fail as they expect); writing, creating or truncating is "
            "refused here as well",
            ((2, "masked_eq", O_ACCMODE | O_CREAT | O_TRUNC, 0),),
        ),
    ),
    "open": (
        Rule(
            "as openat (architectures that have open)",
            ((1, "masked_eq", O_ACCMODE | O_CREAT | O_TRUNC, 0),),
        ),
    ),
    "fcntl": (
        *(
            Rule(f"{name} on an own descriptor", ((1, "eq", cmd),))
            for name, cmd in (
                ("F_DUPFD", F_DUPFD),
                ("F_GETFD", F_GETFD),
                ("F_SETFD", F_SETFD),
                ("F_GETFL", F_GETFL),
                ("F_DUPFD_CLOEXEC", F_DUPFD_CLOEXEC),
            )
        ),
        Rule(
            "F_SETFL without O_ASYNC (O_ASYNC would signal the descriptor's owner); "
            "F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY and every other command are refused",
            ((1, "eq", F_SETFL), (2, "masked_eq", O_ASYNC, 0)),
        ),
    ),
    "ioctl": tuple(
        Rule(
            f"{name}: CPython's isatty, terminal size and blocking/inheritable flags",
            ((1, "eq", cmd),),
        )
        for name, cmd in (
            ("TCGETS", TCGETS),
            ("TIOCGWINSZ", TIOCGWINSZ),
            ("FIONBIO", FIONBIO),
            ("FIONCLEX", FIONCLEX),
            ("FIOCLEX", FIOCLEX),
        )
    ),
    "kill": (Rule("signals to the child itself only", ((0, "eq", SELF_PID),)),),
    "tgkill": (Rule("raise()/abort() in the child itself only", ((0, "eq", SELF_PID),)),),
    "prlimit64": (
        Rule("resource.getrlimit/setrlimit of the caller (pid 0) only", ((0, "eq", 0),)),
    ),
    "getrlimit": (Rule("the caller's own limits", ()),),
    "setpriority": (Rule("os.nice() of the caller only", ((0, "eq", PRIO_PROCESS), (1, "eq", 0))),),
    "getpriority": (
        Rule("the caller's own priority only", ((0, "eq", PRIO_PROCESS), (1, "eq", 0))),
    ),
    **{
        name: (Rule(f"{name} of the caller (pid 0) only", ((0, "eq", 0),)),)
        for name in (
            "sched_getaffinity",
            "sched_setaffinity",
            "sched_getscheduler",
            "sched_setscheduler",
            "sched_getparam",
            "sched_setparam",
            "sched_getattr",
            "sched_setattr",
            "sched_rr_get_interval",
        )
    },
    "sched_get_priority_max": (Rule("a constant of the kernel", ()),),
    "sched_get_priority_min": (Rule("a constant of the kernel", ()),),
    "ioprio_get": (
        Rule("the caller's own I/O priority only", ((0, "eq", IOPRIO_WHO_PROCESS), (1, "eq", 0))),
    ),
    "ioprio_set": (
        Rule("the caller's own I/O priority only", ((0, "eq", IOPRIO_WHO_PROCESS), (1, "eq", 0))),
    ),
}
"""Calls allowed only in the forms listed (several rules: any one may match)."""

ENOSYS: dict[str, str] = {
    "clone3": "glibc then falls back to clone, whose flags the filter can inspect",
    "openat2": "glibc then falls back to openat, whose flags the filter can inspect",
}
"""Calls refused with ENOSYS ("not implemented") so libc falls back to an inspectable one."""
