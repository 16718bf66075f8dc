"""The executor: a warm process with no secrets that runs tasks for one worker slot.

The worker holds the Redis connection and its credentials and does queue I/O
only. Each of its slots starts one executor with ``python -m
strategyq.executor`` and a minimal environment (no ``REDIS_*``, nothing
inherited). The executor parses tasks, runs the trusted engine and caches
the market data it needs; it never runs user code. Its own sandbox host
(:mod:`strategyq.datahost`, a process holding only market data) forks one
child per task, so a strategy that reads its own memory finds neither a
secret nor another task's code or results.

Worker and executor talk over two pipes with length-prefixed JSON frames; a
third pipe carries cancel requests (a byte written to it kills the running
sandbox).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from strategyq.errors import SandboxUnavailable, StrategyqError
from strategyq.sandbox.forkserver import ForkClient, HostGone
from strategyq.settings import SandboxLimits, Settings

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 31

# Variables an executor may inherit: none of them can hold a secret.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


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


# ============================================================================ executor side


def die_with_parent() -> None:
    """Ask the kernel to kill us when the worker dies (no orphaned executors)."""
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


@dataclass
class _Host:
    """This executor's sandbox host process and the client that talks to it."""

    process: subprocess.Popen[bytes]
    fork: ForkClient
    layers: dict[str, bool]

    def close(self) -> None:
        """Let go of a host (gone or not): closing its socket ends it; then reap it."""
        self.fork.sock.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start_datahost(settings: Settings, config: dict[str, Any]) -> _Host:
    """Start this executor's sandbox host and wait until it is warm."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    host_config = {"data_dir": str(settings.data_dir), "data_cache_mb": config["data_cache_mb"]}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strategyq.datahost",
            str(theirs.fileno()),
            orjson.dumps(host_config).decode(),
        ],
        stdin=subprocess.DEVNULL,
        pass_fds=(theirs.fileno(),),
        close_fds=True,
    )
    theirs.close()
    ready = orjson.loads(ours.recv(1 << 16) or b'{"layers": {}}')
    if not ready.get("ready"):
        process.wait()
        raise SandboxUnavailable("the sandbox host exited at start-up")
    layers = {str(k): bool(v) for k, v in ready["layers"].items()}
    return _Host(process, ForkClient(ours), layers)


def serve(config: dict[str, Any], req_fd: int, resp_fd: int, cancel_fd: int) -> int:
    """The executor's main loop: one request at a time until the worker closes the pipe."""
    from strategyq.data import MarketData
    from strategyq.protocol import Task, parse_task
    from strategyq.tasks import fit_payload, run_task

    die_with_parent()
    # SIGINT/SIGTERM go to the whole process group from a terminal; the worker
    # decides when its executors stop (by closing their pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    flags = fcntl.fcntl(cancel_fd, fcntl.F_GETFL)
    fcntl.fcntl(cancel_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    settings = Settings.from_env()
    limits = SandboxLimits(**config["limits"])
    insecure = bool(config["insecure_no_sandbox"])
    market = MarketData(settings.data_dir, cache_mb=int(config["data_cache_mb"]))
    host = _start_datahost(settings, config)
    write_frame(resp_fd, orjson.dumps({"ready": True, "layers": host.layers, "pid": os.getpid()}))

    def stage(name: str) -> None:
        write_frame(resp_fd, orjson.dumps({"stage": name}))

    def run(task: Task) -> dict[str, Any]:
        return run_task(
            task,
            market,
            host.fork,
            limits,
            stage=stage,
            cancel_fd=cancel_fd,
            insecure_no_sandbox=insecure,
            max_instances=int(config["max_instances"]),
        )

    while True:
        request = read_frame(req_fd)
        if request is None:
            return 0
        _drain(cancel_fd)
        try:
            task = parse_task(request, max_task_bytes=MAX_FRAME_BYTES)
            try:
                data = run(task)
            except HostGone:
                # Killed from outside (the OOM killer, an operator): start a new host
                # and run the task once more, like a task whose worker was lost.
                log.warning("the sandbox host exited; starting a new one")
                host.close()
                host = _start_datahost(settings, config)
                data = run(task)
            body = fit_payload(data, int(config["max_result_bytes"]))
            write_frame(resp_fd, b'{"ok":true,"data":' + body + b"}")
        except StrategyqError as exc:
            reply = {"ok": False, "error": str(exc), "error_type": exc.error_type}
            write_frame(resp_fd, orjson.dumps(reply))
        except Exception:
            log.exception("executor failed on a task")
            reply = {
                "ok": False,
                "error": "internal error while running the task; the worker log has the details",
                "error_type": "internal",
            }
            write_frame(resp_fd, orjson.dumps(reply))


# ============================================================================ worker side


@dataclass
class Outcome:
    """What one run in the executor produced."""

    ok: bool
    data: bytes = b""  # the JSON payload when ok
    error: str = ""
    error_type: str = ""


class ExecutorDied(StrategyqError):
    """Raised when the executor process exited while running a task."""

    error_type = "internal"

    def __init__(self, message: str, *, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class ExecutorHung(StrategyqError):
    """Raised when the executor did not answer by the worker's own deadline; it was killed."""

    error_type = "timeout"


class ExecutorStopped(StrategyqError):
    """Raised when a cancelled or interrupted run did not stop by itself and was killed."""

    error_type = "cancelled"


CANCEL_GRACE_S = 5.0
"""How long a cancelled run may take to stop by itself before its executor is killed."""

_POLL_S = 0.25


class Executor:
    """The worker's handle on one executor process (one task at a time)."""

    def __init__(self, settings: Settings, *, insecure_no_sandbox: bool = False) -> None:
        self.settings = settings
        self.insecure_no_sandbox = insecure_no_sandbox
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
        env["STRATEGYQ_HOME"] = str(self.settings.home)
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
        limits = self.settings.sandbox
        config = {
            "limits": {
                "time_limit_s": limits.time_limit_s,
                "memory_mb": limits.memory_mb,
                "result_max_bytes": limits.result_max_bytes,
                "max_open_files": limits.max_open_files,
            },
            "insecure_no_sandbox": self.insecure_no_sandbox,
            "data_cache_mb": self.settings.data_cache_mb,
            "max_instances": self.settings.max_instances,
            "max_result_bytes": self.settings.max_result_bytes,
        }
        argv = [
            sys.executable,
            "-m",
            "strategyq.executor",
            orjson.dumps(config).decode(),
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
                # Its own process group (with its sandbox host): a hung executor or host
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
        self, raw: bytes, on_stage: Callable[[str], None], *, deadline_s: float | None = None
    ) -> Outcome:
        """Run one task message; ``on_stage`` is called with each stage name as it starts.

        Args:
            raw: The task message.
            on_stage: Called with each stage's name as it starts.
            deadline_s: Seconds the run may take in all; past them the executor (and
                its sandbox host) is killed and :class:`ExecutorHung` raised.

        Raises:
            ExecutorDied: The process exited during the run.
            ExecutorHung: No answer by the deadline (a stopped process, a hung volume).
            ExecutorStopped: A cancelled run did not stop within ``CANCEL_GRACE_S``.
        """
        with self._lock:
            self._kill_at = None
            started = time.monotonic()
            deadline = started + deadline_s if deadline_s is not None else None
            write_frame(self._req_w, raw)
            while True:
                self._wait_readable(deadline)
                frame = read_frame(self._resp_r)
                if frame is None:
                    raise self._died()
                if frame.startswith(b'{"ok":true,"data":'):
                    return Outcome(ok=True, data=frame[len(b'{"ok":true,"data":') : -1])
                message = orjson.loads(frame)
                if "stage" in message:
                    on_stage(str(message["stage"]))
                    continue
                return Outcome(
                    ok=False, error=str(message["error"]), error_type=str(message["error_type"])
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
            if self._kill_at is not None and now >= self._kill_at:
                self.kill()
                raise ExecutorStopped(
                    f"the run did not stop within {CANCEL_GRACE_S:.0f}s of being asked to; "
                    "its executor was killed"
                )
            self.kill()
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
        """Kill the executor and its sandbox host at once (also when stopped)."""
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


def main(argv: list[str]) -> int:
    config = orjson.loads(argv[0])
    req_fd, resp_fd, cancel_fd = (int(x) for x in argv[1:4])
    return serve(config, req_fd, resp_fd, cancel_fd)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="executor %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
