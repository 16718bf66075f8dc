"""The worker's part in a sweep: queue its chunks, count them in, write its result.

No trading here: the executor planned the chunks and ran them; assembling
the result (:mod:`strategyq.sweep.assemble`) is ranking and arithmetic on
the chunks' JSON.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from strategyq.executor.client import RunOutcome
from strategyq.protocol.chunks import chunk_position, read_fanout
from strategyq.protocol.envelope import Envelope
from strategyq.protocol.results import Stage, Status, dumps, envelope, utc_now_iso
from strategyq.queue import Claim, TaskQueue, records
from strategyq.queue.sweeps import ChunkVerdict, SweepQueue
from strategyq.queue.types import ClaimVerdict, text
from strategyq.settings import Settings
from strategyq.sweep.assemble import assemble
from strategyq.worker.inflight import InFlight
from strategyq.worker.redis_health import RedisHealth

log = logging.getLogger(__name__)


class SweepWorker:
    """Sweep transitions for one worker's task threads."""

    def __init__(
        self, tasks: TaskQueue, settings: Settings, worker_id: str, health: RedisHealth
    ) -> None:
        self.sweeps = SweepQueue(tasks)
        self.settings = settings
        self.worker_id = worker_id
        self.health = health

    def claim_chunk(self, task: Envelope, started_at: str) -> Claim:
        assert task.sweep_id is not None
        sweep_id = task.sweep_id
        running = records.running(
            task.task_id, task.task_type.value, self.worker_id, started_at, Stage.STARTING
        )
        try:
            index, _count = chunk_position(task.raw)
        except (ValueError, KeyError, TypeError):
            return Claim(ClaimVerdict.FORGED, status="not a chunk message")
        cancelled = records.cancelled()
        return self.health.retry(
            lambda: self.sweeps.claim_chunk(
                self.worker_id, task.task_id, sweep_id, running, cancelled, task.raw, index
            ),
            what=f"claim of chunk {task.task_id}",
        )

    def count_combinations(self, run: InFlight, outcome: RunOutcome) -> RunOutcome:
        """Count the planned sweep's combinations against its tenant's day: ``outcome``
        itself, or an error outcome naming the quota when that would pass it."""
        plan, _ = read_fanout(outcome.data)
        tenant = run.task.tenant
        over = self.health.retry(
            lambda: self.sweeps.tasks.count_combinations(tenant, int(plan["total"])),
            what=f"combinations quota of sweep {run.task.task_id}",
        )
        if over is None:
            return outcome
        return RunOutcome(
            ok=False,
            error=str(over),
            error_type=over.error_type,
            extra={"quota": over.quota, "tenant": tenant, "limit": over.limit, "used": over.used},
        )

    def fan_out(self, run: InFlight, outcome: RunOutcome) -> str:
        """The executor planned the sweep: queue its chunks and acknowledge it."""
        task = run.task
        plan, chunks = read_fanout(outcome.data)
        plan.update(started_at=run.started_at, started_epoch=time.time())
        if run.submitted_at is not None:
            plan["submitted_at"] = run.submitted_at
        # The sweep's args ride in its plan to whichever worker writes its result.
        args = orjson.loads(task.raw).get("args")
        if isinstance(args, dict):
            plan["task_args"] = args
        running = dumps(
            envelope(
                Status.RUNNING,
                {
                    "task_id": task.task_id,
                    "task_type": "sweep",
                    **({"submitted_at": run.submitted_at} if run.submitted_at else {}),
                    "fanned_out": True,
                    "worker_id": self.worker_id,
                    "started_at": run.started_at,
                    "stage": Stage.RUNNING_CHUNKS,
                    "chunks": len(chunks),
                    "progress": {"done": 0, "total": plan["total"]},
                },
            )
        )
        verdict = self.health.retry(
            lambda: self.sweeps.fan_out(
                self.worker_id,
                task.task_id,
                run.token,
                task.raw,
                running,
                dumps(plan),
                int(plan["total"]),
                chunks,
            ),
            what=f"fan-out of sweep {task.task_id}",
        )
        log.info(
            "sweep %s: %s, %d combinations in %d chunks",
            task.task_id,
            verdict,
            plan["total"],
            len(chunks),
            extra={"task_id": task.task_id, "outcome": verdict},
        )
        return verdict

    def chunk_finished(self, run: InFlight, outcome: RunOutcome) -> str:
        """Count a finished chunk in (or fail its sweep); write the sweep when it is complete.

        Returns ``completed`` (this run wrote the sweep's result), ``failed`` (this
        run's error is the sweep's), ``counted``, ``stale``, ``over`` or ``already``.
        """
        task = run.task
        assert task.sweep_id is not None
        sweep_id = task.sweep_id
        index, count = chunk_position(task.raw)
        if not outcome.ok:
            return self._chunk_failed(run, outcome, sweep_id, index)
        chunk_record = dumps(
            envelope(
                Status.COMPLETED,
                {
                    "sweep_id": sweep_id,
                    "chunk": index,
                    "combinations": count,
                    "worker_id": self.worker_id,
                    "completed_at": utc_now_iso(),
                },
            )
        )
        counted = self.health.retry(
            lambda: self.sweeps.chunk_done(
                self.worker_id,
                task.task_id,
                sweep_id,
                index,
                count,
                run.token,
                task.raw,
                chunk_record,
                outcome.data,
            ),
            what=f"count of chunk {task.task_id}",
        )
        if counted is not ChunkVerdict.ASSEMBLE:
            return counted.value
        plan_raw, done, chunk_values = self.health.retry(
            lambda: self.sweeps.read(sweep_id), what=f"read of sweep {sweep_id}"
        )
        if plan_raw is None:
            return ChunkVerdict.OVER.value
        verdict = self._finish(run, chunk_record, self._sweep_record(plan_raw, done, chunk_values))
        return "completed" if verdict == "written" else verdict

    def _chunk_failed(self, run: InFlight, outcome: RunOutcome, sweep_id: str, index: int) -> str:
        """Fail the sweep with the chunk's error (``failed``: this run's error is the sweep's)."""
        chunk_record = records.error(outcome.error, outcome.error_type, sweep_id=sweep_id)
        sweep_record = records.error(
            outcome.error, outcome.error_type, chunk=index, worker_id=self.worker_id
        )
        verdict = self._finish(run, chunk_record, sweep_record, failed=True)
        return "failed" if verdict == "written" else verdict

    def _sweep_record(self, plan_raw: Any, done: int, chunk_values: dict[Any, Any]) -> bytes:
        """The sweep's result record, assembled from its plan and every chunk's answer."""
        plan = orjson.loads(plan_raw)
        chunks = {int(text(k)): orjson.loads(v) for k, v in chunk_values.items()}
        data = assemble(plan, chunks, self.settings.sweep_max_results)
        elapsed = time.time() - float(plan["started_epoch"])
        data.update(
            # Combinations counted as their chunks finished: each chunk counts once.
            progress={"done": done, "total": plan["total"]},
            started_at=plan["started_at"],
            execution_time_ms=round(elapsed * 1000, 3),
            execution_time_seconds=round(elapsed, 6),
            worker_id=self.worker_id,
            completed_at=utc_now_iso(),
        )
        if isinstance(plan.get("task_args"), dict):
            data["task_args"] = plan["task_args"]
        if isinstance(plan.get("submitted_at"), str):
            data["submitted_at"] = plan["submitted_at"]
        record = dumps(envelope(Status.COMPLETED, data))
        while len(record) > self.settings.max_result_bytes and data.get("results"):
            # Past the result cap the ranked list is halved (best first; counts kept).
            data["results"] = data["results"][: len(data["results"]) // 2]
            data["results_returned"] = len(data["results"])
            data["results_truncated"] = True
            record = dumps(envelope(Status.COMPLETED, data))
        return record

    def _finish(
        self, run: InFlight, chunk_record: bytes, sweep_record: bytes, *, failed: bool = False
    ) -> str:
        task = run.task
        assert task.sweep_id is not None
        sweep_id = task.sweep_id
        return self.health.retry(
            lambda: self.sweeps.finish(
                self.worker_id,
                task.task_id,
                sweep_id,
                run.token,
                task.raw,
                chunk_record,
                sweep_record,
                failed=failed,
            ),
            what=f"result of sweep {sweep_id}",
        )
