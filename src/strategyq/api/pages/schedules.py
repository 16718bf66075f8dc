"""``/schedules``: every schedule with its next and last runs; pause, resume, run now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api.auth import check_csrf
from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.pages.render import render
from strategyq.api.pages.tasks import board_row
from strategyq.api.problems import Problem
from strategyq.api.routes import RouteTable
from strategyq.queue.schedules import ScheduleState, pause_schedule, resume_schedule, run_now
from strategyq.queue.view import BoardFilter, QueueView

RUNS_SHOWN = 5

router = RouteTable(include_in_schema=False)


@router.get("/schedules", response_class=HTMLResponse)
def schedules(request: Request, state: State, _: Principal = READ) -> Response:
    view = state.view
    entries = [_entry(view, st) for st in view.schedules()]
    return render(request, "schedules.html", {"schedules": entries})


def _entry(view: QueueView, st: ScheduleState) -> dict[str, Any]:
    """A schedule with its runs: queued, running, then finished, newest first.

    A run's id starts with the schedule's name and a colon (``NAME:<slot>`` on its
    calendar, ``NAME:now:<time>`` when run by hand).
    """
    s = st.schedule
    prefix = f"{s.name}:"
    board = view.board(BoardFilter(text=prefix), count=RUNS_SHOWN)
    runs = [
        board_row(r)
        for r in (*board.running, *board.queued, *board.finished)
        if r.task_id.startswith(prefix)
    ][:RUNS_SHOWN]
    return {
        "name": s.name,
        "when": s.explain(),
        "cron": s.cron,
        "tz": s.tz,
        "task_type": s.task_type,
        "paused": st.paused,
        "next_slot": st.next_slot.isoformat(timespec="minutes"),
        "runs": runs,
    }


def _pause(state: State, name: str) -> None:
    pause_schedule(state.client, name)


def _resume(state: State, name: str) -> None:
    resume_schedule(state.client, name)


def _run_now(state: State, name: str) -> None:
    run_now(state.client, name, queue=state.queue, result_ttl_s=state.settings.result_ttl_s)


ACTIONS: dict[str, Callable[[State, str], None]] = {
    "pause": _pause,
    "resume": _resume,
    "run-now": _run_now,
}
"""The buttons of a schedule, by the last part of their form's path."""


@router.post("/schedules/{name}/{action}")
def act(
    request: Request,
    name: str,
    action: str,
    state: State,
    csrf: Annotated[str, Form()] = "",
    _: Principal = WRITE,
) -> Response:
    check_csrf(request, csrf)
    do = ACTIONS.get(action)
    if do is None:
        raise Problem(404, f"no schedule action {action!r}; use one of {', '.join(ACTIONS)}")
    do(state, name)
    return RedirectResponse(f"/schedules#schedule-{quote(name)}", status_code=303)
