"""Landlock through raw syscalls: no filesystem access but reading libraries' data, no TCP,
scoped signals.

Every access right the running kernel's ABI knows is *handled*, so nothing is
allowed but what a rule adds, and the only rules are read-file rights beneath
the package directories of the preloaded libraries and the time-zone database
(:func:`grant_reading`): their bundled data files (scikit-learn's and
statsmodels' example data sets, SciPy's tables, time zones) can be read, no
directory listed, nothing written. The ruleset is built once in the forking
parent (:func:`prepared_ruleset`) and each child only restricts itself with
it. Syscall numbers 444-446 are the same on every architecture that has
Landlock.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from strategyq.sandbox._libc import LIBC, check

SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1 << 0

# handled_access_fs rights by the ABI that introduced them.
_FS_RIGHTS_BY_ABI = {
    1: (1 << 13) - 1,  # execute .. make_sym
    2: 1 << 13,  # refer
    3: 1 << 14,  # truncate
    5: 1 << 15,  # ioctl_dev
}
ACCESS_FS_READ_FILE = 1 << 2
"""The one right a rule grants: open a regular file for reading (no listing, no writing)."""
RULE_PATH_BENEATH = 1
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct landlock_path_beneath_attr is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled."""
    result = LIBC.syscall(
        SYS_CREATE_RULESET, ctypes.c_void_p(None), ctypes.c_size_t(0), CREATE_RULESET_VERSION
    )
    return max(int(result), 0)


def handled_fs(abi: int) -> int:
    """Every filesystem right ABI ``abi`` supports."""
    return sum(bits for version, bits in _FS_RIGHTS_BY_ABI.items() if version <= abi)


_READABLE: tuple[str, ...] = ()
_RULESETS: dict[tuple[int, tuple[str, ...]], int] = {}


def grant_reading(directories: Sequence[str]) -> None:
    """Let every child of this process read the files beneath ``directories`` (read only).

    Called before any child is forked, with the package directories of the
    preloaded libraries; a directory that does not exist is left out.
    """
    global _READABLE
    _READABLE = tuple(sorted({os.path.realpath(d) for d in directories if os.path.isdir(d)}))


def readable() -> tuple[str, ...]:
    """The directories beneath which a child may read files."""
    return _READABLE


def prepared_ruleset(abi: int) -> int:
    """The descriptor of this process's ruleset for ``abi``, built on first use and kept.

    Every right of the ABI is handled; the only rules let :func:`readable`'s
    directories be read. Raises OSError where Landlock is unavailable.
    """
    key = (abi, _READABLE)
    fd = _RULESETS.get(key)
    if fd is None:
        fd = _RULESETS[key] = _build_ruleset(abi, _READABLE)
    return fd


def _build_ruleset(abi: int, directories: Sequence[str]) -> int:
    if abi < 1:
        raise OSError(38, "Landlock is not available on this kernel")
    attr = _RulesetAttr(
        handled_access_fs=handled_fs(abi),
        handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    size = ctypes.sizeof(attr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = check(
        LIBC.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        for directory in directories:
            parent = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed_access=ACCESS_FS_READ_FILE, parent_fd=parent)
                check(
                    LIBC.syscall(SYS_ADD_RULE, fd, RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                    "landlock_add_rule",
                )
            finally:
                os.close(parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def restrict_self(abi: int, ruleset_fd: int | None = None) -> dict[str, bool]:
    """Deny all filesystem access but the ruleset's reads (and TCP, and signals/abstract
    sockets out of the domain).

    ``ruleset_fd``: a ruleset built for ``abi`` by :func:`prepared_ruleset` (inherited
    from the forking parent); without one, a ruleset without rules is built here.
    Requires no_new_privs. Returns which parts were enforced; raises OSError on failure.
    """
    if abi < 1:
        raise OSError(38, "Landlock is not available on this kernel")
    if ruleset_fd is not None:
        check(LIBC.syscall(SYS_RESTRICT_SELF, ruleset_fd, 0), "landlock_restrict_self")
        return {"landlock": True, "landlock_net": abi >= 4, "landlock_scope": abi >= 6}
    fd = _build_ruleset(abi, ())
    try:
        check(LIBC.syscall(SYS_RESTRICT_SELF, fd, 0), "landlock_restrict_self")
    finally:
        os.close(fd)
    return {"landlock": True, "landlock_net": abi >= 4, "landlock_scope": abi >= 6}
