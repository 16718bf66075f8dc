"""The tasks a worker is running now, shared by the task threads, the watcher and heartbeats."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from strategyq.executor.interface import Executor
from strategyq.protocol.envelope import Envelope
from strategyq.protocol.results import Stage
from strategyq.queue import StopReason


@dataclass
class InFlight:
    """One run of a task on this worker."""

    task: Envelope
    token: str
    attempt: int
    executor: Executor
    started_at: str
    submitted_at: str | None = None  # when the task was first queued (None: not known)
    started: float = field(default_factory=time.monotonic)
    stop_reason: StopReason | None = None
    stage: Stage = Stage.STARTING
    stage_written: Stage = Stage.STARTING
    result_cap: int | None = None  # the tenant's max_result_bytes when the run was taken

    def stop(self, reason: StopReason) -> bool:
        """Kill the run's sandbox; the first reason asked is the one that counts.

        Returns:
            Whether this call set the reason (False: it had been asked before).
        """
        first = self.stop_reason is None
        if first:
            self.stop_reason = reason
        self.executor.cancel()
        return first


class InFlightTasks:
    """A thread-safe registry of the runs in progress."""

    def __init__(self) -> None:
        self._runs: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        # Messages taken (BLMOVE returned) and not yet done with, claimed or not: what
        # else sits in the processing list has no handler (see Watcher.sweep).
        self._held: Counter[bytes] = Counter()

    def hold(self, raw: bytes) -> None:
        with self._lock:
            self._held[raw] += 1

    def release(self, raw: bytes) -> None:
        with self._lock:
            self._held[raw] -= 1
            if self._held[raw] <= 0:
                del self._held[raw]

    def unheld(self, listed: list[bytes]) -> Counter[bytes]:
        """The messages of ``listed`` (a processing list) that no handler holds."""
        with self._lock:
            return Counter(listed) - self._held

    def add(self, run: InFlight) -> int:
        with self._lock:
            self._runs[run.task.task_id] = run
            return len(self._runs)

    def remove(self, task_id: str) -> int:
        with self._lock:
            self._runs.pop(task_id, None)
            return len(self._runs)

    def snapshot(self) -> list[InFlight]:
        with self._lock:
            return list(self._runs.values())

    def stop_all(self, reason: StopReason) -> None:
        for run in self.snapshot():
            run.stop(reason)

    def describe(self) -> list[dict[str, Any]]:
        """For the heartbeat record: id, attempt and start of each run."""
        return [
            {"task_id": r.task.task_id, "attempt": r.attempt, "started_at": r.started_at}
            for r in self.snapshot()
        ]
