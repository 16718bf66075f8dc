"""Lock the forked child down before any user code runs.

Order matters: descriptors and environment first (nothing to leak), then
process attributes, limits, no_new_privs and capabilities, then Landlock
(needs no_new_privs), then seccomp last (it forbids some calls made above).
Nothing after the rlimits needs a file: the seccomp program was compiled in
the parent and only gets the child's pid patched in, the same on every
Landlock ABI, and the Landlock ruleset (which lets the preloaded libraries'
data files be read) was built in the parent too: the child inherits its
descriptor, kept at :data:`RULESET_FD` until Landlock is applied. A required
layer that fails raises LayerFailed; the child then refuses to run the strategy.
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import os
import resource
import signal
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from strategyq.sandbox import landlock, seccomp
from strategyq.sandbox._libc import (
    LIBC,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    check,
    prctl,
)

RESULT_FD = 3
"""Where the result pipe's write end sits in the child."""

SOURCE_FD = 4
"""Where the source pipe's read end sits, for a child that reads its source after lock-down."""

RULESET_FD = 5
"""Where the inherited Landlock ruleset sits in the child until Landlock is applied."""

log = logging.getLogger(__name__)

_CAP_VERSION_3 = 0x20080522
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class LayerFailed(Exception):
    """A required isolation layer could not be applied in the child."""

    def __init__(self, layer: str, cause: BaseException) -> None:
        super().__init__(f"{layer}: {cause}")
        self.layer = layer


@dataclass(frozen=True)
class LockdownPlan:
    """Everything the child needs, prepared in the parent before fork."""

    memory_bytes: int
    cpu_seconds: int
    max_open_files: int
    landlock_abi: int
    seccomp_program: bytes | None
    sandboxed: bool = True
    parent_pid: int = 0
    log_max_bytes: int = 64 * 1024
    max_threads: int = 64
    landlock_ruleset_fd: int | None = None
    """The parent's prepared ruleset for ``landlock_abi`` (None: the child builds an empty one)."""


def cpu_limit_s(time_limit_s: float) -> int:
    """The RLIMIT_CPU soft limit for a wall-clock limit (a second of slack, never zero)."""
    return max(1, math.ceil(time_limit_s)) + 1


def plan(
    *,
    memory_mb: int,
    time_limit_s: float,
    max_open_files: int,
    sandboxed: bool,
    landlock_abi_max: int | None = None,
    extra_bytes: int = 0,
    max_threads: int = 64,
) -> LockdownPlan:
    """Prepare a plan in the parent: address-space budget on top of what fork shares.

    ``landlock_abi_max`` caps the Landlock ABI the child uses (the kernel's own
    when None): a kernel of that generation is run exactly, rights and order.
    ``extra_bytes`` is what the child maps after fork (its shared frame).
    """
    # A plan is made for every fork: plain descriptor calls, no file object (each
    # object the forking parent touches is a page copied while a child shares it).
    fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    try:
        inherited = int(os.read(fd, 256).split()[0]) * _PAGE_SIZE
    finally:
        os.close(fd)
    abi = landlock.abi_version() if sandboxed else 0
    if landlock_abi_max is not None:
        abi = min(abi, landlock_abi_max)
    program = seccomp.compiled_program() if sandboxed else None
    ruleset = None
    if abi >= 1:
        try:
            ruleset = landlock.prepared_ruleset(abi)
        except OSError as exc:  # the child then reads no file at all, libraries' data included
            log.warning("the Landlock ruleset for library data could not be built: %s", exc)
    return LockdownPlan(
        memory_bytes=inherited + extra_bytes + memory_mb * 1024 * 1024,
        cpu_seconds=cpu_limit_s(time_limit_s),
        max_open_files=max(8, max_open_files),
        landlock_abi=abi,
        seccomp_program=program,
        sandboxed=sandboxed,
        parent_pid=os.getpid(),
        max_threads=max(1, max_threads),
        landlock_ruleset_fd=ruleset,
    )


