"""Fan-out and fan-in of sweeps over the queue (the worker's side; no trading here).

A worker that claims a sweep asks its executor for the plan (the
walk-forward folds, after checking the data exists), then splits the
combinations into chunks and, in one script (``sweep_fanout.lua``), queues
them as ``sweep_chunk`` tasks and acknowledges the sweep. Chunks are ordinary
tasks for the queue (claimed with a fencing token, re-run when their worker
dies, dead-lettered after ``max_attempts``), with three differences: a chunk
of a cancelled or failed sweep is skipped (``chunk_claim.lua``); a finished
chunk's result is counted into its sweep once (``chunk_done.lua``); and the
run that completes the last chunk, or whose strategy fails, writes the
sweep's result (``sweep_finish.lua``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import redis

from strategyq import keys
from strategyq.protocol import ChunkArgs, Status, SweepArgs, Task, dumps, envelope, error_data
from strategyq.protocol import utc_now_iso as now_iso
from strategyq.scripts import Scripts
from strategyq.settings import Settings
from strategyq.sweep.assemble import assemble

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[Callable[[], T]], T]

# Args of a sweep that its chunks do not need.
_SWEEP_ONLY = ("param_grid", "constraint", "walk_forward", "top_n", "heatmap_params")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def chunk_messages(task: Task, folds: list[dict[str, Any]] | None, chunk_size: int) -> list[bytes]:
    """The sweep's combinations as chunk tasks, in grid order.

    ``chunk_size`` counts strategy calls: a walk-forward combination makes two
    per fold (training and test window), so its chunks hold fewer combinations.
    """
    args = task.args
    assert isinstance(args, SweepArgs)
    raw_args = {k: v for k, v in orjson.loads(task.raw)["args"].items() if k not in _SWEEP_ONLY}
    calls = 1 if folds is None else 2 * len(folds)
    per_chunk = max(1, chunk_size // calls)
    combos = list(enumerate(args.grid.combinations))
    messages = []
    for n, at in enumerate(range(0, len(combos), per_chunk)):
        chunk_args = {
            **raw_args,
            "maximize": args.maximize,
            "sweep_id": task.task_id,
            "chunk": n,
            "combinations": [[i, c] for i, c in combos[at : at + per_chunk]],
            "folds": folds,
        }
        messages.append(
            dumps(
                {
                    "task_id": keys.chunk_id(task.task_id, n),
                    "task_type": "sweep_chunk",
                    "args": chunk_args,
                }
            )
        )
    return messages


def _plan(task: Task, plan_data: dict[str, Any], chunk_count: int) -> dict[str, Any]:
    args = task.args
    assert isinstance(args, SweepArgs)
    return {
        "names": list(args.grid.names),
        "axes": {k: list(v) for k, v in args.grid.axes.items()},
        "maximize": args.maximize,
        "top_n": args.top_n,
        "constraint": args.constraint,
        "heatmap": list(args.heatmap) if args.heatmap else None,
        "expanded": args.grid.expanded,
        "total": len(args.grid),
        "chunks": chunk_count,
        "walk_forward": args.walk_forward.to_json() if args.walk_forward else None,
        "folds": plan_data.get("folds"),
        "sessions": plan_data.get("sessions"),
        "sessions_left_out": plan_data.get("sessions_left_out"),
        "date_range": [args.backtest.start_raw, args.backtest.end_raw],
        "symbols": list(args.backtest.symbols),
        "started_at": now_iso(),
        "started_epoch": time.time(),
    }


class SweepQueue:
    """The sweep transitions for one worker."""

    def __init__(
        self, client: redis.Redis, scripts: Scripts, settings: Settings, worker_id: str
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.settings = settings
        self.worker_id = worker_id

    @property
    def ttl(self) -> int:
        return self.settings.result_ttl_s

    def fan_out(self, task: Task, token: str, plan_data: dict[str, Any], retry: Retry[Any]) -> str:
        """Queue the sweep's chunks and acknowledge it; returns the script's verdict."""
        folds = plan_data.get("folds")
        messages = chunk_messages(task, folds, self.settings.sweep_chunk_size)
        plan = _plan(task, plan_data, len(messages))
        assert isinstance(task.args, SweepArgs)
        running = dumps(
            envelope(
                Status.RUNNING,
                {
                    "task_id": task.task_id,
                    "task_type": "sweep",
                    "fanned_out": True,
                    "stage": "running_chunks",
                    "started_at": plan["started_at"],
                    "chunks": len(messages),
                    "progress": {"done": 0, "total": len(task.args.grid)},
                },
            )
        )
        verdict = retry(
            lambda: self.scripts.sweep_fanout(
                keys=[
                    keys.result(task.task_id),
                    keys.token(task.task_id),
                    keys.processing(self.worker_id),
                    keys.sweep(task.task_id),
                    keys.sweep_chunks(task.task_id),
                    self.settings.queue_name,
                    keys.attempts(task.task_id),
                ],
                args=[
                    token, running, self.ttl, task.raw, dumps(plan), plan["total"], len(messages),
                    *messages,
                ],
            )
        )  # fmt: skip
        log.info(
            "sweep %s: %s into %d chunks of %d combinations",
            task.task_id,
            _text(verdict),
            len(messages),
            plan["total"],
            extra={"task_id": task.task_id},
        )
        return _text(verdict)

    def claim_chunk(self, task: Task, running_record: bytes, cancelled_record: bytes) -> Any:
        args = task.args
        assert isinstance(args, ChunkArgs)
        return self.scripts.chunk_claim(
            keys=[
                keys.result(task.task_id),
                keys.attempts(task.task_id),
                keys.token(task.task_id),
                keys.FENCE_COUNTER,
                keys.processing(self.worker_id),
                keys.cancel(args.sweep_id),
                keys.result(args.sweep_id),
            ],
            args=[task.raw, self.ttl, running_record, cancelled_record],
        )

    def chunk_completed(self, task: Task, token: str, data: bytes, retry: Retry[Any]) -> str:
        """Count a chunk's result into its sweep; assemble and write the sweep when it was the
        last. Returns what happened: ``completed`` (this run wrote the sweep's result),
        ``counted``, ``stale`` or ``over`` (the sweep had ended)."""
        args = task.args
        assert isinstance(args, ChunkArgs)
        record = self._chunk_record(Status.COMPLETED, args)
        verdict = _text(
            retry(
                lambda: self.scripts.chunk_done(
                    keys=[
                        keys.result(task.task_id),
                        keys.token(task.task_id),
                        keys.processing(self.worker_id),
                        keys.attempts(task.task_id),
                        keys.sweep(args.sweep_id),
                        keys.sweep_chunks(args.sweep_id),
                        keys.result(args.sweep_id),
                    ],
                    args=[
                        token, record, self.ttl, task.raw, args.chunk, data,
                        len(args.combinations), now_iso(),
                    ],
                )
            )
        )  # fmt: skip
        if verdict != "assemble":
            return verdict
        pipe_values = retry(lambda: self._read_sweep(args.sweep_id))
        plan_raw, chunk_values = pipe_values
        if plan_raw is None:
            return "over"
        plan = orjson.loads(plan_raw)
        chunks = {int(_text(k)): orjson.loads(v) for k, v in chunk_values.items()}
        data_out = assemble(plan, chunks, self.settings.sweep_max_results)
        elapsed = time.time() - float(plan["started_epoch"])
        data_out.update(
            started_at=plan["started_at"],
            execution_time_ms=round(elapsed * 1000, 3),
            execution_time_seconds=round(elapsed, 6),
            worker_id=self.worker_id,
            completed_at=now_iso(),
        )
        final = dumps(envelope(Status.COMPLETED, data_out))
        written = self._finish_sweep(task, token, final, record, "complete", retry)
        return "completed" if written == "written" else written

    def chunk_failed(
        self, task: Task, token: str, error: str, error_type: str, retry: Retry[Any]
    ) -> str:
        """A chunk's strategy failed: fail its sweep with that error and stop its other chunks."""
        args = task.args
        assert isinstance(args, ChunkArgs)
        now = now_iso()
        record = dumps(
            envelope(Status.ERROR, error_data(error, error_type, sweep_id=args.sweep_id))
        )
        final = dumps(
            envelope(
                Status.ERROR,
                error_data(
                    error, error_type, chunk=args.chunk, worker_id=self.worker_id, failed_at=now
                ),
            )
        )
        return self._finish_sweep(task, token, final, record, "fail", retry)

    def _read_sweep(self, sweep_id: str) -> tuple[Any, Any]:
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(keys.sweep(sweep_id), "plan")
        pipe.hgetall(keys.sweep_chunks(sweep_id))
        plan, chunks = pipe.execute()
        return plan, chunks

    def _chunk_record(self, status: Status, args: ChunkArgs) -> bytes:
        return dumps(
            envelope(
                status,
                {
                    "sweep_id": args.sweep_id,
                    "chunk": args.chunk,
                    "combinations": len(args.combinations),
                    "worker_id": self.worker_id,
                    "completed_at": now_iso(),
                },
            )
        )

    def _finish_sweep(
        self, task: Task, token: str, final: bytes, record: bytes, mode: str, retry: Retry[Any]
    ) -> str:
        args = task.args
        assert isinstance(args, ChunkArgs)
        sweep_id = args.sweep_id
        return _text(
            retry(
                lambda: self.scripts.sweep_finish(
                    keys=[
                        keys.result(sweep_id),
                        keys.done(sweep_id),
                        keys.sweep(sweep_id),
                        keys.sweep_chunks(sweep_id),
                        keys.result(task.task_id),
                        keys.token(task.task_id),
                        keys.processing(self.worker_id),
                        keys.attempts(task.task_id),
                        keys.cancel(sweep_id),
                    ],
                    args=[
                        token, final, self.ttl, task.raw, self.settings.done_ttl_s, record, mode,
                    ],
                )
            )
        )  # fmt: skip
