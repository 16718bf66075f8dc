"""An executor that runs tasks in the worker's own process, for tests of the worker's logic.

rq's ``SimpleWorker`` and dramatiq's ``StubBroker`` are the models: the
worker's claims, stages, terminal writes, requeues and sweep fan-out run as
in production, against the real server, without an executor process to
start for each worker. The strategy still runs in a sandbox child of a real
sandbox host (one per executor, or one shared by several).

Not for production: the task's data, engine and result live in the worker,
next to its credentials, and no watchdog bounds the trusted side's time (the
sandbox still bounds the strategy's). Crash, sandbox and end-to-end tests use
:class:`~strategyq.executor.client.ExecutorProcess`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from strategyq.data import MarketData
from strategyq.errors import StrategyqError
from strategyq.executor.client import ExecutorDied, RunOutcome
from strategyq.executor.main import INTERNAL_ERROR, SandboxHost, error_fields, parse_request
from strategyq.executor.run.dispatch import run_task
from strategyq.executor.run.payload import fit_payload
from strategyq.protocol.results import Stage
from strategyq.protocol.task import Task
from strategyq.sandbox.forkserver import HostGone
from strategyq.settings import Settings

log = logging.getLogger(__name__)


class InProcessExecutor:
    """Runs each task in the calling thread (one at a time), its strategy in a sandbox host.

    Args:
        settings: the worker's settings.
        host: a sandbox host to share (left running by :meth:`close`); by default
            this executor starts its own.
    """

    def __init__(self, settings: Settings, host: SandboxHost | None = None) -> None:
        self.settings = settings
        self.layers: dict[str, bool] = {}
        self._host = host
        self._owns_host = host is None
        self._market: MarketData | None = None
        self._lock = threading.Lock()
        self._cancel_r, self._cancel_w = os.pipe()
        os.set_blocking(self._cancel_r, False)
        self._alive = True

    def spawn(self) -> None:
        if self._host is None:
            self._host = SandboxHost.start(self.settings)
        self._market = MarketData(self.settings.data_dir, cache_mb=self.settings.data_cache_mb)

    def wait_ready(self) -> dict[str, bool]:
        assert self._host is not None, "spawn() first"
        self.layers = dict(self._host.layers)
        return self.layers

    def start(self) -> dict[str, bool]:
        self.spawn()
        return self.wait_ready()

    def run(
        self, raw: bytes, on_stage: Callable[[Stage], None], *, deadline_s: float | None = None
    ) -> RunOutcome:
        """Run one task message here; ``deadline_s`` is not enforced (the sandbox's limit is)."""
        with self._lock:
            if not self._alive:
                raise ExecutorDied("the in-process executor was killed")
            self._drain_cancels()
            try:
                task = parse_request(self.settings, raw)
                try:
                    data = self._run(task, on_stage)
                except HostGone:
                    log.warning("the sandbox host exited; starting a new one")
                    self._restart_host()
                    data = self._run(task, on_stage)
                body = fit_payload(data, self.settings.max_result_bytes)
            except StrategyqError as exc:
                fields = error_fields(exc)
                return RunOutcome(
                    ok=False,
                    error=str(fields.pop("error")),
                    error_type=str(fields.pop("error_type")),
                    extra=fields,
                )
            except Exception:
                log.exception("in-process executor failed on a task")
                return RunOutcome(ok=False, error=INTERNAL_ERROR, error_type="internal")
            return RunOutcome(ok=True, data=body)

    def _run(self, task: Task, on_stage: Callable[[Stage], None]) -> dict[str, Any]:
        assert self._host is not None and self._market is not None
        s = self.settings
        return run_task(
            task,
            self._market,
            self._host.fork,
            s.sandbox,
            stage=on_stage,
            cancel_fd=self._cancel_r,
            insecure_no_sandbox=s.insecure_no_sandbox,
            max_instances=s.max_instances,
            chunk_size=s.sweep_chunk_size,
        )

    def _drain_cancels(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._cancel_r, 4096):
                pass

    def _restart_host(self) -> None:
        assert self._host is not None
        self._host.close()
        self._host = SandboxHost.start(self.settings)
        self._owns_host = True

    def cancel(self) -> None:
        """Kill the running task's sandbox child (the sandbox reads the cancel pipe)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self._cancel_w, b"c")

    def kill(self) -> None:
        """Take no more tasks (the pool replaces a killed executor)."""
        self._alive = False

    def alive(self) -> bool:
        return self._alive

    def close(self, timeout_s: float = 5.0) -> None:
        self._alive = False
        if self._owns_host and self._host is not None:
            self._host.close()
            self._host = None
        for fd in (self._cancel_r, self._cancel_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._cancel_r = self._cancel_w = -1
