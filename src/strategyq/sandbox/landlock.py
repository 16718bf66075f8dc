"""Landlock through raw syscalls: no filesystem access at all, no TCP, scoped signals.

Every access right the running kernel's ABI knows is *handled* and no rule is
added, so nothing is allowed. Syscall numbers 444-446 are the same on every
architecture that has Landlock.
"""

from __future__ import annotations

import ctypes
import os

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


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled."""
    result = LIBC.syscall(
        SYS_CREATE_RULESET, ctypes.c_void_p(None), ctypes.c_size_t(0), CREATE_RULESET_VERSION
    )
    return max(int(result), 0)


def handled_fs(abi: int) -> int:
    """Every filesystem right ABI ``abi`` supports."""
    return sum(bits for version, bits in _FS_RIGHTS_BY_ABI.items() if version <= abi)


def restrict_self(abi: int) -> dict[str, bool]:
    """Deny all filesystem access (and TCP, and signals/abstract sockets out of the domain).

    Requires no_new_privs. Returns which parts were enforced; raises OSError on failure.
    """
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
        check(LIBC.syscall(SYS_RESTRICT_SELF, fd, 0), "landlock_restrict_self")
    finally:
        os.close(fd)
    return {"landlock": True, "landlock_net": abi >= 4, "landlock_scope": abi >= 6}
