"""One message, from the processing list to its terminal write (or back to the queue).

The worker reads the message's envelope only (``task_id``, ``task_type``);
the executor parses and validates the task. Every Redis step goes through
:class:`~strategyq.queue.TaskQueue`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from strategyq.errors import TenantQuotaExceeded
from strategyq.executor.client import (
    ExecutorDied,
    ExecutorHung,
    ExecutorStopped,
    RunOutcome,
)
from strategyq.executor.interface import Executor
from strategyq.logs import strategy_fingerprint
from strategyq.observability import WorkerMetrics
from strategyq.protocol.chunks import is_chunk_id
from strategyq.protocol.envelope import Envelope, MalformedTask, TaskType, read_envelope
from strategyq.protocol.results import Stage, Status, utc_now_iso
from strategyq.queue import ClaimVerdict, FinishVerdict, StopReason, Taken, TaskQueue, records
from strategyq.settings import Settings
from strategyq.worker.hooks import Hooks
from strategyq.worker.inflight import InFlight, InFlightTasks
from strategyq.worker.redis_health import RedisHealth
from strategyq.worker.sweeps import SweepWorker

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
    duplicates: int = 0  # messages whose task id was in use (dead-lettered)
    rerun: int = 0  # runs started again after their executor died or hung
    orphans: int = 0  # messages put back from the processing list without a run
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        return (
            f"{self.completed} completed, {self.failed} failed, {self.cancelled} cancelled, "
            f"{self.requeued} requeued, {self.skipped} skipped, "
            f"{self.dead_lettered} dead-lettered, {self.discarded} discarded, "
            f"{self.duplicates} duplicate, {self.rerun} re-run, {self.orphans} put back"
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
        replace: Callable[[Executor], Executor],
    ) -> None:
        self.tasks = tasks
        self.replace = replace
        self.settings = settings
        self.worker_id = worker_id
        self.inflight = inflight
        self.metrics = metrics
        self.health = health
        self.hooks = hooks
        self.tally = Tally()
        self.sweeps = SweepWorker(tasks, settings, worker_id, health)

    def handle(self, raw: bytes, executor: Executor, taken: Taken | None = None) -> Executor:
        """Run one message taken off the queue; never raises.

        ``taken`` is what the take said of it: its lane and tenant, or why it was not
        queued (then it is answered with an error result instead of being run).

        Returns:
            The executor to give back: a fresh one when the run's died or hung.
        """
        slot = [executor]
        try:
            self._handle(raw, slot, taken)
        except Exception:
            # Never lose the worker to one task: the message stays in our processing
            # list, and the watcher's sweep puts it back in the queue.
            log.exception("unexpected failure handling a task; it goes back to the queue")
        return slot[0]

    def _handle(self, raw: bytes, slot: list[Executor], taken: Taken | None) -> None:
        executor = slot[0]
        s = self.settings
        try:
            task = read_envelope(
                raw, max_task_bytes=s.max_task_bytes, max_message_bytes=s.max_message_bytes
            )
        except MalformedTask as exc:
            self._reject(raw, exc)
            return
        if taken is not None and taken.refusal:
            self._refuse(task, taken)
            return
        if taken is not None:
            self.metrics.task_taken(taken.lane, taken.tenant, taken.wait_ms / 1000)
        run = self._claim(task, executor)
        if run is None:
            return
        if taken is not None:
            run.result_cap = taken.result_cap
        self.metrics.set_in_flight(self.inflight.add(run))
        try:
            outcome = self._execute(run, slot)
            self.hooks.at_stage(task.task_id, Stage.FINISHING)
            self._finish(run, outcome)
        finally:
            self.metrics.set_in_flight(self.inflight.remove(task.task_id))

    def _claim(self, task: Envelope, executor: Executor) -> InFlight | None:
        task_id = task.task_id
        started_at = utc_now_iso()
        if (task.task_type is TaskType.SWEEP_CHUNK) != (task.sweep_id is not None) or (
            task.task_type is not TaskType.SWEEP_CHUNK and is_chunk_id(task_id)
        ):
            # A chunk without its sweep, or another task under a chunk's id (which
            # would take that id's record before the real chunk runs): not run.
            self._forged(task)
            return None
        if task.task_type is TaskType.SWEEP_CHUNK and task.sweep_id is not None:
            claim = self.sweeps.claim_chunk(task, started_at)
        else:
            claim = self.health.retry(
                lambda: self.tasks.claim(self.worker_id, task_id, task.task_type.value, started_at),
                what=f"claim of task {task_id}",
            )
        if claim.verdict is ClaimVerdict.DUPLICATE:
            self._duplicate(task, claim.status)
            return None
        if claim.verdict is ClaimVerdict.FORGED:
            self._forged(task)
            return None
        if claim.verdict is not ClaimVerdict.RUN:
            self.health.retry(
                lambda: self.tasks.ack(self.worker_id, task.raw), what=f"ack of task {task_id}"
            )
            if claim.verdict is ClaimVerdict.SKIP:
                self.tally.skipped += 1
                log.info(
                    "task %s is already %s; skipped",
                    task_id,
                    claim.status,
                    extra={"task_id": task_id},
                )
            else:
                self.tally.cancelled += 1
                log.info(
                    "task %s was cancelled before it started", task_id, extra={"task_id": task_id}
                )
            return None
        run = InFlight(task, claim.token, claim.attempt, executor, started_at, claim.submitted_at)
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
        self.hooks.at_stage(task_id, Stage.CLAIMED)
        return run

    def _duplicate(self, task: Envelope, status: str) -> None:
        """A message whose task id is in use: not run, the other task's record left alone."""
        task_id = task.task_id
        error = (
            f"task id {task_id!r} is already in use by another task ({status}); this message "
            "was not run. Give every task its own id (a new UUID); the other task's result "
            f"is at task_result:{task_id}"
        )
        self.health.retry(
            lambda: self.tasks.dead_letter(
                self.worker_id, task.raw, "duplicate", error, duplicate_of=task_id, status=status
            ),
            what=f"dead-lettering a duplicate of task {task_id}",
        )
        self.tally.duplicates += 1
        log.warning(
            "task %s: another task with this id is %s; this message was not run and is in "
            "the dead-letter list (give every task its own id)",
            task_id,
            status,
            extra={"task_id": task_id, "outcome": "duplicate"},
        )

    def _forged(self, task: Envelope) -> None:
        """A ``sweep_chunk`` message no fan-out queued, or another task under a chunk's id
        (a producer pushed it): not run, no record written; kept in the dead-letter list."""
        task_id = task.task_id
        error = (
            f"message {task_id!r} is, or is named like, a chunk of a sweep that did not queue "
            "it; it was not run. sweep_chunk tasks and ids of the form <sweep id>/chunk/<n> "
            "belong to the chunks workers queue: submit a sweep, or pick another task id"
        )
        self.health.retry(
            lambda: self.tasks.dead_letter(self.worker_id, task.raw, "forged_chunk", error),
            what=f"dead-lettering a forged chunk {task_id}",
        )
        self.tally.skipped += 1
        log.warning(
            "task %s: a sweep_chunk message its sweep did not queue; not run, dead-lettered",
            task_id,
            extra={"task_id": task_id, "outcome": "forged"},
        )

    def deadline_s(self, task: Envelope) -> float:
        """The worker's own limit on one run: the sandbox's time limit (or the task's lower
        one) plus a margin for loading data and computing the result."""
        limit = self.settings.sandbox.time_limit_s
        asked = task.timeout_s
        if asked:
            limit = min(limit, asked)
        return limit + self.settings.executor_margin_s

    def _execute(self, run: InFlight, slot: list[Executor]) -> RunOutcome:
        task_id = run.task.task_id
        clock = _StageClock(self.metrics, run.task.task_type.value)

        def on_stage(stage: Stage) -> None:
            clock.enter(stage)
            self.hooks.at_stage(task_id, stage)
            # Written by the watcher thread: progress is off the task's critical path.
            run.stage = stage

        try:
            return self._run_guarded(run, on_stage, slot)
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

    def _run_guarded(
        self, run: InFlight, on_stage: Callable[[Stage], None], slot: list[Executor]
    ) -> RunOutcome:
        """Run under the worker's deadline; a run whose executor died or hung runs once
        more in a fresh executor (as for a killed sandbox host), then fails with the reason."""
        task_id = run.task.task_id
        deadline_s = self.deadline_s(run.task)
        failures: list[str] = []
        while True:
            try:
                return slot[0].run(run.task.raw, on_stage, deadline_s=deadline_s)
            except ExecutorStopped as exc:
                log.warning("task %s: %s", task_id, exc, extra={"task_id": task_id})
                slot[0] = run.executor = self.replace(slot[0])
                return RunOutcome(ok=False, error=str(exc), error_type="cancelled")
            except (ExecutorDied, ExecutorHung) as exc:
                hung = isinstance(exc, ExecutorHung)
                reason = (
                    f"the run did not finish within the worker's deadline ({deadline_s:.0f}s: "
                    "the time limit plus STRATEGYQ_EXECUTOR_MARGIN), so its executor was killed"
                    if hung
                    else str(exc)
                )
                failures.append(reason)
                slot[0] = run.executor = self.replace(slot[0])
                if run.stop_reason is not None:
                    return RunOutcome(ok=False, error=reason, error_type="cancelled")
                if len(failures) == 1:
                    self.tally.rerun += 1
                    log.warning(
                        "task %s: %s; running it once more in a fresh executor",
                        task_id,
                        reason,
                        extra={"task_id": task_id},
                    )
                    continue
                log.error("task %s: %s, twice", task_id, reason, extra={"task_id": task_id})
                return _lost_executor(failures, hung=hung)

    def _record(self, run: InFlight, outcome: RunOutcome, elapsed: float) -> tuple[Status, bytes]:
        timing: dict[str, Any] = {
            "execution_time_ms": round(elapsed * 1000, 3),
            "execution_time_seconds": round(elapsed, 6),
            "worker_id": self.worker_id,
            "started_at": run.started_at,
            "completed_at": utc_now_iso(),
        }
        if run.submitted_at is not None:
            timing["submitted_at"] = run.submitted_at
        # The producer's args go with the result, so a finished run can be read,
        # reproduced and resubmitted after its message is gone (the API hides
        # their strategy_code from read-scope callers).
        args = _message_args(run.task.raw)
        if args is not None:
            timing["task_args"] = args
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
        kind = run.task.task_type
        if kind is TaskType.SWEEP and outcome.ok:
            outcome = self.sweeps.count_combinations(run, outcome)
        if kind is TaskType.SWEEP and outcome.ok:
            self._sweep_step(run, outcome, self.sweeps.fan_out(run, outcome), elapsed)
            return
        if kind is TaskType.SWEEP_CHUNK and run.task.sweep_id and outcome.error_type != "cancelled":
            self._sweep_step(run, outcome, self.sweeps.chunk_finished(run, outcome), elapsed)
            return
        status, record = self._record(run, outcome, elapsed)
        if run.result_cap is not None and status is Status.COMPLETED:
            over = self.health.retry(
                lambda: self.tasks.result_room(run.task.tenant, len(record)),
                what=f"result quota of task {task_id}",
            )
            if over is not None:
                status, record = Status.ERROR, self._quota_record(over, run.task.tenant)
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

    def _sweep_step(self, run: InFlight, outcome: RunOutcome, verdict: str, elapsed: float) -> None:
        """Tally and log a sweep's fan-out or one of its chunks (``verdict`` from SweepWorker)."""
        if verdict in {"fanned_out", "counted", "completed"}:
            self.tally.completed += 1
        elif verdict == "failed":
            self.tally.failed += 1
        else:
            self.tally.discarded += 1
        status = "completed" if outcome.ok else "error"
        self.metrics.task_finished(run.task.task_type.value, status, elapsed)
        log.info(
            "task %s finished: %s (%s) in %.1f ms",
            run.task.task_id,
            status if outcome.ok else f"error {outcome.error_type}",
            verdict,
            elapsed * 1000,
            extra={
                "task_id": run.task.task_id,
                "task_type": run.task.task_type.value,
                "duration_ms": round(elapsed * 1000, 3),
                "outcome": verdict,
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
        if verdict is FinishVerdict.MISSING:
            log.warning(
                "task %s: its fencing token was gone from Redis although this run held it: "
                "the server dropped it (an allkeys-* maxmemory-policy evicts any key: set "
                "noeviction), or a failover lost the claim. The result was written, as no "
                "other result existed",
                task_id,
                extra={"task_id": task_id},
            )
            return FinishVerdict.WRITTEN
        if verdict in (FinishVerdict.STALE, FinishVerdict.ALREADY):
            # After a lost reply our own earlier write may be the one that landed.
            stored = self.health.retry(
                lambda: self.tasks.stored_record(task_id), what=f"reading task {task_id}"
            )
            if stored == record:
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
            lambda: self.tasks.requeue(
                self.worker_id, task_id, run.token, run.task.raw, submitted_at=run.submitted_at
            ),
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

    def _quota_record(self, over: TenantQuotaExceeded, tenant: str) -> bytes:
        return records.error(
            str(over),
            over.error_type,
            quota=over.quota,
            tenant=tenant,
            limit=over.limit,
            used=over.used,
            worker_id=self.worker_id,
        )

    def _refuse(self, task: Envelope, taken: Taken) -> None:
        """A message the take did not queue (its tenant over a quota, or an unknown
        lane): an error result that says why, and the message acknowledged."""
        if taken.refusal == "quota":
            over = TenantQuotaExceeded(taken.tenant, taken.quota, taken.limit, taken.used, 0)
            record = self._quota_record(over, taken.tenant)
            reason = str(over)
        else:
            reason = (
                f"priority {taken.quota!r} is not a lane of this queue; use 'interactive', "
                "'batch' or a lane the operator added (strategyq lane list)"
                if taken.refusal == "unknown_lane"
                else "the message's tenant or priority cannot be used (see docs/queue.md)"
            )
            record = records.error(reason, "validation", worker_id=self.worker_id)
        task_id = task.task_id
        claim = self.health.retry(
            lambda: self.tasks.claim(self.worker_id, task_id, None, utc_now_iso()),
            what=f"claim of task {task_id}",
        )
        if claim.verdict is not ClaimVerdict.RUN:
            self.health.retry(lambda: self.tasks.ack(self.worker_id, task.raw), what="ack")
            return
        self._terminal_write(task_id, claim.token, record, task.raw, Status.ERROR.value, "")
        self.tally.failed += 1
        log.warning(
            "task %s refused: %s", task_id, reason, extra={"task_id": task_id, "outcome": "error"}
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


def _lost_executor(failures: list[str], *, hung: bool) -> RunOutcome:
    """The answer of a task whose executor was lost twice."""
    if hung:
        return RunOutcome(
            ok=False,
            error=(
                f"{failures[-1]}, twice; the strategy or its data never answered (a hung "
                "market-data volume?). Check the worker's data volume, or give the task a "
                "smaller universe or date range, and retry"
            ),
            error_type="timeout",
        )
    hint = (
        " (SIGKILL is what the out-of-memory killer sends: lower memory_mb or the number "
        "of symbols, or give the worker more memory)"
        if "SIGKILL" in failures[-1]
        else ""
    )
    return RunOutcome(
        ok=False,
        error=(
            f"the task's executor process died twice: {'; '.join(failures)}{hint}; "
            "retry the task once the cause is fixed"
        ),
        error_type="internal",
    )


class _StageClock:
    """Times each stage of a task for the stage-duration histogram."""

    def __init__(self, metrics: WorkerMetrics, task_type: str) -> None:
        self.metrics = metrics
        self.task_type = task_type
        self.stage: Stage | None = None
        self.since = time.monotonic()

    def enter(self, stage: Stage | None) -> None:
        now = time.monotonic()
        if self.stage is not None:
            self.metrics.stage_duration(self.task_type, self.stage, now - self.since)
        self.stage, self.since = stage, now


def _message_args(raw: bytes) -> dict[str, Any] | None:
    """The ``args`` of a wire message (None when it has none as an object)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    args = message.get("args") if isinstance(message, dict) else None
    return args if isinstance(args, dict) else None
