"""One message, from the processing list to its terminal write (or back to the queue).

The worker reads the message's envelope only (``task_id``, ``task_type``);
the executor parses and validates the task. Every Redis step goes through
:class:`~strategyq.queue.TaskQueue`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from strategyq.executor.client import ExecutorDied, ExecutorProcess, RunOutcome
from strategyq.logs import strategy_fingerprint
from strategyq.observability import WorkerMetrics
from strategyq.protocol import Envelope, MalformedTask, Status, read_envelope, utc_now_iso
from strategyq.queue import ClaimVerdict, FinishVerdict, StopReason, TaskQueue, records
from strategyq.settings import Settings
from strategyq.worker.hooks import Hooks
from strategyq.worker.inflight import InFlight, InFlightTasks
from strategyq.worker.redis_health import RedisHealth

log = logging.getLogger(__name__)

SANDBOX_KILLS = frozenset({"timeout", "memory", "prohibited_operation"})


@dataclass
class Tally:
    """What a worker did, for its one-line shutdown summary."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    requeued: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    discarded: int = 0  # finished runs whose result lost to another run's
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        return (
            f"{self.completed} completed, {self.failed} failed, {self.cancelled} cancelled, "
            f"{self.requeued} requeued, {self.skipped} skipped, "
            f"{self.dead_lettered} dead-lettered, {self.discarded} discarded"
        )


