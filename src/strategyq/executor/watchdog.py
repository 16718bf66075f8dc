"""The task's deadline and cancel, held while the executor itself works on the task.

The sandbox enforces the time limit and cancel on the strategy's child; this
watchdog holds them for what the executor does around it — loading data,
reading the child's answer, the engine, serialising the result — so a
policy-compliant answer that makes the trusted side slow cannot keep an
executor busy past the task's deadline, nor ignore a cancel.

A thread waits for the deadline or for the cancel pipe to become readable;
then it interrupts the main thread (``SIGUSR1`` to it, whose handler raises
:class:`StrategyTimeout` or :class:`TaskCancelled` at the next bytecode). A
cancel seen while the child is still running is the sandbox's to handle (it
kills the child and raises at once); the watchdog steps in only if nothing
did within :data:`CANCEL_GRACE_S`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time
from types import FrameType, TracebackType

from strategyq.errors import StrategyqError, StrategyTimeout, TaskCancelled

ENGINE_ALLOWANCE_S = 5.0
"""Time the executor may spend on a task beyond the strategy's own time limit."""

CANCEL_GRACE_S = 0.25
"""How long the sandbox gets to act on a cancel itself before the watchdog interrupts."""

_SIGNAL = signal.SIGUSR1


class Watchdog:
    """``with Watchdog(deadline_s, cancel_fd):`` — raise in this thread when either fires.

    Must be entered from the main thread (Python runs signal handlers there).
    ``fired`` tells afterwards whether it interrupted anything.
    """

    def __init__(self, limit_s: float, cancel_fd: int | None, *, time_limit_s: float) -> None:
        self.limit_s = limit_s
        self.time_limit_s = time_limit_s
        self.cancel_fd = cancel_fd
        self.fired: StrategyqError | None = None
        self._armed = False
        self._lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="task-watchdog", daemon=True)
        self._target: int | None = None
        self._deadline = 0.0

    def __enter__(self) -> Watchdog:
        self._deadline = time.monotonic() + self.limit_s
        signal.signal(_SIGNAL, self._interrupt)
        self._target = threading.main_thread().ident
        self._armed = True
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._armed = False
        os.write(self._stop_w, b"x")
        self._thread.join()
        # Not the previous handler: a signal sent just before disarming may still be
        # pending for the interpreter, and must find a handler that ignores it.
        signal.signal(_SIGNAL, _ignore)
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        with self._lock:
            if not self._armed or self.fired is None:
                return
            self._armed = False
            error = self.fired
        raise error

    def _fire(self, error: StrategyqError) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = error
        assert self._target is not None
        with contextlib.suppress(ProcessLookupError):
            signal.pthread_kill(self._target, _SIGNAL)

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        if self.cancel_fd is not None:
            poller.register(self.cancel_fd, select.POLLIN)
        cancel_seen: float | None = None
        while True:
            now = time.monotonic()
            if now >= self._deadline:
                self._fire(
                    StrategyTimeout(
                        f"the task ran past its time limit ({self.time_limit_s:g} s for the "
                        f"strategy, {ENGINE_ALLOWANCE_S:g} s more for its result) and was "
                        "stopped; return fewer or smaller instances"
                    )
                )
                return
            wait = self._deadline - now
            if cancel_seen is not None:
                if now - cancel_seen >= CANCEL_GRACE_S:
                    self._fire(
                        TaskCancelled("the task was cancelled while its result was computed")
                    )
                    return
                wait = min(wait, CANCEL_GRACE_S - (now - cancel_seen))
            for fd, _events in poller.poll(wait * 1000):
                if fd == self._stop_r:
                    return
                if fd == self.cancel_fd and cancel_seen is None:
                    cancel_seen = time.monotonic()
                    poller.unregister(fd)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    return None


def release_memory() -> None:
    """Give memory freed by the last task back to the kernel (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
