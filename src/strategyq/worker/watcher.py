"""The watcher: publishes running tasks' stages and kills the sandbox of cancelled ones."""

from __future__ import annotations

import logging
import threading

import redis

from strategyq.queue import StopReason, TaskQueue, records
from strategyq.worker.inflight import InFlightTasks

log = logging.getLogger(__name__)

POLL_S = 0.2


class Watcher:
    """A daemon thread: every ``POLL_S``, one round trip for every task in flight."""

    def __init__(self, tasks: TaskQueue, inflight: InFlightTasks, worker_id: str) -> None:
        self.tasks = tasks
        self.inflight = inflight
        self.worker_id = worker_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        """Write changed stages (only while each run holds its token); act on cancel flags."""
        running = self.inflight.snapshot()
        if not running:
            return
        pipe = self.tasks.client.pipeline(transaction=False)
        self.tasks.cancel_flags(pipe, [r.task.task_id for r in running])
        staged = [(r, r.stage) for r in running if r.stage != r.stage_written]
        for r, stage in staged:
            record = records.running(
                r.task.task_id,
                r.task.task_type.value,
                self.worker_id,
                r.started_at,
                stage,
                r.attempt,
            )
            self.tasks.stage(pipe, r.task.task_id, r.token, record)
        try:
            flags = pipe.execute()[0]
        except redis.RedisError:
            return
        for r, stage in staged:
            r.stage_written = stage
        for r, flag in zip(running, flags, strict=True):
            if flag is not None and r.stop_reason is None and r.stop(StopReason.CANCELLED):
                log.info(
                    "task %s: cancel requested", r.task.task_id, extra={"task_id": r.task.task_id}
                )
