"""The ``/v1`` HTTP API: submit, read, wait, follow, cancel; queue, workers, dead letters,
schedules.

Every write goes through the producer API (``submit_task``, ``cancel_task``),
the dead-letter functions and the schedule functions, the same code the Python
producers and the CLI use, so there is one wire format and one set of error messages.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from strategyq.api import events, reads
from strategyq.api.auth import Principal, requirement
from strategyq.api.config import Scope
from strategyq.api.followers import WAIT_SLICE_S, HeldStream, client_left
from strategyq.api.models import (
    Cancelled,
    Count,
    DeadLetter,
    QueueStats,
    ScheduleIn,
    ScheduleOut,
    Submitted,
    TaskIn,
    TaskList,
    TaskRecord,
    WorkerOut,
)
from strategyq.api.problems import PROBLEM_JSON, Problem
from strategyq.api.state import ApiState
from strategyq.client import cancel_task, submit_task, wait_for_result
from strategyq.protocol import TERMINAL_STATUSES
from strategyq.queue import admin, keys
from strategyq.queue.schedules import (
    ScheduleState,
    add_schedule,
    list_schedules,
    make_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    run_now,
    schedule_state,
)

TaskId = Annotated[str, Path(min_length=1, max_length=200, description="The task's id.")]
ScheduleName = Annotated[
    str, Path(min_length=1, max_length=200, description="The schedule's name.")
]
PATH_SAFE = ":@"
"""Characters left as they are in an id put in a URL path (RFC 3986 allows them there)."""
HIDDEN = "<hidden: needs a write-scope token>"
STATUSES = ("completed", "error", "cancelled")


def _links(task_id: str) -> dict[str, str]:
    # Percent-encoded: an id may hold any printable character (a header must be Latin-1).
    path = quote(task_id, safe=PATH_SAFE)
    base = f"/v1/tasks/{path}"
    return {
        "self": base,
        "wait": base + "/wait",
        "events": base + "/events",
        "page": f"/tasks/{path}",
    }


def strip_source(entry: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter entry without the strategy source (for read-scope callers)."""
    raw = entry.get("raw")
    if not isinstance(raw, str):
        return entry
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {**entry, "raw": HIDDEN}
    if isinstance(message, dict) and isinstance(message.get("args"), dict):
        args = {**message["args"], "strategy_code": HIDDEN}
        return {**entry, "raw": orjson.dumps({**message, "args": args}).decode()}
    return entry


def build(state: ApiState) -> APIRouter:
    read = Depends(requirement(state.config, Scope.READ))
    write = Depends(requirement(state.config, Scope.WRITE))
    router = APIRouter(prefix="/v1")
    _add_submit_and_list(router, state, read, write)
    _add_result_and_wait(router, state, read)
    _add_follow_and_cancel(router, state, read, write)
    _add_queue(router, state, read)
    _add_dead_letters(router, state, read, write)
    _add_schedules(router, state, read, write)
    _add_schedule_actions(router, state, write)
    return router


