"""The worker's handle on one executor process: a pipe, a cancel pipe and a process.

The worker holds the Redis connection and its credentials and does queue I/O
only. Each of its slots starts one executor with ``python -m
strategyq.executor`` and a minimal environment (no ``REDIS_*``, nothing
inherited); the worker's settings are handed over on the command line, without
credentials. This module imports neither the sandbox nor the engine: what the
worker process holds is what it needs.

Worker and executor talk over two pipes with length-prefixed frames: the raw
task message goes in, stage names and one reply come out. A third pipe
carries cancel requests (a byte written to it kills the running sandbox).

The executor runs in a process group of its own, with its sandbox host, so
that a hung one (stopped, or stuck on a market-data volume that stopped
answering) is killed as one at the worker's deadline, or a few seconds after
a cancel it did not act on.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from strategyq.errors import SandboxUnavailable, StrategyqError
from strategyq.executor.frames import read_frame, write_frame
from strategyq.protocol.results import Stage
from strategyq.settings import Settings

# Variables an executor may inherit: none of them can hold a secret.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
_OK_PREFIX = b'{"ok":true,"data":'


@dataclass(frozen=True)
class RunOutcome:
    """What one run in the executor produced."""

    ok: bool
    data: bytes = b""  # the JSON payload when ok
    error: str = ""
    error_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. what the strategy printed


class ExecutorDied(StrategyqError):
    """Raised when the executor process exited while running a task."""

    error_type = "internal"

    def __init__(self, message: str, *, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class ExecutorHung(StrategyqError):
    """Raised when the executor did not answer by the worker's deadline; it was killed."""

    error_type = "timeout"


class ExecutorStopped(StrategyqError):
    """Raised when a cancelled or interrupted run did not stop by itself and was killed."""

    error_type = "cancelled"


CANCEL_GRACE_S = 5.0
"""How long a cancelled run may take to stop by itself before its executor is killed."""

