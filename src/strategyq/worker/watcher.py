"""The watcher: publishes running tasks' stages, kills the sandbox of cancelled ones, and
puts back messages of this worker's processing list that no handler holds."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import orjson
import redis

from strategyq.queue import StopReason, TaskQueue, records
from strategyq.retry import describe, needs_new_connection, reset_connections
from strategyq.worker.inflight import InFlightTasks

log = logging.getLogger(__name__)

POLL_S = 0.2


class Watcher:
    """A daemon thread: every ``POLL_S``, one round trip for every task in flight."""

    def __init__(
        self,
        tasks: TaskQueue,
        inflight: InFlightTasks,
        worker_id: str,
        *,
        sweep_interval_s: float = 3.0,
    ) -> None:
        self.tasks = tasks
        self.inflight = inflight
        self.worker_id = worker_id
        self.sweep_interval_s = sweep_interval_s
        self.orphans = 0
        self._suspects: Counter[bytes] = Counter()
        self._next_sweep = 0.0
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
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.sweep_interval_s
                try:
                    self.sweep()
                except redis.RedisError as exc:
                    log.warning("sweeping the processing list failed (%s)", describe(exc))
            self.poll()

    def sweep(self) -> int:
        """Put back messages in this worker's processing list that no handler holds.

        One gets there when BLMOVE's reply was lost, or when handling it failed
        unexpectedly; the heartbeat stays alive, so the reaper never takes it. A
        message seen unheld in two sweeps in a row goes back to the queue (the first
        sighting may be a BLMOVE whose reply is on its way). Returns how many.
        """
        unheld = self.inflight.unheld(self.tasks.processing(self.worker_id))
        confirmed = unheld & self._suspects
        self._suspects = unheld - confirmed
        moved = 0
        for raw, count in confirmed.items():
            for _ in range(count):
                moved += self._put_back(raw)
        return moved

    def _put_back(self, raw: bytes) -> int:
        try:
            task_id = str(orjson.loads(raw)["task_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            task_id = ""
        if not self.tasks.requeue(self.worker_id, task_id, "", raw):
            return 0
        self.orphans += 1
        log.warning(
            "task %s: found in this worker's processing list without a run; back in the queue",
            task_id or "<malformed>",
            extra={"task_id": task_id or None},
        )
        return 1

    def poll(self) -> None:
        """Write changed stages (only while each run holds its token); act on cancel flags."""
        running = self.inflight.snapshot()
        if not running:
            return
        pipe = self.tasks.client.pipeline(transaction=False)
        # A sweep's chunk stops with its sweep: it watches the sweep's flag.
        self.tasks.cancel_flags(pipe, [r.task.sweep_id or r.task.task_id for r in running])
        staged = [(r, r.stage) for r in running if r.stage != r.stage_written]
        for r, stage in staged:
            record = records.running(
                r.task.task_id,
                r.task.task_type.value,
                self.worker_id,
                r.started_at,
                stage,
                r.attempt,
                r.submitted_at,
            )
            self.tasks.stage(pipe, r.task.task_id, r.token, record)
        try:
            flags = pipe.execute()[0]
        except redis.RedisError as exc:
            if needs_new_connection(exc):
                reset_connections(self.tasks.client)
            return
        for r, stage in staged:
            r.stage_written = stage
        for r, flag in zip(running, flags, strict=True):
            if flag is not None and r.stop_reason is None and r.stop(StopReason.CANCELLED):
                log.info(
                    "task %s: cancel requested", r.task.task_id, extra={"task_id": r.task.task_id}
                )