def isolate_descriptors(
    result_fd: int, source_fd: int | None = None, ruleset_fd: int | None = None
) -> None:
    """Result pipe to fd 3 (source pipe to fd 4, Landlock ruleset to fd 5), /dev/null on 0-2,
    every other one closed."""
    import fcntl

    # Park the pipes above the low numbers first, so the dup2 calls below cannot clobber them.
    keep = fcntl.fcntl(result_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    keep_source = None if source_fd is None else fcntl.fcntl(source_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    keep_ruleset = (
        None if ruleset_fd is None else fcntl.fcntl(ruleset_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    )
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    os.dup2(keep, RESULT_FD, inheritable=False)
    last = RESULT_FD
    if keep_source is not None:
        os.dup2(keep_source, SOURCE_FD, inheritable=False)
        last = SOURCE_FD
    if keep_ruleset is not None:
        os.closerange(last + 1, RULESET_FD)
        os.dup2(keep_ruleset, RULESET_FD, inheritable=False)
        last = RULESET_FD
    os.closerange(last + 1, 1 << 20)


class OutputCapture(io.TextIOBase):
    """Where print() goes in the child: at most ``max_bytes`` of UTF-8, sent back as logs.

    Text past the cap is dropped (and flagged), so a strategy that prints in a
    loop costs the cap, not its output.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.truncated = False
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.max_bytes - self._size
        if room <= 0:
            self.truncated = self.truncated or bool(text)
            return len(text)
        # A character is at most 4 bytes: cut on characters, then measure exactly.
        part = text[:room]
        size = len(part.encode("utf-8", "replace"))
        while size > room:
            part = part[: max(0, len(part) - (size - room + 3) // 4)]
            size = len(part.encode("utf-8", "replace"))
        self._parts.append(part)
        self._size += size
        if len(part) < len(text):
            self.truncated = True
        return len(text)

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        """Everything captured, at most ``max_bytes`` of UTF-8."""
        return "".join(self._parts)


CAPTURE = OutputCapture(0)
"""The child's capture (replaced in each child by :func:`redirect_standard_streams`)."""


def redirect_standard_streams(max_bytes: int = 64 * 1024) -> None:
    """Send print() output to a capped buffer; the caller's stream objects are not kept."""
    global CAPTURE
    CAPTURE = OutputCapture(max_bytes)
    sys.stdout = sys.stderr = CAPTURE
    sys.stdin = None  # type: ignore[assignment]
    # The caller's warning filters (e.g. "error" under a test runner) must not change
    # what a strategy does; warnings would go nowhere anyway.
    warnings.resetwarnings()
    warnings.simplefilter("ignore")


def clear_environment() -> None:
    """Empty os.environ; ``clear`` calls unsetenv, so the C environ is emptied too."""
    os.environ.clear()


TASK_UID_BASE = 3_000_000_000
"""A root child runs as ``TASK_UID_BASE + its pid``: a uid no other live process has."""


def cap_threads(max_threads: int) -> str:
    """Let this child (threads included) hold at most ``max_threads`` of the kernel's tasks.

    ``RLIMIT_NPROC`` counts the tasks of a user (in a user namespace), and root
    is exempt from it. So the child first becomes a user of its own: as root,
    the uid ``TASK_UID_BASE + pid`` (unique while this child lives: its pid is
    not reused before it is reaped); as any other user, the only process of a
    new user namespace. Then the limit applies to this child alone. Where user
    namespaces are refused, the user's own count is bounded instead: the
    limit is set to the tasks that user has now plus the cap, so this child
    can add at most the cap (``"user count"``). Returns which route it took.
    Must run single-threaded, before the process attributes (a change of uid
    resets the parent-death signal and the dumpable flag).
    """
    if os.geteuid() == 0:
        uid = TASK_UID_BASE + os.getpid()
        resource.setrlimit(resource.RLIMIT_NPROC, (max_threads, max_threads))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        return "uid"
    uid = os.getuid()
    # The namespace's own limit is taken from this process's at creation: lower it after.
    if LIBC.unshare(_CLONE_NEWUSER) == 0:
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        resource.setrlimit(resource.RLIMIT_NPROC, (max_threads, max_threads))
        return "user namespace"
    limit = _tasks_of(uid) + max_threads
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    return "user count"


def _tasks_of(uid: int) -> int:
    """The kernel tasks (threads) of processes owned by ``uid`` right now."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Threads:"):
                        count += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return count


_CLONE_NEWUSER = 0x10000000


class Orphaned(Exception):
    """The parent died before the child could ask to die with it."""


def set_process_attributes(parent_pid: int = 0) -> None:
    """Own process group, not dumpable, default signal handlers, die with the parent."""
    os.setpgid(0, 0)
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # A parent that died between fork and the prctl above sent no signal: check.
    if parent_pid and os.getppid() != parent_pid:
        raise Orphaned
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)


def set_rlimits(p: LockdownPlan) -> None:
    """Memory, CPU, file size 0, few descriptors, no core dumps."""
    limits = {
        resource.RLIMIT_AS: (p.memory_bytes, p.memory_bytes),
        resource.RLIMIT_CPU: (p.cpu_seconds, p.cpu_seconds + 1),
        resource.RLIMIT_FSIZE: (0, 0),
        resource.RLIMIT_NOFILE: (p.max_open_files, p.max_open_files),
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_MEMLOCK: (0, 0),
        resource.RLIMIT_MSGQUEUE: (0, 0),
    }
    for which, values in limits.items():
        resource.setrlimit(which, values)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Empty the ambient, effective, permitted and inheritable capability sets.

    Root keeps uid 0 but loses every privilege (CAP_DAC_OVERRIDE, CAP_SYS_RESOURCE, ...).
    The bounding set only limits what an execve could gain; no_new_privs and the
    seccomp ban on execve already rule that out, so it is left alone (64 prctl calls).
    """
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    check(LIBC.capset(ctypes.byref(header), data), "capset")


def set_no_new_privs() -> None:
    """no_new_privs: required by unprivileged Landlock and seccomp, and by design."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if prctl(PR_GET_NO_NEW_PRIVS) != 1:
        raise OSError(1, "no_new_privs did not stick")


def apply_landlock(p: LockdownPlan) -> None:
    """No filesystem but reading libraries' data, TCP denied, signals scoped; where the ABI
    has them. The inherited ruleset's descriptor is closed once applied."""
    if p.landlock_ruleset_fd is None:
        landlock.restrict_self(p.landlock_abi)
        return
    try:
        landlock.restrict_self(p.landlock_abi, RULESET_FD)
    finally:
        os.close(RULESET_FD)


def apply_seccomp(p: LockdownPlan) -> None:
    """Load the precompiled allow-list with this child's pid patched in (every ABI alike)."""
    if p.seccomp_program is None:
        raise OSError(38, "no seccomp program was prepared")
    seccomp.load_program(seccomp.for_process(p.seccomp_program, os.getpid()))


def lock_down(p: LockdownPlan, result_fd: int, source_fd: int | None = None) -> None:
    """Apply every layer in order; raise LayerFailed naming the first that failed."""
    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "descriptors",
            lambda: isolate_descriptors(
                result_fd, source_fd, p.landlock_ruleset_fd if p.sandboxed else None
            ),
        ),
        ("standard streams", lambda: redirect_standard_streams(p.log_max_bytes)),
        ("environment", clear_environment),
        ("thread cap", lambda: cap_threads(p.max_threads)),
        ("process attributes", lambda: set_process_attributes(p.parent_pid)),
        ("rlimits", lambda: set_rlimits(p)),
        ("no_new_privs", set_no_new_privs),
        ("capabilities", drop_capabilities),
    ]
    if p.sandboxed:
        steps += [("landlock", lambda: apply_landlock(p)), ("seccomp", lambda: apply_seccomp(p))]
    for layer, step in steps:
        try:
            step()
        except Orphaned:
            raise
        except Exception as exc:
            raise LayerFailed(layer, exc) from None
