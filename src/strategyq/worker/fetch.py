"""The fetch loop: take a message whenever an executor is idle, run it on a task thread."""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import orjson
import redis

from strategyq.executor.interface import Executor
from strategyq.protocol.envelope import TaskType
from strategyq.queue import StopReason, Taken, TaskQueue
from strategyq.retry import describe, needs_new_connection, reset_connections
from strategyq.worker.inflight import InFlightTasks
from strategyq.worker.lifecycle import TaskRunner
from strategyq.worker.pool import ExecutorPool
from strategyq.worker.redis_health import RedisHealth

log = logging.getLogger(__name__)

BLOCK_S = 1.0
"""Longest wait for a message in the queue's list when this worker has no sweep fanning out."""
FANOUT_BLOCK_S = 0.05
"""The wait while a sweep of this worker plans: its chunks go straight to their lanes, which
the blocking wait does not see, so an idle executor looks again this often instead."""


class FetchLoop:
    """Moves messages into this worker's processing list and hands each to an executor."""

    def __init__(
        self,
        tasks: TaskQueue,
        worker_id: str,
        pool: ExecutorPool,
        runner: TaskRunner,
        health: RedisHealth,
        *,
        burst: bool,
        stopping: threading.Event,
    ) -> None:
        self.tasks = tasks
        self.worker_id = worker_id
        self.pool = pool
        self.runner = runner
        self.health = health
        self.burst = burst
        self.stopping = stopping
        self._threads = ThreadPoolExecutor(pool.settings.concurrency, thread_name_prefix="task")
        self._futures: set[Future[None]] = set()
        self._sweeps: set[Future[None]] = set()

    def run(self) -> None:
        """Until asked to stop (burst mode: until the queue is empty and every task ended)."""
        backoff = 0.1
        while not self.stopping.is_set():
            executor = self.pool.borrow(0.5)
            if executor is None:
                continue
            try:
                taken = self.tasks.take(self.worker_id, self._block_s())
                backoff = 0.1
                if not self.health.ok:
                    self.health.set(True)
            except redis.RedisError as exc:
                self.pool.give_back(executor)
                self.health.set(False)
                if needs_new_connection(exc):
                    reset_connections(self.tasks.client)
                log.warning("cannot take tasks (%s); retrying in %.1fs", describe(exc), backoff)
                self.stopping.wait(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
                continue
            self._futures = {f for f in self._futures if not f.done()}
            self._sweeps = {f for f in self._sweeps if not f.done()}
            if taken is None:
                self.pool.give_back(executor)
                if self.burst:
                    if not self._futures:
                        return
                    # Tasks still running might be requeued; wait for them first.
                    wait(self._futures, return_when=FIRST_COMPLETED)
                continue
            self.runner.inflight.hold(taken.raw)
            future = self._threads.submit(self._run_one, taken, executor)
            self._futures.add(future)
            if _is_sweep(taken.raw):
                self._sweeps.add(future)

    def _block_s(self) -> float | None:
        """How long a take may wait for the queue's list (None: not at all, burst mode)."""
        if self.burst:
            return None
        return FANOUT_BLOCK_S if any(not f.done() for f in self._sweeps) else BLOCK_S

    def _run_one(self, taken: Taken, executor: Executor) -> None:
        try:
            executor = self.runner.handle(taken.raw, executor, taken)
        finally:
            self.runner.inflight.release(taken.raw)
            self.pool.give_back(executor)

    def finish_in_flight(self, grace_period_s: float, inflight: InFlightTasks) -> None:
        """Let in-flight tasks finish within the grace period, then stop (and requeue) them."""
        deadline = time.monotonic() + grace_period_s
        pending = {f for f in self._futures if not f.done()}
        if pending:
            log.info("waiting up to %.0fs for %d task(s)", grace_period_s, len(pending))
        while pending and time.monotonic() < deadline:
            wait(
                pending,
                timeout=min(0.2, max(deadline - time.monotonic(), 0.01)),
                return_when=FIRST_COMPLETED,
            )
            pending = {f for f in pending if not f.done()}
        if pending:
            inflight.stop_all(StopReason.SHUTDOWN)
        for f in self._futures:
            f.result()
        self._threads.shutdown(wait=True)


def _is_sweep(raw: bytes) -> bool:
    """Whether a message is a sweep (whose run queues its chunks), read without trusting it."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("task_type") == TaskType.SWEEP.value
