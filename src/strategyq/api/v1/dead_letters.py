"""``/v1/dead-letters``: list, retry and purge the tasks that ran out of attempts.

Retries and purges go through the queue's dead-letter functions, the same code
``strategyq dead-letters`` uses.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.models import Count, DeadLetter
from strategyq.api.problems import Problem
from strategyq.api.redact import strip_source
from strategyq.api.routes import RouteTable
from strategyq.api.v1.common import TaskId
from strategyq.queue import admin

router = RouteTable(prefix="/v1", tags=["dead letters"])


@router.get(
    "/dead-letters",
    response_model=list[DeadLetter],
    summary="Dead letters, newest first",
)
def dead_letters(
    request: Request,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    who: Principal = READ,
) -> list[dict[str, Any]]:
    entries = [e.as_dict() for e in state.view.dead_letters(limit)]
    return entries if who.can_write else [strip_source(e) for e in entries]


@router.post(
    "/dead-letters/retry",
    response_model=Count,
    summary="Retry every dead letter",
)
def retry_all(state: State, _: Principal = WRITE) -> dict[str, Any]:
    report = admin.retry_dead_letters(
        state.client, state.queue, None, result_ttl_s=state.settings.result_ttl_s
    )
    return _report(report)


@router.post(
    "/dead-letters/{task_id}/retry",
    response_model=Count,
    summary="Retry one dead-lettered task",
)
def retry_one(task_id: TaskId, state: State, _: Principal = WRITE) -> dict[str, Any]:
    report = admin.retry_dead_letters(
        state.client, state.queue, task_id, result_ttl_s=state.settings.result_ttl_s
    )
    if not report.moved:
        why = "; ".join(f"{what}: {reason}" for what, reason in report.skipped)
        raise Problem(404, f"task {task_id!r} was not retried ({why}); see GET /v1/dead-letters")
    return _report(report)


@router.delete(
    "/dead-letters",
    response_model=Count,
    summary="Purge every dead letter",
)
def purge(state: State, _: Principal = WRITE) -> dict[str, int]:
    return {"count": admin.purge_dead_letters(state.client)}


def _report(report: admin.RetryReport) -> dict[str, Any]:
    skipped = [{"entry": what, "reason": why} for what, why in report.skipped]
    return {"count": report.moved, "skipped": skipped}
