"""``/v1/tasks``: queue a task, list and search finished ones, read, wait for, follow, cancel.

Every write goes through the producer API (``submit_task``, ``cancel_task``),
the same code the Python producers and the CLI use, so there is one wire format
and one set of error messages.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from strategyq.api import events
from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.followers import WAIT_SLICE_S, HeldStream, client_left
from strategyq.api.models import Cancelled, Submitted, TaskIn, TaskList, TaskRecord
from strategyq.api.problems import Problem
from strategyq.api.redact import record_for, strip_record_source
from strategyq.api.routes import RouteTable
from strategyq.api.v1.common import TaskId, queued, raw_json, unknown
from strategyq.client import cancel_task, submit_task
from strategyq.protocol.results import TERMINAL_STATUSES, decode_result

STATUSES = ("completed", "error", "cancelled")

router = RouteTable(prefix="/v1", tags=["tasks"])


@router.post(
    "/tasks",
    status_code=202,
    response_model=Submitted,
    summary="Queue a backtest or a screen",
    responses={429: {"description": "The tenant is at a quota; Retry-After says when to retry."}},
)
def submit(task: Annotated[TaskIn, Body()], state: State, _: Principal = WRITE) -> Response:
    message = {
        "task_id": task.task_id or str(uuid.uuid4()),
        "task_type": task.task_type,
        "args": task.args,
    }
    task_id = submit_task(
        state.client,
        message,
        queue=state.queue,
        result_ttl_s=state.settings.result_ttl_s,
        tenant=task.tenant,
        priority=task.priority,
    )
    state.metrics.submitted.labels(task.task_type).inc()
    return queued(task_id)


@router.get("/tasks", response_model=TaskList, summary="Recent finished tasks")
def recent(
    state: State,
    status: Annotated[
        str | None,
        Query(
            description="completed, error or cancelled.",
            json_schema_extra={"enum": list(STATUSES)},
        ),
    ] = None,
    task_type: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Search by task id.")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _: Principal = READ,
) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise Problem(422, f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if q:
        found = state.view.search(q, limit)
        return {"total": len(found), "offset": 0, "tasks": [asdict(t) for t in found]}
    page = state.view.recent(status=status, task_type=task_type, offset=offset, count=limit)
    return {"total": page.total, "offset": offset, "tasks": [asdict(t) for t in page.tasks]}


ARCHIVE_SOURCE = {"X-Strategyq-Source": "archive"}
"""Marks an answer read from the run archive: Redis no longer held the record."""


@router.get(
    "/tasks/{task_id}",
    response_model=TaskRecord,
    summary="A task's result",
    description="Read from Redis; a finished run Redis no longer holds (past the result TTL, "
    "or evicted) is read from the run archive, when there is one, and the answer carries "
    "`X-Strategyq-Source: archive`.",
)
def get_task(task_id: TaskId, state: State, who: Principal = READ) -> Any:
    raw = state.view.task_json(task_id)
    if raw is None:
        archived = state.archive.record(task_id)
        if archived is None:
            raise unknown(task_id)
        answer = raw_json(record_for(archived, who.can_write))
        answer.headers.update(ARCHIVE_SOURCE)
        return answer
    text = raw if isinstance(raw, bytes) else raw.encode()
    if not who.can_write and b'"strategy_code"' in text:
        record = decode_result(text)
        if record is not None:
            return raw_json(strip_record_source(record))
    # Results can be megabytes: the stored JSON is sent as it is.
    return Response(raw, media_type="application/json")


@router.get(
    "/tasks/{task_id}/wait",
    response_model=TaskRecord,
    summary="Wait for a task to finish (long-poll)",
    description="Answers 200 with the terminal result as soon as it is written, or 202 with "
    "the current record when `timeout_s` passes first.",
    responses={202: {"model": TaskRecord, "description": "Not finished within timeout_s."}},
)
async def wait(
    task_id: TaskId,
    request: Request,
    state: State,
    timeout_s: Annotated[float, Query(ge=0, le=300, description="Seconds to wait.")] = 30.0,
    who: Principal = READ,
) -> Any:
    with state.followers.take():
        current = await state.blocking(state.view.task, task_id)
        if current is None:
            archived = await state.blocking(state.archive.record, task_id)
            if archived is None:
                raise unknown(task_id)
            answer = raw_json(record_for(archived, who.can_write))
            answer.headers.update(ARCHIVE_SOURCE)
            return answer
        if current.get("status") in TERMINAL_STATUSES:
            return raw_json(record_for(current, who.can_write))
        deadline = time.monotonic() + min(timeout_s, state.config.max_wait_s)
        result = None
        # In slices, so a client that left is noticed and its place given back.
        while result is None and not await client_left(request):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            result = await state.blocking(state.view.wait, task_id, min(left, WAIT_SLICE_S))
        if result is None:
            latest = await state.blocking(state.view.task, task_id)
            return raw_json(record_for(latest or current, who.can_write), status_code=202)
        return raw_json(record_for(result, who.can_write))


@router.get(
    "/tasks/{task_id}/events",
    summary="Follow a task's status changes (Server-Sent Events)",
    description="`status` events (queued → running with each stage → completed, error or "
    "cancelled); the stream ends after the terminal one.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "An event stream.",
        }
    },
)
async def follow(
    task_id: TaskId, request: Request, state: State, _: Principal = READ
) -> StreamingResponse:
    ticket = state.followers.take()
    try:
        if await state.blocking(state.view.task, task_id) is None:
            raise unknown(task_id)
    except BaseException:
        ticket.release()
        raise
    return HeldStream(
        events.stream(state, request, task_id),
        ticket,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/tasks/{task_id}/cancel", response_model=Cancelled, summary="Cancel a task")
def cancel(task_id: TaskId, state: State, _: Principal = WRITE) -> dict[str, Any]:
    if state.view.task(task_id) is None:
        raise unknown(task_id)
    previous = cancel_task(state.client, task_id, result_ttl_s=state.settings.result_ttl_s)
    return {"task_id": task_id, "previous_status": previous}
