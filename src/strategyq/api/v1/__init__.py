"""The ``/v1`` HTTP API, one router module per resource.

A resource is added with its module here and one line in :data:`RESOURCES`
(the order is the order of the OpenAPI document's paths); the app declares each
table's routes on itself. Each module's table carries the ``/v1`` prefix itself, so the
route a request matched (which the request metrics label by) has its full path.
"""

from __future__ import annotations

from strategyq.api.routes import RouteTable
from strategyq.api.v1 import check, dead_letters, queue, runs, schedules, tasks, tenants

RESOURCES: tuple[RouteTable, ...] = (
    tasks.router,
    queue.router,
    dead_letters.router,
    schedules.router,
    check.router,
    runs.router,
    tenants.router,
)
