"""The dashboard: server-rendered pages (Jinja2) over the same reads and writes as ``/v1``.

JavaScript is used only where a page must change by itself: drawing the
plotly charts and following a running task (an ``EventSource`` on the task's
``/v1`` event stream, then one reload when it ends) and updating the overview in
place (the page fetched again and its live region swapped in, so typed input
stays). Tables sort and page on the server, through links.

One module per page (or group of pages on one resource), each with its own
router; :data:`PAGES` lists them and :data:`router` holds them all.
"""

from __future__ import annotations

from fastapi import APIRouter

from strategyq.api.pages import (
    compare,
    dead_letters,
    history,
    login,
    overview,
    schedules,
    submit,
    tasks,
    tenants,
)

PAGES: tuple[APIRouter, ...] = (
    overview.router,
    tasks.router,
    submit.router,
    dead_letters.router,
    schedules.router,
    compare.router,
    login.router,
    history.router,
    tenants.router,
)

router = APIRouter(include_in_schema=False)
for page in PAGES:
    router.include_router(page)
