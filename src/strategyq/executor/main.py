"""The executor process: parses each task once, runs the engine, starts its sandbox host.

Started by the worker (:mod:`strategyq.executor.client`) with an empty
environment and the worker's settings on the command line. It never runs user
code: its own sandbox host (:mod:`strategyq.executor.sandbox_host`, a process
holding only market data) forks one child per task, so a strategy that reads
its own memory finds neither a secret nor another task's code or results.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from strategyq.errors import SandboxUnavailable, StrategyqError
from strategyq.executor.frames import (
    die_with_parent,
    ignore_terminal_signals,
    read_frame,
    write_frame,
)
from strategyq.executor.watchdog import ENGINE_ALLOWANCE_S, Watchdog, release_memory
from strategyq.sandbox.forkclient import ForkClient, HostGone
from strategyq.sandbox.result import Logs, cap_text
from strategyq.settings import Settings
from strategyq.startup import warming_up

if TYPE_CHECKING:
    from strategyq.data import MarketData
    from strategyq.protocol.results import Stage
    from strategyq.protocol.task import Task

log = logging.getLogger(__name__)


@dataclass
class SandboxHost:
    """This executor's sandbox host process and the fork client that talks to it."""

    process: subprocess.Popen[bytes]
    fork: ForkClient
    layers: dict[str, bool]

    @classmethod
    def start(cls, settings: Settings) -> SandboxHost:
        """Start a sandbox host and wait until it is warm."""
        return cls.launch(settings).wait_ready()

    @classmethod
    def launch(cls, settings: Settings) -> _HostStarting:
        """Start a sandbox host without waiting (:meth:`_HostStarting.wait_ready` waits)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strategyq.executor.sandbox_host",
                str(theirs.fileno()),
                settings.for_child_process().decode(),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            close_fds=True,
        )
        theirs.close()
        return _HostStarting(process, ours)

    def close(self) -> None:
        """Let go of a host (gone or not): closing its socket ends it; then reap it."""
        self.fork.sock.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class _HostStarting:
    """A sandbox host warming up."""

    process: subprocess.Popen[bytes]
    sock: socket.socket

    def wait_ready(self) -> SandboxHost:
        """Wait until the host and its fork servers are warm."""
        ready = orjson.loads(self.sock.recv(1 << 16) or b'{"layers": {}}')
        if not ready.get("ready"):
            self.process.wait()
            raise SandboxUnavailable("the sandbox host exited at start-up")
        layers = {str(k): bool(v) for k, v in ready["layers"].items()}
        return SandboxHost(self.process, ForkClient(self.sock), layers)


def _discard_cancels(fd: int) -> None:
    """Forget cancel bytes left over from the previous task."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


ERROR_TEXT_MAX_BYTES = 16 * 1024
"""An error record's message is cut to this (a child's errors are far shorter already)."""


def error_reply(exc: StrategyqError, max_bytes: int) -> bytes:
    """The error record of a task: capped like a result, at ``max_bytes`` all told.

    The message is cut to :data:`ERROR_TEXT_MAX_BYTES`; what the strategy printed
    (at most 64 KiB from the child) is cut further until the whole record fits,
    and then flagged ``logs_truncated``.
    """
    text, _ = cap_text(str(exc), ERROR_TEXT_MAX_BYTES)
    logs = getattr(exc, "logs", None)
    record: dict[str, object] = {"ok": False, "error": text, "error_type": exc.error_type}
    record.update(logs.fields() if isinstance(logs, Logs) else {})
    encoded = orjson.dumps(record)
    printed = record.get("logs")
    room = len(printed.encode()) if isinstance(printed, str) else 0
    while len(encoded) > max_bytes and isinstance(printed, str) and printed:
        # JSON escapes can take up to 6 bytes a character: halve until it fits.
        room = min(room, max_bytes) // 2
        printed, _ = cap_text(printed, room)
        record.update(logs=printed, logs_truncated=True)
        encoded = orjson.dumps(record)
    return encoded


def _internal_reply() -> bytes:
    return orjson.dumps({"ok": False, "error": INTERNAL_ERROR, "error_type": "internal"})


