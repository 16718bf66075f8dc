"""``/dead-letters``: the list, retry and purge."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api.auth import check_csrf
from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.pages.render import render
from strategyq.api.redact import strip_source
from strategyq.api.routes import RouteTable
from strategyq.queue import admin

router = RouteTable(include_in_schema=False)


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters(request: Request, state: State, who: Principal = READ) -> Response:
    entries = [e.as_dict() for e in state.view.dead_letters(200)]
    if not who.can_write:
        entries = [strip_source(e) for e in entries]
    return render(
        request,
        "dead_letters.html",
        {"entries": entries, "total": state.view.dead_letter_count()},
    )


@router.post("/dead-letters/retry")
def retry(
    request: Request,
    state: State,
    csrf: Annotated[str, Form()] = "",
    task_id: Annotated[str, Form()] = "",
    _: Principal = WRITE,
) -> Response:
    check_csrf(request, csrf)
    admin.retry_dead_letters(
        state.client, state.queue, task_id or None, result_ttl_s=state.settings.result_ttl_s
    )
    target = f"/tasks/{quote(task_id)}" if task_id else "/dead-letters"
    return RedirectResponse(target, status_code=303)


@router.post("/dead-letters/purge")
def purge(
    request: Request, state: State, csrf: Annotated[str, Form()] = "", _: Principal = WRITE
) -> Response:
    check_csrf(request, csrf)
    admin.purge_dead_letters(state.client)
    return RedirectResponse("/dead-letters", status_code=303)
