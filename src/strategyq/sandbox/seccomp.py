"""The seccomp-bpf filter: an allow-list built once with libseccomp, loaded in each child.

libseccomp (through ``pyseccomp``) writes the program from the table in
:mod:`strategyq.sandbox.syscalls`, including the architecture check; the
parent exports it to bytes once. The default action is EPERM, so anything
not in the table — including every call a future kernel adds — fails, and
Python turns it into a PermissionError reported as a prohibited operation.

The program is the same for every child and every Landlock ABI: the one
per-child value, the child's own pid (signals may go to the caller only), is
a placeholder patched into the bytes after fork. A child therefore never
builds a filter (which needs a memory file, refused under ``RLIMIT_FSIZE=0``);
it only makes one ``prctl`` call.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from functools import lru_cache

from strategyq.sandbox import syscalls
from strategyq.sandbox._libc import PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prctl

log = logging.getLogger(__name__)

_INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_JMP_JEQ_K = 0x15


def _op(sc: object, name: str) -> object:
    return {"eq": sc.EQ, "ne": sc.NE, "masked_eq": sc.MASKED_EQ}[name]  # type: ignore[attr-defined]


def build_filter() -> object:
    """The libseccomp filter object: default EPERM, the allow-list of :mod:`syscalls`."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))

    def add(action: object, name: str, *args: object) -> None:
        try:
            flt.add_rule(action, name, *args)
        except OSError as exc:
            # A name this architecture does not have (e.g. `open` on aarch64): nothing to allow.
            log.debug("seccomp: skipping %s: %s", name, exc)

    for name in syscalls.ALLOWED:
        add(sc.ALLOW, name)
    for name, rules in syscalls.FILTERED.items():
        for rule in rules:
            args = []
            for index, op, value, *mask in rule.args:
                if op == "masked_eq":
                    args.append(sc.Arg(index, sc.MASKED_EQ, value, mask[0]))
                else:
                    args.append(sc.Arg(index, _op(sc, op), value))
            add(sc.ALLOW, name, *args)
    for name in syscalls.ENOSYS:
        add(sc.ERRNO(errno.ENOSYS), name)
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
    if not program or len(program) % _INSTRUCTION.size:
        raise OSError(errno.EINVAL, "libseccomp exported an empty or malformed BPF program")
    if not _self_pid_sites(program):
        raise OSError(errno.EINVAL, "the BPF program has no place for the child's pid")
    return program


def _self_pid_sites(program: bytes) -> list[int]:
    return [
        offset
        for offset in range(0, len(program), _INSTRUCTION.size)
        if _INSTRUCTION.unpack_from(program, offset)[0] == _BPF_JMP_JEQ_K
        and _INSTRUCTION.unpack_from(program, offset)[3] == syscalls.SELF_PID
    ]


def for_process(program: bytes, pid: int) -> bytes:
    """``program`` with the child's pid in place of the placeholder (plain byte edits)."""
    patched = bytearray(program)
    for offset in _self_pid_sites(program):
        code, jt, jf, _ = _INSTRUCTION.unpack_from(program, offset)
        _INSTRUCTION.pack_into(patched, offset, code, jt, jf, pid)
    return bytes(patched)


@lru_cache(maxsize=1)
def compiled_program() -> bytes:
    """The allow-list, compiled once per process (pid placeholder not yet patched)."""
    return export_bpf(build_filter())


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_program(program: bytes) -> None:
    """Install a raw BPF program on the calling thread (no_new_privs must be set)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _INSTRUCTION.size, ctypes.cast(buffer, ctypes.c_void_p))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
