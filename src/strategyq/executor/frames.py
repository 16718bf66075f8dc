"""Length-prefixed frames on pipes, and what every process of the chain does at start-up."""

from __future__ import annotations

import ctypes
import os
import signal
import struct

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 31


def write_frame(fd: int, payload: bytes) -> None:
    """Write one length-prefixed frame (all of it)."""
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes | None:
    """Read one frame; None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is too large")
    return _read_exact(fd, size) if size else b""


def die_with_parent() -> None:
    """Ask the kernel to kill us when our parent dies (no orphaned processes)."""
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def ignore_terminal_signals() -> None:
    """SIGINT/SIGTERM go to the whole process group from a terminal; the parent
    decides when this process stops (by closing its pipe or socket)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A spawner may have blocked SIGINT while it forked us (a signal mask survives
    # exec): ignored now, so unblocked again for whatever this process starts.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
