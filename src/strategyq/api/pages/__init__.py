"""The dashboard: server-rendered pages (Jinja2) over the same reads and writes as ``/v1``.

JavaScript is used only where a page must change by itself: drawing the
plotly charts and following a running task (an ``EventSource`` on the task's
``/v1`` event stream, then one reload when it ends) and updating the overview in
place (the page fetched again and its live region swapped in, so typed input
stays). Tables sort and page on the server, through links.

One module per page (or group of pages on one resource), each with its own
:class:`~strategyq.api.routes.RouteTable`; :data:`PAGES` lists them, and the app
declares their routes on itself.
"""

from __future__ import annotations

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
from strategyq.api.routes import RouteTable

PAGES: tuple[RouteTable, ...] = (
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
