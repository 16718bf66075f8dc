"""The Celery app of the peer comparison: the RQ job (``rq_job.run_strategy``) as a task.

Celery's prefork pool runs it in long-lived children with no isolation between tasks,
which makes it the ceiling for a queue without a sandbox. The broker and result
backend come from ``STRATEGYQ_BENCH_CELERY_URL``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from benchmarks import rq_job

URL = os.environ.get("STRATEGYQ_BENCH_CELERY_URL", "redis://127.0.0.1:6379/0")
app = Celery("strategyq_bench", broker=URL, backend=URL)
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=False, result_expires=600)


@app.task(name="bench.run_strategy")  # type: ignore[untyped-decorator]
def run_strategy(home: str, code: str, symbols: list[str], start: str, end: str) -> Any:
    return rq_job.run_strategy(home, code, symbols, start, end)