def _add_submit_and_list(router: APIRouter, state: ApiState, read: Any, write: Any) -> None:
    """``POST /tasks`` and ``GET /tasks``."""
    client = state.client

    @router.post(
        "/tasks",
        status_code=202,
        response_model=Submitted,
        summary="Queue a backtest or a screen",
        tags=["tasks"],
    )
    def submit(task: Annotated[TaskIn, Body()], _: Principal = write) -> Response:
        message = {
            "task_id": task.task_id or str(uuid.uuid4()),
            "task_type": task.task_type,
            "args": task.args,
        }
        task_id = submit_task(
            client, message, queue=state.queue, result_ttl_s=state.settings.result_ttl_s
        )
        state.metrics.submitted.labels(task.task_type).inc()
        # Serialised here, not through the response model (same shape, less work per task).
        links = _links(task_id)
        body = {"task_id": task_id, "status": "queued", "links": links}
        return Response(orjson.dumps(body), status_code=202, media_type="application/json",
                        headers={"Location": links["self"]})  # fmt: skip

    @router.get("/tasks", response_model=TaskList, summary="Recent finished tasks", tags=["tasks"])
    def recent(
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
        _: Principal = read,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise Problem(422, f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if q:
            found = reads.search_tasks(client, q, limit)
            return {"total": len(found), "offset": 0, "tasks": found}
        page = reads.recent_tasks(
            client, status=status, task_type=task_type, offset=offset, count=limit
        )
        return {"total": page.total, "offset": offset, "tasks": page.tasks}


def _add_result_and_wait(router: APIRouter, state: ApiState, read: Any) -> None:
    """``GET /tasks/{task_id}`` and its long-poll ``/wait``."""
    client = state.client

    @router.get(
        "/tasks/{task_id}", response_model=TaskRecord, summary="A task's result", tags=["tasks"]
    )
    def get_task(task_id: TaskId, _: Principal = read) -> Any:
        raw = client.get(keys.result(task_id))
        if raw is None:
            raise _unknown(task_id)
        # Results can be megabytes: the stored JSON is sent as it is.
        return Response(raw, media_type="application/json")

    @router.get(
        "/tasks/{task_id}/wait",
        response_model=TaskRecord,
        summary="Wait for a task to finish (long-poll)",
        description="Answers 200 with the terminal result as soon as it is written, or 202 with "
        "the current record when `timeout_s` passes first.",
        responses={202: {"model": TaskRecord, "description": "Not finished within timeout_s."}},
        tags=["tasks"],
    )
    async def wait(
        task_id: TaskId,
        request: Request,
        timeout_s: Annotated[float, Query(ge=0, le=300, description="Seconds to wait.")] = 30.0,
        _: Principal = read,
    ) -> Any:
        with state.followers.take():
            current = await state.blocking(reads.task_record, client, task_id)
            if current is None:
                raise _unknown(task_id)
            if current.get("status") in TERMINAL_STATUSES:
                return _raw_json(current)
            deadline = time.monotonic() + min(timeout_s, state.config.max_wait_s)
            result = None
            while result is None and not await client_left(request):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                result = await state.blocking(
                    wait_for_result, client, task_id, min(left, WAIT_SLICE_S)
                )
            if result is None:
                latest = await state.blocking(reads.task_record, client, task_id)
                return _raw_json(latest or current, status_code=202)
            return _raw_json(result)


def _add_follow_and_cancel(router: APIRouter, state: ApiState, read: Any, write: Any) -> None:
    """``GET /tasks/{task_id}/events`` (Server-Sent Events) and ``POST …/cancel``."""
    client = state.client

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
        tags=["tasks"],
    )
    async def follow(task_id: TaskId, request: Request, _: Principal = read) -> StreamingResponse:
        ticket = state.followers.take()
        try:
            if await state.blocking(reads.task_record, client, task_id) is None:
                raise _unknown(task_id)
        except BaseException:
            ticket.release()
            raise
        return HeldStream(
            events.stream(state, request, task_id),
            ticket,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.post(
        "/tasks/{task_id}/cancel",
        response_model=Cancelled,
        summary="Cancel a task",
        tags=["tasks"],
    )
    def cancel(task_id: TaskId, _: Principal = write) -> dict[str, Any]:
        if reads.task_record(client, task_id) is None:
            raise _unknown(task_id)
        previous = cancel_task(client, task_id, result_ttl_s=state.settings.result_ttl_s)
        return {"task_id": task_id, "previous_status": previous}


def _add_queue(router: APIRouter, state: ApiState, read: Any) -> None:
    """``GET /queue`` and ``GET /workers``."""
    client = state.client

    @router.get("/queue", response_model=QueueStats, summary="Queue statistics", tags=["queue"])
    def queue(_: Principal = read) -> dict[str, Any]:
        stats = reads.overview(client, state.queue)
        stats.pop("newest_dead_letters", None)
        return stats

    @router.get(
        "/workers", response_model=list[WorkerOut], summary="Registered workers", tags=["queue"]
    )
    def workers(_: Principal = read) -> list[dict[str, Any]]:
        return reads.workers(client)


def _add_dead_letters(router: APIRouter, state: ApiState, read: Any, write: Any) -> None:
    """List, retry and purge dead letters."""
    client = state.client

    @router.get(
        "/dead-letters",
        response_model=list[DeadLetter],
        summary="Dead letters, newest first",
        tags=["dead letters"],
    )
    def dead_letters(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        who: Principal = read,
    ) -> list[dict[str, Any]]:
        entries = admin.dead_letters(client, limit)
        return entries if who.can_write else [strip_source(e) for e in entries]

    @router.post(
        "/dead-letters/retry",
        response_model=Count,
        summary="Retry every dead letter",
        tags=["dead letters"],
    )
    def retry_all(_: Principal = write) -> dict[str, Any]:
        report = admin.retry_dead_letters(
            client, state.queue, None, result_ttl_s=state.settings.result_ttl_s
        )
        return _report(report)

    @router.post(
        "/dead-letters/{task_id}/retry",
        response_model=Count,
        summary="Retry one dead-lettered task",
        tags=["dead letters"],
    )
    def retry_one(task_id: TaskId, _: Principal = write) -> dict[str, Any]:
        report = admin.retry_dead_letters(
            client, state.queue, task_id, result_ttl_s=state.settings.result_ttl_s
        )
        if not report.moved:
            why = "; ".join(f"{what}: {reason}" for what, reason in report.skipped)
            raise Problem(
                404, f"task {task_id!r} was not retried ({why}); see GET /v1/dead-letters"
            )
        return _report(report)

    @router.delete(
        "/dead-letters",
        response_model=Count,
        summary="Purge every dead letter",
        tags=["dead letters"],
    )
    def purge(_: Principal = write) -> dict[str, int]:
        return {"count": admin.purge_dead_letters(client)}


def _schedule_out(st: ScheduleState, who: Principal) -> dict[str, Any]:
    s = st.schedule
    args = dict(s.args) if who.can_write else {**s.args, "strategy_code": HIDDEN}
    return {
        "name": s.name,
        "cron": s.cron,
        "when": s.explain(),
        "tz": s.tz,
        "task_type": s.task_type,
        "args": args,
        "created_at": s.created_at,
        "paused": st.paused,
        "last_slot": st.last_slot.isoformat(timespec="minutes") if st.last_slot else None,
        "next_slot": st.next_slot.isoformat(timespec="minutes"),
    }


CONFLICT = {
    409: {
        "description": "A schedule of that name exists (send replace: true to replace it).",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}


def _add_schedules(router: APIRouter, state: ApiState, read: Any, write: Any) -> None:
    """List, add and read schedules (``strategyq schedule …``)."""
    client = state.client

    @router.get(
        "/schedules",
        response_model=list[ScheduleOut],
        summary="Every schedule, by name",
        tags=["schedules"],
    )
    def schedules(who: Principal = read) -> list[dict[str, Any]]:
        return [_schedule_out(st, who) for st in list_schedules(client)]

    @router.post(
        "/schedules",
        status_code=201,
        response_model=ScheduleOut,
        summary="Add a schedule",
        description="Validated as `strategyq schedule add` validates it (name, cron, time zone "
        "and the task, with the producer's messages); its first run is the first slot after now.",
        responses=CONFLICT,  # type: ignore[arg-type]
        tags=["schedules"],
    )
    def add(body: Annotated[ScheduleIn, Body()], response: Response, who: Principal = write) -> Any:
        schedule = make_schedule(body.name, body.cron, body.tz, body.task_type, body.args)
        add_schedule(client, schedule, replace=body.replace)
        response.headers["Location"] = f"/v1/schedules/{quote(schedule.name, safe=PATH_SAFE)}"
        return _schedule_out(schedule_state(client, schedule.name), who)

    @router.get(
        "/schedules/{name}", response_model=ScheduleOut, summary="A schedule", tags=["schedules"]
    )
    def get_one(name: ScheduleName, who: Principal = read) -> dict[str, Any]:
        return _schedule_out(schedule_state(client, name), who)


def _add_schedule_actions(router: APIRouter, state: ApiState, write: Any) -> None:
    """Pause, resume, run now and remove a schedule."""
    client = state.client

    @router.post(
        "/schedules/{name}/pause",
        response_model=ScheduleOut,
        summary="Pause a schedule (its slots are skipped)",
        tags=["schedules"],
    )
    def pause(name: ScheduleName, who: Principal = write) -> dict[str, Any]:
        pause_schedule(client, name)
        return _schedule_out(schedule_state(client, name), who)

    @router.post(
        "/schedules/{name}/resume",
        response_model=ScheduleOut,
        summary="Resume a schedule from its next slot",
        tags=["schedules"],
    )
    def resume(name: ScheduleName, who: Principal = write) -> dict[str, Any]:
        resume_schedule(client, name)
        return _schedule_out(schedule_state(client, name), who)

    @router.post(
        "/schedules/{name}/run-now",
        status_code=202,
        response_model=Submitted,
        summary="Queue one run of a schedule now",
        tags=["schedules"],
    )
    def run(name: ScheduleName, _: Principal = write) -> Response:
        task_id = run_now(client, name, queue=state.queue, result_ttl_s=state.settings.result_ttl_s)
        links = _links(task_id)
        body = {"task_id": task_id, "status": "queued", "links": links}
        return Response(orjson.dumps(body), status_code=202, media_type="application/json",
                        headers={"Location": links["self"]})  # fmt: skip

    @router.delete(
        "/schedules/{name}",
        status_code=204,
        response_class=Response,
        summary="Remove a schedule (runs already queued are left alone)",
        tags=["schedules"],
    )
    def remove(name: ScheduleName, _: Principal = write) -> Response:
        remove_schedule(client, name)
        return Response(status_code=204)


def _report(report: admin.RetryReport) -> dict[str, Any]:
    skipped = [{"entry": what, "reason": why} for what, why in report.skipped]
    return {"count": report.moved, "skipped": skipped}


def _unknown(task_id: str) -> Problem:
    return Problem(
        404,
        f"no task {task_id!r}: it was never queued, or its result expired "
        "(results are kept STRATEGYQ_RESULT_TTL seconds)",
    )


def _raw_json(record: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(record), status_code=status_code, media_type="application/json")