class TaskRunner:
    """Runs one message at a time per calling thread; shared by the worker's task threads."""

    def __init__(
        self,
        tasks: TaskQueue,
        settings: Settings,
        worker_id: str,
        *,
        inflight: InFlightTasks,
        metrics: WorkerMetrics,
        health: RedisHealth,
        hooks: Hooks,
    ) -> None:
        self.tasks = tasks
        self.settings = settings
        self.worker_id = worker_id
        self.inflight = inflight
        self.metrics = metrics
        self.health = health
        self.hooks = hooks
        self.tally = Tally()

    def handle(self, raw: bytes, executor: ExecutorProcess) -> None:
        """Run one message taken off the queue; never raises."""
        try:
            self._handle(raw, executor)
        except Exception:
            # Never lose the worker to one task: the message stays in our
            # processing list and the reaper recovers it if we cannot.
            log.exception("unexpected failure handling a task; it stays in the processing list")

    def _handle(self, raw: bytes, executor: ExecutorProcess) -> None:
        s = self.settings
        try:
            task = read_envelope(
                raw, max_task_bytes=s.max_task_bytes, max_message_bytes=s.max_message_bytes
            )
        except MalformedTask as exc:
            self._reject(raw, exc)
            return
        run = self._claim(task, executor)
        if run is None:
            return
        self.metrics.set_in_flight(self.inflight.add(run))
        try:
            outcome = self._execute(run)
            self.hooks.at_stage(task.task_id, "finishing")
            self._finish(run, outcome)
        finally:
            self.metrics.set_in_flight(self.inflight.remove(task.task_id))

    def _claim(self, task: Envelope, executor: ExecutorProcess) -> InFlight | None:
        task_id = task.task_id
        started_at = utc_now_iso()
        claim = self.health.retry(
            lambda: self.tasks.claim(self.worker_id, task_id, task.task_type.value, started_at),
            what=f"claim of task {task_id}",
        )
        if claim.verdict is not ClaimVerdict.RUN:
            self.health.retry(
                lambda: self.tasks.ack(self.worker_id, task.raw), what=f"ack of task {task_id}"
            )
            if claim.verdict is ClaimVerdict.SKIP:
                self.tally.skipped += 1
                log.info("task %s is already %s; skipped", task_id, claim.status,
                         extra={"task_id": task_id})  # fmt: skip
            else:
                self.tally.cancelled += 1
                log.info("task %s was cancelled before it started", task_id,
                         extra={"task_id": task_id})  # fmt: skip
            return None
        run = InFlight(task, claim.token, claim.attempt, executor, started_at)
        self.metrics.task_started(task.task_type.value)
        log.info(
            "task %s started: %s, attempt %d",
            task_id,
            task.task_type.value,
            claim.attempt,
            extra={
                "task_id": task_id,
                "task_type": task.task_type.value,
                "attempt": claim.attempt,
                # Enough to tell strategies apart, never the source itself.
                "strategy": strategy_fingerprint(task.strategy_code or ""),
            },
        )
        self.hooks.at_stage(task_id, "claimed")
        return run

    def _execute(self, run: InFlight) -> RunOutcome:
        task_id = run.task.task_id
        clock = _StageClock(self.metrics, run.task.task_type.value)

        def on_stage(stage: str) -> None:
            clock.enter(stage)
            self.hooks.at_stage(task_id, stage)
            # Written by the watcher thread: progress is off the task's critical path.
            run.stage = stage

        try:
            return run.executor.run(run.task.raw, on_stage)
        except ExecutorDied as exc:
            log.error("task %s: %s", task_id, exc, extra={"task_id": task_id})
            return RunOutcome(
                ok=False,
                error="the task's executor process died unexpectedly; retry the task",
                error_type="internal",
            )
        except Exception:
            # A bug must not leave the task parked in our processing list.
            log.exception("task %s: unexpected failure", task_id, extra={"task_id": task_id})
            return RunOutcome(
                ok=False,
                error="internal error while running the task; the worker log has details",
                error_type="internal",
            )
        finally:
            clock.enter(None)

    def _record(self, run: InFlight, outcome: RunOutcome, elapsed: float) -> tuple[Status, bytes]:
        timing: dict[str, Any] = {
            "execution_time_ms": round(elapsed * 1000, 3),
            "execution_time_seconds": round(elapsed, 6),
            "worker_id": self.worker_id,
            "completed_at": utc_now_iso(),
        }
        if outcome.ok:
            return Status.COMPLETED, records.completed(outcome.data, timing)
        if outcome.error_type == "cancelled":
            self.metrics.sandbox_kill("cancelled")
            return Status.CANCELLED, records.cancelled(timing["completed_at"], **timing)
        if outcome.error_type in SANDBOX_KILLS:
            self.metrics.sandbox_kill(outcome.error_type)
        return Status.ERROR, records.error(
            outcome.error, outcome.error_type, **outcome.extra, **timing, attempt=run.attempt
        )

    def _finish(self, run: InFlight, outcome: RunOutcome) -> None:
        task_id = run.task.task_id
        elapsed = time.monotonic() - run.started
        if run.stop_reason is StopReason.SHUTDOWN and not outcome.ok:
            self._requeue(run)
            return
        status, record = self._record(run, outcome, elapsed)
        verdict = self._terminal_write(
            task_id, run.token, record, run.task.raw, status.value, run.task.task_type.value
        )
        written = verdict is FinishVerdict.WRITTEN
        outcome_name = status.value if written else f"discarded ({verdict.value})"
        if not written:
            self.tally.discarded += 1
        elif status is Status.COMPLETED:
            self.tally.completed += 1
        elif status is Status.CANCELLED:
            self.tally.cancelled += 1
        else:
            self.tally.failed += 1
        self.metrics.task_finished(run.task.task_type.value, status.value, elapsed)
        log.info(
            "task %s finished: %s in %.1f ms",
            task_id,
            outcome_name,
            elapsed * 1000,
            extra={
                "task_id": task_id,
                "task_type": run.task.task_type.value,
                "duration_ms": round(elapsed * 1000, 3),
                "outcome": outcome_name,
                "error_type": outcome.error_type or None,
            },
        )

    def _terminal_write(
        self, task_id: str, token: str, record: bytes, raw: bytes, status: str, task_type: str
    ) -> FinishVerdict:
        """Write a terminal record, retrying through Redis outages until it lands."""

        def write() -> FinishVerdict:
            verdict = self.tasks.finish(
                self.worker_id, task_id, token, record, raw, status=status, task_type=task_type
            )
            self.hooks.after_finish(task_id)
            return verdict

        verdict = self.health.retry(write, what=f"terminal write of task {task_id}")
        if verdict is FinishVerdict.STALE:
            # After a lost reply our own earlier write may be the one that landed.
            if self.tasks.stored_record(task_id) == record:
                return FinishVerdict.WRITTEN
            log.warning(
                "task %s: this run lost its lease (another run took over); result discarded",
                task_id,
                extra={"task_id": task_id},
            )
        return verdict

    def _requeue(self, run: InFlight) -> None:
        task_id = run.task.task_id
        self.health.retry(
            lambda: self.tasks.requeue(self.worker_id, task_id, run.token, run.task.raw),
            what=f"requeue of task {task_id}",
        )
        self.tally.requeued += 1
        self.metrics.task_finished(
            run.task.task_type.value, "requeued", time.monotonic() - run.started
        )
        log.info(
            "task %s requeued: shutdown before it finished",
            task_id,
            extra={"task_id": task_id, "outcome": "requeued"},
        )

    def _reject(self, raw: bytes, exc: MalformedTask) -> None:
        """A malformed message: an error result when it names a task, else a dead letter."""
        if exc.task_id is None:
            self.health.retry(
                lambda: self.tasks.dead_letter(self.worker_id, raw, "malformed", str(exc)),
                what="dead-lettering a malformed message",
            )
            self.tally.dead_lettered += 1
            log.warning("malformed message dead-lettered: %s", exc)
            return
        task_id = exc.task_id
        claim = self.health.retry(
            lambda: self.tasks.claim(self.worker_id, task_id, None, utc_now_iso()),
            what=f"claim of task {task_id}",
        )
        if claim.verdict is not ClaimVerdict.RUN:
            self.health.retry(lambda: self.tasks.ack(self.worker_id, raw), what="ack")
            return
        record = records.error(str(exc), exc.error_type, worker_id=self.worker_id)
        self._terminal_write(task_id, claim.token, record, raw, Status.ERROR.value, "")
        self.tally.failed += 1
        log.warning(
            "task %s rejected: %s", task_id, exc, extra={"task_id": task_id, "outcome": "error"}
        )


class _StageClock:
    """Times each stage of a task for the stage-duration histogram."""

    def __init__(self, metrics: WorkerMetrics, task_type: str) -> None:
        self.metrics = metrics
        self.task_type = task_type
        self.stage: str | None = None
        self.since = time.monotonic()

    def enter(self, stage: str | None) -> None:
        now = time.monotonic()
        if self.stage is not None:
            self.metrics.stage_duration(self.task_type, self.stage, now - self.since)
        self.stage, self.since = stage, now