_POLL_S = 0.25


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back for the block; a Ctrl-C that came meanwhile is raised after it.

    A SIGINT may be delivered to any thread of the process (numpy's BLAS threads
    among them), and Python runs its handler in the main thread at the next
    bytecode, wherever that is: a signal mask on the main thread alone does not
    keep the KeyboardInterrupt out. So the Python handler itself is swapped, for
    the block, for one that only takes note.
    """
    if threading.current_thread() is not threading.main_thread():
        # Python runs signal handlers in the main thread only: none is raised here.
        yield
        return
    caught: list[int] = []
    original = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        # A handler installed outside Python reads back as None and cannot be put
        # back; the default one then stands in for it.
        signal.signal(signal.SIGINT, signal.default_int_handler if original is None else original)
    if caught:
        if callable(original):
            original(signal.SIGINT, None)
        elif original == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)
        elif original is None:
            raise KeyboardInterrupt


class ExecutorProcess:
    """One executor process (one task at a time).

    Args:
        settings: the worker's settings, handed to the process (without credentials).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layers: dict[str, bool] = {}
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._req_w = self._resp_r = self._cancel_w = -1
        self._lock = threading.Lock()
        self._kill_at: float | None = None

    def _environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.setdefault("LANG", "C.UTF-8")
        env.update(_ONE_THREAD)
        return env

    def start(self) -> dict[str, bool]:
        """Start the process and wait until it is warm; returns the sandbox layers it supports."""
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it to warm up.

        The executor dies with the thread that spawned it (PR_SET_PDEATHSIG is
        per thread), so call this from a thread that lives as long as the worker.
        """
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        cancel_r, cancel_w = os.pipe()
        argv = [
            sys.executable,
            "-m",
            "strategyq.executor",
            self.settings.for_child_process().decode(),
            str(req_r),
            str(resp_w),
            str(cancel_r),
        ]
        # Ctrl-C held back until the process is ours to kill: a KeyboardInterrupt raised
        # between its fork and Popen's return would leave it running with no handle.
        with interrupts_held():
            try:
                self._proc = subprocess.Popen(
                    argv,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    pass_fds=(req_r, resp_w, cancel_r),
                    close_fds=True,
                    # A group of its own (with its sandbox host): a hung executor or host
                    # is killed as one, never the worker with it.
                    start_new_session=True,
                )
            finally:
                for fd in (req_r, resp_w, cancel_r):
                    os.close(fd)
            self._req_w, self._resp_r, self._cancel_w = req_w, resp_r, cancel_w

    def wait_ready(self) -> dict[str, bool]:
        """Wait until the spawned process is warm; returns the sandbox layers it supports."""
        assert self._proc is not None, "spawn() first"
        frame = read_frame(self._resp_r)
        if frame is None:
            code = self._proc.wait()
            raise SandboxUnavailable(f"the executor process exited at start-up (code {code})")
        ready = orjson.loads(frame)
        self.layers = {str(k): bool(v) for k, v in ready["layers"].items()}
        self.pid = int(ready["pid"])
        return self.layers

    def run(
        self, raw: bytes, on_stage: Callable[[Stage], None], *, deadline_s: float | None = None
    ) -> RunOutcome:
        """Run one task message; ``on_stage`` is called with each stage name as it starts.

        Args:
            raw: The task message.
            on_stage: Called with each stage's name as it starts.
            deadline_s: Seconds the run may take in all; past them the executor (and
                its sandbox host) is killed and :class:`ExecutorHung` raised.

        Raises:
            ExecutorDied: The process exited before it answered.
            ExecutorHung: No answer by the deadline (a stopped process, a hung volume).
            ExecutorStopped: A cancelled run did not stop within ``CANCEL_GRACE_S``.
        """
        with self._lock:
            self._kill_at = None
            deadline = time.monotonic() + deadline_s if deadline_s is not None else None
            write_frame(self._req_w, raw)
            while True:
                self._wait_readable(deadline)
                frame = read_frame(self._resp_r)
                if frame is None:
                    raise self._died()
                if frame.startswith(_OK_PREFIX):
                    return RunOutcome(ok=True, data=frame[len(_OK_PREFIX) : -1])
                message = orjson.loads(frame)
                if "stage" in message:
                    on_stage(Stage(message["stage"]))
                    continue
                return RunOutcome(
                    ok=False,
                    error=str(message["error"]),
                    error_type=str(message["error_type"]),
                    extra={k: message[k] for k in ("logs", "logs_truncated") if k in message},
                )

    def _wait_readable(self, deadline: float | None) -> None:
        """Wait for the next frame; kill the process at the deadline or after a cancel."""
        while True:
            now = time.monotonic()
            limits = [t for t in (deadline, self._kill_at) if t is not None]
            wait_s = min([_POLL_S, *(t - now for t in limits)])
            if wait_s > 0:
                readable, _, _ = select.select([self._resp_r], [], [], wait_s)
                if readable:
                    return
                continue
            self.kill()
            if self._kill_at is not None and now >= self._kill_at:
                raise ExecutorStopped(
                    f"the run did not stop within {CANCEL_GRACE_S:.0f}s of being asked to; "
                    "its executor was killed"
                )
            raise ExecutorHung("the executor did not answer by the worker's deadline; killed it")

    def _died(self) -> ExecutorDied:
        code = self._proc.wait() if self._proc else None
        name = None
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
        how = f"killed by {name}" if name else f"exit code {code}"
        return ExecutorDied(f"the executor process died ({how})", signal_name=name)

    def kill(self) -> None:
        """Kill the executor and its sandbox host at once (also when they are stopped)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        self._proc.wait()

    def cancel(self) -> None:
        """Kill the sandbox of the task now running (no effect when idle).

        A run that has not stopped ``CANCEL_GRACE_S`` later (a stopped or hung
        executor) has its executor killed.
        """
        if self._kill_at is None:
            self._kill_at = time.monotonic() + CANCEL_GRACE_S
        if self._cancel_w >= 0:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self._cancel_w, b"c")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the process (closing its request pipe ends its loop)."""
        for fd in (self._req_w, self._cancel_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._req_w = self._cancel_w = -1
        if self._proc is not None:
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
            # A host left behind (stopped, or hung on a volume) goes with its executor.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        if self._resp_r >= 0:
            os.close(self._resp_r)
            self._resp_r = -1