def serve(settings: Settings, req_fd: int, resp_fd: int, cancel_fd: int) -> int:
    """The executor's main loop: one request at a time until the worker closes the pipe."""
    die_with_parent()
    ignore_terminal_signals()
    # The sandbox host and its fork servers warm up while this process loads what the
    # first task needs: on more than one core the three import pandas side by side.
    starting = SandboxHost.launch(settings)
    with warming_up():
        # Loaded at start-up, before the ready message, rather than during the first task.
        from strategyq.data import MarketData
        from strategyq.executor.run.dispatch import run_task  # noqa: F401
        from strategyq.executor.run.payload import fit_payload  # noqa: F401
        from strategyq.protocol.task import parse_task  # noqa: F401

        market = MarketData(settings.data_dir, cache_mb=settings.data_cache_mb)
    flags = fcntl.fcntl(cancel_fd, fcntl.F_GETFL)
    fcntl.fcntl(cancel_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    executor = _Executor(settings, market, starting.wait_ready(), resp_fd, cancel_fd)
    layers = executor.host.layers
    write_frame(resp_fd, orjson.dumps({"ready": True, "layers": layers, "pid": os.getpid()}))
    while True:
        request = read_frame(req_fd)
        if request is None:
            return 0
        _discard_cancels(cancel_fd)
        try:
            write_frame(resp_fd, executor.answer(request))
        except StrategyqError as exc:
            write_frame(resp_fd, error_reply(exc, settings.max_result_bytes))
        except Exception:
            log.exception("executor failed on a task")
            write_frame(resp_fd, _internal_reply())
        finally:
            release_memory()


def parse_request(settings: Settings, request: bytes) -> Task:
    """The one full parse and validation of a task, with the worker's limits."""
    from strategyq.protocol.task import parse_task

    return parse_task(
        request,
        max_task_bytes=settings.max_task_bytes,
        max_symbols=settings.max_symbols,
        max_limit=settings.max_screening_limit,
        max_combinations=settings.sweep_max_combinations,
    )


def error_fields(exc: StrategyqError) -> dict[str, Any]:
    """A failed run's reply fields: the error, its type, and what the strategy printed."""
    logs = getattr(exc, "logs", None)
    printed = logs.fields() if isinstance(logs, Logs) else {}
    return {"error": str(exc), "error_type": exc.error_type, **printed}


INTERNAL_ERROR = "internal error while running the task; the worker log has the details"


@dataclass
class _Executor:
    """What the executor's loop keeps between tasks: its settings, data and sandbox host."""

    settings: Settings
    market: MarketData
    host: SandboxHost
    resp_fd: int
    cancel_fd: int

    def answer(self, request: bytes) -> bytes:
        """Parse and run one task under its watchdog; the reply frame of a completed task."""
        from strategyq.executor.run.payload import fit_payload

        settings = self.settings
        task = parse_request(settings, request)
        time_limit_s = settings.sandbox.capped(
            time_limit_s=task.options.timeout_s, memory_mb=task.options.memory_mb
        ).time_limit_s
        guard = Watchdog(
            time_limit_s + ENGINE_ALLOWANCE_S, self.cancel_fd, time_limit_s=time_limit_s
        )
        try:
            with guard:
                try:
                    data = self.run(task)
                except HostGone:
                    # Killed from outside (the OOM killer, an operator): start a new
                    # host and run the task once more, like a task whose worker was lost.
                    log.warning("the sandbox host exited; starting a new one")
                    self.restart_host()
                    data = self.run(task)
                body = fit_payload(data, settings.max_result_bytes)
        finally:
            if guard.fired is not None:
                # Interrupted anywhere, maybe between a message from the sandbox host
                # and its bookkeeping: a fresh host is the known-good state.
                log.warning(
                    "task stopped by the watchdog (%s); restarting the sandbox host",
                    guard.fired.error_type,
                )
                self.restart_host()
        return b'{"ok":true,"data":' + body + b"}"

    def run(self, task: Task) -> dict[str, Any]:
        """Run one task on this executor's data and sandbox host."""
        from strategyq.executor.run.dispatch import run_task

        settings = self.settings
        return run_task(
            task,
            self.market,
            self.host.fork,
            settings.sandbox,
            stage=self.stage,
            cancel_fd=self.cancel_fd,
            insecure_no_sandbox=settings.insecure_no_sandbox,
            max_instances=settings.max_instances,
            chunk_size=settings.sweep_chunk_size,
            max_fanout_bytes=settings.max_result_bytes,
        )

    def stage(self, name: Stage) -> None:
        """Tell the worker which stage the task has reached."""
        write_frame(self.resp_fd, orjson.dumps({"stage": name}))

    def restart_host(self) -> None:
        """Let go of the sandbox host and start a fresh one."""
        self.host.close()
        self.host = SandboxHost.start(self.settings)


def main(argv: list[str]) -> int:
    """``python -m strategyq.executor SETTINGS_JSON REQ_FD RESP_FD CANCEL_FD``."""
    settings = Settings.from_child_json(argv[0])
    req_fd, resp_fd, cancel_fd = (int(x) for x in argv[1:4])
    return serve(settings, req_fd, resp_fd, cancel_fd)
