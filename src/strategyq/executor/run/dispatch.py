"""One parsed task in, its result payload out: the table of runners by task type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strategyq.data import MarketData
from strategyq.executor.run import backtest, screening, sweep
from strategyq.executor.run.context import RunContext, StageCallback
from strategyq.protocol.envelope import TaskType
from strategyq.protocol.task import Task
from strategyq.sandbox.forkserver import ForkClient
from strategyq.settings import SandboxLimits

Runner = Callable[[Task, RunContext], dict[str, Any]]

RUNNERS: dict[TaskType, Runner] = {
    TaskType.BACKTEST: backtest.run,
    TaskType.SCREENING: screening.run,
    TaskType.SWEEP: sweep.plan,
    TaskType.SWEEP_CHUNK: sweep.run_chunk,
}
"""How each task type runs; a sweep's runner returns its plan (the worker queues its chunks)."""


def run_task(
    task: Task,
    market: MarketData,
    fork: ForkClient,
    limits: SandboxLimits,
    *,
    stage: StageCallback,
    cancel_fd: int | None = None,
    insecure_no_sandbox: bool = False,
    max_instances: int = 10_000,
    chunk_size: int = 25,
) -> dict[str, Any]:
    """Run one parsed task and return its result payload (plain JSON values).

    A sweep returns its plan (``{"fanout": ...}``: the chunk tasks, of
    ``chunk_size`` strategy calls each, for the worker to queue).
    """
    ctx = RunContext(
        market=market,
        fork=fork,
        limits=limits.capped(time_limit_s=task.options.timeout_s, memory_mb=task.options.memory_mb),
        stage=stage,
        cancel_fd=cancel_fd,
        insecure=insecure_no_sandbox,
        max_instances=min(max_instances, task.options.max_instances or max_instances),
        chunk_size=chunk_size,
    )
    return RUNNERS[task.task_type](task, ctx)
