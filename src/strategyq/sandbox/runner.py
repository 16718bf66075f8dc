"""Supervising a started sandbox child: a wall-clock deadline, cancel, a capped JSON answer."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strategyq import errors
from strategyq.sandbox import result

if TYPE_CHECKING:
    from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_KILL_MARGIN_S = 0.05


class _Outcome:
    __slots__ = ("cancelled", "complete", "data", "overflow", "timed_out")

    def __init__(self) -> None:
        self.data = bytearray()
        self.timed_out = False
        self.cancelled = False
        self.overflow = False
        self.complete = False


_unreaped: list[int] = []
"""Children killed after their answer arrived, whose exit has not been collected yet."""


def reap_finished(block: bool = False) -> None:
    """Collect killed children; by default without waiting for those still tearing down."""
    for pid in list(_unreaped):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _unreaped.remove(pid)


atexit.register(reap_finished, True)


def _kill(pid: int, pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        # Already gone (and maybe reaped elsewhere): its pid could name another group now.
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _drain(read_fd: int, out: _Outcome, cap: int) -> bool:
    """Read what is available; True at end of file."""
    while True:
        try:
            chunk = os.read(read_fd, _CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        out.data += chunk
        if len(out.data) > cap:
            out.overflow = True
            return True


def _supervise(
    pid: int, pidfd: int, read_fd: int, cancel_fd: int | None, deadline: float, cap: int
) -> _Outcome:
    out = _Outcome()
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    if cancel_fd is not None:
        poller.register(cancel_fd, select.POLLIN)
    pipe_open, exited = True, False
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            out.timed_out = True
            break
        for fd, _events in poller.poll(remaining * 1000):
            if fd == cancel_fd:
                out.cancelled = True
            elif fd == read_fd and pipe_open:
                if _drain(read_fd, out, cap):
                    pipe_open = False
                    poller.unregister(read_fd)
                    # The child closes the pipe right after its one message: the answer is
                    # complete, and waiting for the address-space teardown gains nothing.
                    out.complete = bool(out.data) and not out.overflow
            elif fd == pidfd:
                exited = True
        if out.cancelled or out.overflow or out.complete:
            break
    if exited and pipe_open and not out.overflow:
        _drain(read_fd, out, cap)
    return out


def defer_reap(pid: int) -> None:
    """Hand over a child that answered and was killed, to be collected later."""
    _unreaped.append(pid)


def reap_now(pid: int) -> tuple[int, float]:
    """Wait for a child of this process; its exit status and CPU seconds."""
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _failure(status: int, cpu_s: float, cpu_limit: int, time_limit_s: float) -> errors.SandboxError:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit - 0.5):
            return errors.StrategyTimeout(
                f"the strategy used more than {time_limit_s:g} s of CPU time; make it faster "
                "or run it on less data"
            )
        if sig in (signal.SIGSYS, signal.SIGXFSZ):
            return errors.ProhibitedOperation(
                "the strategy made a system call the sandbox forbids (files, network or processes)"
            )
        if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            return errors.StrategyMemoryError(
                f"the strategy process crashed ({signal.Signals(sig).name}), most likely by "
                "running out of memory; use less data or fewer copies"
            )
        return errors.StrategyFailed(
            f"the strategy process was killed by {signal.Signals(sig).name}"
        )
    return errors.StrategyFailed(
        f"the strategy process exited (code {os.WEXITSTATUS(status)}) without a result; "
        "return a list of dicts from the strategy function instead of exiting"
    )


def collect(
    pid: int,
    pidfd: int,
    read_fd: int,
    limits: SandboxLimits,
    cpu_limit_s: int,
    *,
    started: float,
    cancel_fd: int | None,
    reap: Callable[[int], tuple[int, float]],
    defer: Callable[[int], None],
    keep_columns: bool = False,
) -> tuple[Any, result.Logs]:
    """Supervise a started child, read its answer, and turn the outcome into instances or an error.

    ``reap(pid)`` waits for the child's exit and returns (status, CPU seconds);
    ``defer(pid)`` hands over a child that answered and was killed, to be reaped later.
    ``keep_columns`` is :func:`result.decode`'s. Closes ``pidfd`` and ``read_fd``.
    """
    cap = limits.answer_max_bytes + 1
    try:
        os.set_blocking(read_fd, False)
        out = _supervise(
            pid, pidfd, read_fd, cancel_fd, started + limits.time_limit_s + _KILL_MARGIN_S, cap
        )
        # Kill the group while the child is still unreaped: its pid cannot be reused yet.
        _kill(pid, pidfd)
        if out.complete:
            defer(pid)
        else:
            status, cpu_s = reap(pid)
    finally:
        os.close(pidfd)
        os.close(read_fd)
    if out.complete:
        return result.decode_answer(
            out.data, keep_columns=keep_columns, max_bytes=limits.answer_max_bytes
        )
    if out.cancelled:
        raise errors.TaskCancelled("the task was cancelled while its strategy was running")
    if out.timed_out:
        raise errors.StrategyTimeout(
            f"the strategy ran longer than {limits.time_limit_s:g} s and was stopped; make it "
            "faster or run it on less data"
        )
    if out.overflow:
        raise result.too_large(limits.answer_max_bytes)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and out.data:
        return result.decode_answer(
            out.data, keep_columns=keep_columns, max_bytes=limits.answer_max_bytes
        )
    raise _failure(status, cpu_s, cpu_limit_s, limits.time_limit_s)
