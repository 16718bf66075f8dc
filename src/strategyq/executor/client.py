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
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from strategyq.errors import SandboxUnavailable, StrategyqError
from strategyq.executor.frames import read_frame, write_frame
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
        try:
            self._proc = subprocess.Popen(
                argv,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                pass_fds=(req_r, resp_w, cancel_r),
                close_fds=True,
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

    def run(self, raw: bytes, on_stage: Callable[[str], None]) -> RunOutcome:
        """Run one task message; ``on_stage`` is called with each stage name as it starts.

        Raises:
            ExecutorDied: the process exited before it answered.
        """
        with self._lock:
            write_frame(self._req_w, raw)
            while True:
                frame = read_frame(self._resp_r)
                if frame is None:
                    code = self._proc.wait() if self._proc else None
                    raise ExecutorDied(f"the executor process died (exit code {code})")
                if frame.startswith(_OK_PREFIX):
                    return RunOutcome(ok=True, data=frame[len(_OK_PREFIX) : -1])
                message = orjson.loads(frame)
                if "stage" in message:
                    on_stage(str(message["stage"]))
                    continue
                return RunOutcome(
                    ok=False,
                    error=str(message["error"]),
                    error_type=str(message["error_type"]),
                    extra={k: message[k] for k in ("logs", "logs_truncated") if k in message},
                )

    def cancel(self) -> None:
        """Kill the sandbox of the task now running (no effect when idle)."""
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
                self._proc.kill()
                self._proc.wait()
        if self._resp_r >= 0:
            os.close(self._resp_r)
            self._resp_r = -1
