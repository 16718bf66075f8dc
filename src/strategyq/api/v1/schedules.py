"""``/v1/schedules``: list, add, read, pause, resume, run now and remove schedules.

Validated and stored by the queue's schedule functions, the same code
``strategyq schedule …`` uses.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Path, Response

from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.models import ScheduleIn, ScheduleOut, Submitted
from strategyq.api.problems import PROBLEM_JSON
from strategyq.api.redact import HIDDEN
from strategyq.api.routes import RouteTable
from strategyq.api.v1.common import in_path, queued
from strategyq.queue.schedules import (
    ScheduleState,
    add_schedule,
    make_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    run_now,
)

ScheduleName = Annotated[
    str, Path(min_length=1, max_length=200, description="The schedule's name.")
]
CONFLICT = {
    409: {
        "description": "A schedule of that name exists (send replace: true to replace it).",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}

router = RouteTable(prefix="/v1", tags=["schedules"])


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


@router.get("/schedules", response_model=list[ScheduleOut], summary="Every schedule, by name")
def schedules(state: State, who: Principal = READ) -> list[dict[str, Any]]:
    return [_schedule_out(st, who) for st in state.view.schedules()]


@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleOut,
    summary="Add a schedule",
    description="Validated as `strategyq schedule add` validates it (name, cron, time zone "
    "and the task, with the producer's messages); its first run is the first slot after now.",
    responses=CONFLICT,  # type: ignore[arg-type]
)
def add(
    body: Annotated[ScheduleIn, Body()], response: Response, state: State, who: Principal = WRITE
) -> Any:
    schedule = make_schedule(body.name, body.cron, body.tz, body.task_type, body.args)
    add_schedule(state.client, schedule, replace=body.replace)
    response.headers["Location"] = f"/v1/schedules/{in_path(schedule.name)}"
    return _schedule_out(state.view.schedule(schedule.name), who)


@router.get("/schedules/{name}", response_model=ScheduleOut, summary="A schedule")
def get_one(name: ScheduleName, state: State, who: Principal = READ) -> dict[str, Any]:
    return _schedule_out(state.view.schedule(name), who)


@router.post(
    "/schedules/{name}/pause",
    response_model=ScheduleOut,
    summary="Pause a schedule (its slots are skipped)",
)
def pause(name: ScheduleName, state: State, who: Principal = WRITE) -> dict[str, Any]:
    pause_schedule(state.client, name)
    return _schedule_out(state.view.schedule(name), who)


@router.post(
    "/schedules/{name}/resume",
    response_model=ScheduleOut,
    summary="Resume a schedule from its next slot",
)
def resume(name: ScheduleName, state: State, who: Principal = WRITE) -> dict[str, Any]:
    resume_schedule(state.client, name)
    return _schedule_out(state.view.schedule(name), who)


@router.post(
    "/schedules/{name}/run-now",
    status_code=202,
    response_model=Submitted,
    summary="Queue one run of a schedule now",
)
def run(name: ScheduleName, state: State, _: Principal = WRITE) -> Response:
    task_id = run_now(
        state.client, name, queue=state.queue, result_ttl_s=state.settings.result_ttl_s
    )
    return queued(task_id)


@router.delete(
    "/schedules/{name}",
    status_code=204,
    response_class=Response,
    summary="Remove a schedule (runs already queued are left alone)",
)
def remove(name: ScheduleName, state: State, _: Principal = WRITE) -> Response:
    remove_schedule(state.client, name)
    return Response(status_code=204)
